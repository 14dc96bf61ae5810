/**
 * The REST JSON of a streamed record (transcoder.ts restJson), read straight from the message's
 * fields by a plan made once per record type. An export writes every customer of a workspace:
 * `restJson` walks each record by reflection (`toJson`), then copies the result into the REST
 * shape (`shape`), two passes and two objects per record; the plan is one pass, one object. The
 * values are those `restJson` gives — declaration order, unset → null, 64-bit integers as
 * numbers, timestamps as RFC 3339 text — and a record type with a field the plan does not know
 * (lists, maps, enums, floats, bytes, oneofs, other well-known types) takes `restJson` whole.
 */
import { ScalarType, toJson, type DescField, type DescMessage, type JsonObject, type JsonValue, type Message } from "@bufbuild/protobuf";
import { restJson } from "./transcoder.js";

type Read = (message: Record<string, unknown>) => JsonValue;

/** A function giving `restJson(desc, message)` for messages of `desc`. */
export function recordJson(desc: DescMessage): (message: Message) => JsonObject {
  const plan = planOf(desc);
  return plan === undefined ? (m) => restJson(desc, m) : (m) => plan(m as unknown as Record<string, unknown>);
}

function planOf(desc: DescMessage): ((m: Record<string, unknown>) => JsonObject) | undefined {
  const reads: Array<readonly [string, Read]> = [];
  for (const field of desc.fields) {
    const read = fieldRead(field);
    if (read === undefined) return undefined;
    reads.push([field.jsonName, read]);
  }
  return (m) => {
    const out: JsonObject = {};
    for (const [key, read] of reads) out[key] = read(m);
    return out;
  };
}

function fieldRead(field: DescField): Read | undefined {
  if (field.oneof !== undefined) return undefined;
  const name = field.localName;
  switch (field.fieldKind) {
    case "scalar": {
      const json = scalarJson(field.scalar);
      if (json === undefined) return undefined;
      // Implicit presence: toJson with alwaysEmitImplicit writes the value (its zero when unset);
      // explicit presence (`optional`): an unset field is left out, which the REST shape makes null.
      return (m) => {
        const v = m[name];
        return v === undefined ? null : json(v);
      };
    }
    case "message": {
      const sub = field.message;
      switch (sub.typeName) {
        case "google.protobuf.Timestamp":
          return (m) => {
            const v = m[name] as Message | undefined;
            return v === undefined ? null : toJson(sub, v);
          };
        case "google.protobuf.Struct":
          // A Struct field holds its JSON object as is (protobuf-es unboxes it).
          return (m) => (m[name] ?? null) as JsonValue;
        default: {
          if (sub.typeName.startsWith("google.protobuf.")) return undefined;
          const plan = planOf(sub);
          if (plan === undefined) return undefined;
          return (m) => {
            const v = m[name] as Record<string, unknown> | undefined;
            return v === undefined ? null : plan(v);
          };
        }
      }
    }
    default:
      return undefined;
  }
}

/** The REST JSON of a scalar, for the types the plan handles. */
function scalarJson(t: ScalarType): ((v: unknown) => JsonValue) | undefined {
  switch (t) {
    case ScalarType.STRING:
    case ScalarType.BOOL:
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return (v) => v as JsonValue;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      // toJson writes the decimal text, the REST shape reads it as a number: the same double.
      return (v) => Number(v);
    default:
      return undefined;
  }
}
