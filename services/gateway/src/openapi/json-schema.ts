/**
 * JSON Schemas (draft 2020-12, the dialect of OpenAPI 3.1) of messages in the gateway's REST
 * JSON form, derived from their descriptors exactly as transcoder.ts writes and reads them:
 *
 * - answers (`output`): every declared field present, in declaration order; a field with
 *   explicit presence (`optional`, a message, a oneof member) is null when unset; lists are
 *   arrays and maps objects, never null; 64-bit integers are JSON numbers; timestamps RFC 3339
 *   strings; Struct a plain object. No other property appears.
 * - request bodies (`input`): the fields a client may send, by JSON name, none required (the
 *   services check what they need: 400 VALIDATION_ERROR); unknown fields are refused; on a
 *   request with an `update_mask` (PATCH), null clears a field.
 *
 * Message types become components (`#/components/schemas/<Name>`), named after the message
 * without its package; a name two packages share falls back to the full type name. Messages and
 * fields carry their comments from the contracts as descriptions.
 */
import { ScalarType, type DescEnum, type DescField, type DescMessage } from "@bufbuild/protobuf";

export type JsonSchema = Record<string, unknown>;

/** The fields of a message a REST caller never sends (transcoder.ts SERVER_FIELDS). */
export const SERVER_FIELDS: ReadonlySet<string> = new Set(["workspace_id", "update_mask"]);

/** The schema of a scalar as the gateway writes it in JSON (and reads it from a body or query). */
export function scalarSchema(scalar: ScalarType): JsonSchema {
  switch (scalar) {
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      // The int32 range itself is left out: what a field accepts is narrower, and the service checks it.
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "int32", minimum: 0 };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      // Written as JSON numbers (transcoder.ts), exact up to 2^53.
      return { type: "integer", format: "int64" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "integer", format: "int64", minimum: 0 };
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
  }
}

export function enumSchema(e: DescEnum): JsonSchema {
  return { type: "string", enum: e.values.map((v) => v.name) };
}

/**
 * Well-known types in their protobuf JSON form; the gateway passes them through unchanged
 * (transcoder.ts `isWellKnown`), so a wrapped 64-bit integer stays a string.
 */
function wellKnownSchema(desc: DescMessage): JsonSchema | undefined {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return { type: "string", format: "date-time" };
    case "google.protobuf.Duration":
      return { type: "string", pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$" };
    case "google.protobuf.FieldMask":
      return { type: "string" };
    case "google.protobuf.Struct":
      return { type: "object" };
    case "google.protobuf.ListValue":
      return { type: "array" };
    case "google.protobuf.Value":
      return {};
    case "google.protobuf.Empty":
      return { type: "object", additionalProperties: false };
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
      return { type: "number" };
    case "google.protobuf.Int32Value":
    case "google.protobuf.UInt32Value":
      return { type: "integer", format: "int32" };
    case "google.protobuf.Int64Value":
    case "google.protobuf.UInt64Value":
      return { type: "string", pattern: "^-?[0-9]+$" };
    case "google.protobuf.BoolValue":
      return { type: "boolean" };
    case "google.protobuf.StringValue":
      return { type: "string" };
    case "google.protobuf.BytesValue":
      return { type: "string", contentEncoding: "base64" };
    default:
      return desc.typeName.startsWith("google.protobuf.") ? { type: "object" } : undefined;
  }
}

/** `schema` or null. */
export function nullable(schema: JsonSchema): JsonSchema {
  if (typeof schema["type"] === "string" && schema["enum"] === undefined) return { ...schema, type: [schema["type"], "null"] };
  return { anyOf: [schema, { type: "null" }] };
}

/** Whether an unset field is absent from protobuf JSON (and so null in the REST form). */
function hasExplicitPresence(field: DescField): boolean {
  // FeatureSet_FieldPresence.IMPLICIT = 2: proto3 scalars without `optional`.
  return field.fieldKind !== "list" && field.fieldKind !== "map" && field.presence !== 2;
}

export type Direction = "output" | "input";

