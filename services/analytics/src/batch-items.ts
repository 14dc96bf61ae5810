/**
 * The items of a REST batch (IngestEvents, `POST /track/batch`): each is the JSON body of a
 * single tracking route plus its `type`, decoded here one by one — not by the gateway — so that
 * an item with an unknown field or a value of the wrong JSON type is refused on its own
 * instead of failing the whole request. The rules are the single routes': fields by JSON or
 * proto name, unknown fields refused, each value in its protobuf JSON form, then the same
 * validation (validation.ts); `workspace_id` is never the client's.
 */
import { fromJson, ScalarType, type DescField, type DescMessage, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { TrackClickRequestSchema, TrackEventRequestSchema, TrackLeadRequestSchema, TrackSaleRequestSchema, type IngestError } from "@linquid/contracts";
import { invalidArgument, violationsOf, type FieldViolation } from "@linquid/mesh";
import { checkClick, checkCustom, checkLead, checkSale, type IncomingEvent } from "./validation.js";

/** Items per REST batch. */
export const MAX_REST_BATCH = 1000;

const ROUTES = {
  click: { schema: TrackClickRequestSchema, check: checkClick },
  lead: { schema: TrackLeadRequestSchema, check: checkLead },
  sale: { schema: TrackSaleRequestSchema, check: checkSale },
  event: { schema: TrackEventRequestSchema, check: checkCustom },
} as const;
type ItemType = keyof typeof ROUTES;
const TYPES = Object.keys(ROUTES) as ItemType[];

function isObject(v: JsonValue): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What a field expects, in the words of the gateway's validation errors. */
function expectation(field: DescField): string {
  if (field.fieldKind === "message") {
    if (field.message.typeName === "google.protobuf.Timestamp") return "must be an RFC 3339 date-time such as 2026-04-01T12:00:00Z";
    if (field.message.typeName === "google.protobuf.Struct") return "must be a JSON object";
    return "must be an object";
  }
  if (field.fieldKind !== "scalar") return "must be a valid value";
  switch (field.scalar) {
    case ScalarType.STRING:
      return "must be a string";
    case ScalarType.BOOL:
      return "must be true or false";
    case ScalarType.INT64:
      return "must be an integer between -9223372036854775808 and 9223372036854775807";
    default:
      return "must be a number";
  }
}

/** The request message of an item's route, or INVALID_ARGUMENT listing every bad field. */
function bind(schema: DescMessage, item: JsonObject): Record<string, JsonValue> {
  const byName = new Map<string, DescField>();
  for (const f of schema.fields) {
    if (f.name === "workspace_id") continue;
    byName.set(f.jsonName, f).set(f.name, f);
  }
  const issues: FieldViolation[] = [];
  const json: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === "type") continue;
    const field = byName.get(key);
    if (field === undefined) issues.push({ field: key, issue: "unknown field" });
    else if (field.jsonName in json) issues.push({ field: field.jsonName, issue: "given twice (by JSON and proto name)" });
    else {
      try {
        fromJson(schema, { [field.jsonName]: value });
        json[field.jsonName] = value;
      } catch {
        issues.push({ field: field.jsonName, issue: expectation(field) });
      }
    }
  }
  if (issues.length > 0) throw invalidArgument(issues);
  return json;
}

/** Decodes and validates one item into the event to ingest; throws INVALID_ARGUMENT for a bad item. */
export function decodeItem(ws: string, item: JsonValue, now: number): IncomingEvent {
  if (!isObject(item)) throw invalidArgument([{ field: "type", issue: `an item must be an object with "type": one of ${TYPES.join(", ")}` }]);
  const type = item["type"];
  if (typeof type !== "string" || !(TYPES as string[]).includes(type)) throw invalidArgument([{ field: "type", issue: `must be one of ${TYPES.join(", ")}` }]);
  const route = ROUTES[type as ItemType];
  const request = fromJson(route.schema, bind(route.schema, item) as JsonObject);
  return (route.check as (ws: string, r: typeof request, now: number) => IncomingEvent)(ws, { ...request, workspaceId: ws }, now);
}

/** An item's refusal as the single route would have answered it; null for errors that are not the item's own. */
export function itemError(err: unknown): Omit<IngestError, "$typeName"> | null {
  if (!(err instanceof ConnectError) || err.code !== Code.InvalidArgument) return null;
  return { code: "VALIDATION_ERROR", message: err.rawMessage, details: violationsOf(err).map((v) => ({ $typeName: "linquid.analytics.v1.IngestIssue", field: v.field, issue: v.issue })) };
}