/** Collects the component schemas of the message types it is asked about. */
export interface SchemaRegistry {
  /** A `$ref` to the component of a message type (registering it and everything it uses). */
  ref(desc: DescMessage, direction: Direction): JsonSchema;
  /** The inline schema of a message (not registered), restricted to `fields` when given. */
  messageSchema(desc: DescMessage, direction: Direction, options?: { fields?: readonly DescField[]; nullClears?: boolean }): JsonSchema;
  /** The schema of one field's value as the gateway writes (output) or reads (input) it. */
  fieldSchema(field: DescField, direction: Direction, nullClears?: boolean): JsonSchema;
  /** Every component registered so far, by name. */
  readonly components: Record<string, JsonSchema>;
}

/** `comments`: the contracts' comments by fully-qualified name (CONTRACT_COMMENTS). */
export function createSchemaRegistry(comments: Readonly<Record<string, string>> = {}): SchemaRegistry {
  const components: Record<string, JsonSchema> = {};
  /** typeName + direction → component name. */
  const names = new Map<string, string>();
  /** Short names taken, by the type name holding them. */
  const taken = new Map<string, string>();

  const componentName = (desc: DescMessage, direction: Direction): string => {
    const key = `${direction}:${desc.typeName}`;
    const known = names.get(key);
    if (known !== undefined) return known;
    const pkg = desc.file.proto.package;
    const short = pkg !== "" && desc.typeName.startsWith(`${pkg}.`) ? desc.typeName.slice(pkg.length + 1) : desc.typeName;
    const holder = taken.get(short);
    const base = holder === undefined || holder === desc.typeName ? short : desc.typeName;
    taken.set(base, desc.typeName);
    const name = direction === "input" ? `${base}Input` : base;
    names.set(key, name);
    return name;
  };

  const ref = (desc: DescMessage, direction: Direction): JsonSchema => {
    const wk = wellKnownSchema(desc);
    if (wk !== undefined) return wk;
    const name = componentName(desc, direction);
    if (components[name] === undefined) {
      // Placeholder first, so that a recursive message refers to itself instead of looping.
      components[name] = {};
      components[name] = messageSchema(desc, direction);
    }
    return { $ref: `#/components/schemas/${name}` };
  };

  const valueSchema = (field: DescField, direction: Direction): JsonSchema => {
    switch (field.fieldKind) {
      case "scalar":
        return scalarSchema(field.scalar);
      case "enum":
        return enumSchema(field.enum);
      case "message":
        return ref(field.message, direction);
      case "list":
        return {
          type: "array",
          items: field.listKind === "scalar" ? scalarSchema(field.scalar) : field.listKind === "enum" ? enumSchema(field.enum) : ref(field.message, direction),
        };
      case "map":
        return {
          type: "object",
          additionalProperties: field.mapKind === "scalar" ? scalarSchema(field.scalar) : field.mapKind === "enum" ? enumSchema(field.enum) : ref(field.message, direction),
        };
    }
  };

  const fieldSchema = (field: DescField, direction: Direction, nullClears = false): JsonSchema => {
    const value = valueSchema(field, direction);
    if (direction === "output") return hasExplicitPresence(field) ? nullable(value) : value;
    return nullClears ? nullable(value) : value;
  };

  const messageSchema = (desc: DescMessage, direction: Direction, options: { fields?: readonly DescField[]; nullClears?: boolean } = {}): JsonSchema => {
    const fields = options.fields ?? (direction === "input" ? desc.fields.filter((f) => !SERVER_FIELDS.has(f.name)) : desc.fields);
    const properties: Record<string, JsonSchema> = {};
    for (const f of fields) {
      const schema = fieldSchema(f, direction, options.nullClears ?? false);
      const description = comments[`${desc.typeName}.${f.name}`];
      properties[f.jsonName] = description === undefined ? schema : { ...schema, description };
    }
    const schema: JsonSchema = { type: "object", properties, additionalProperties: false };
    const description = comments[desc.typeName];
    if (description !== undefined && options.fields === undefined) schema["description"] = description;
    if (direction === "output") schema["required"] = fields.map((f) => f.jsonName);
    return schema;
  };

  return { ref, messageSchema, fieldSchema, components };
}
