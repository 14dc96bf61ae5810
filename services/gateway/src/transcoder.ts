/**
 * REST ⇄ RPC transcoding, following google.api.http as grpc-gateway reads it.
 *
 * Request: path variables, then the JSON body (`body: "*"`: every request field except path
 * variables, `workspace_id` and `update_mask`), then — for fields the body does not carry —
 * the query string: scalars and lists by name, and map fields with string keys as
 * `name[key]=value` (as grpc-gateway reads them), each key at most once. `workspace_id` always comes from the principal; `update_mask` (when the
 * request has one) lists the JSON names of the body keys present, so `null` means "clear".
 *
 * Response: the `response_body` field (or the whole message) as REST JSON: int64 as numbers,
 * every declared field present (unset → null, repeated → [], map → {}), well-known types in
 * their protobuf JSON form (timestamps as RFC 3339 UTC strings, Struct as a plain object). A
 * `pagination` field — or the member set of a oneof named `pagination` — goes next to `data`.
 */
import {
  create,
  fromJson,
  isFieldSet,
  ScalarType,
  toJson,
  type DescEnum,
  type DescField,
  type DescMessage,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import type { MatchedRoute, Route } from "./route-table.js";
import { HttpError, validationError, type FieldIssue } from "./http-error.js";

/** Fields the client never sets, whatever it sends. */
const SERVER_FIELDS = new Set(["workspace_id", "update_mask"]);
/** Deepest JSON nesting accepted in a body; metadata is flat, so this is generous. */
const MAX_JSON_DEPTH = 32;

export interface DecodedRequest {
  readonly message: Message;
  /** The known query parameters after parsing, in a stable order: part of the cache key. */
  readonly canonicalQuery: string;
}

// ---------------------------------------------------------------------------------------------
// Body

function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const [type, ...params] = value.split(";").map((s) => s.trim().toLowerCase());
  if (type !== "application/json" && !(type !== undefined && /^application\/[a-z0-9.+-]+\+json$/.test(type))) return false;
  return params.every((p) => !p.startsWith("charset=") || p === "charset=utf-8" || p === 'charset="utf-8"');
}

function jsonDepthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (d > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return false;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a request body. An empty body is `undefined`. A non-empty one must be declared JSON
 * (415 UNSUPPORTED_MEDIA_TYPE otherwise), be valid UTF-8 JSON (400), and be an object (400).
 */
export function parseJsonBody(bytes: Buffer, contentType: string | undefined): Record<string, unknown> | undefined {
  if (bytes.length === 0) return undefined;
  if (!isJsonContentType(contentType)) {
    throw new HttpError(415, "UNSUPPORTED_MEDIA_TYPE", "request bodies must be JSON: send Content-Type: application/json", [
      { field: "Content-Type", issue: "must be application/json" },
    ]);
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw validationError([{ field: "body", issue: "must be UTF-8" }], "request body is not valid UTF-8");
  }
  if (text.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw validationError([{ field: "body", issue: "malformed JSON" }], "request body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw validationError([{ field: "body", issue: "must be a JSON object" }], "request body must be a JSON object");
  }
  if (jsonDepthExceeds(value, MAX_JSON_DEPTH)) throw validationError([{ field: "body", issue: `nested deeper than ${MAX_JSON_DEPTH} levels` }]);
  return value as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Request

const INT32 = { min: -2147483648n, max: 2147483647n };
const UINT32 = { min: 0n, max: 4294967295n };
const INT64 = { min: -9223372036854775808n, max: 9223372036854775807n };
const UINT64 = { min: 0n, max: 18446744073709551615n };

function intRange(t: ScalarType): { min: bigint; max: bigint } | undefined {
  switch (t) {
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return INT32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return UINT32;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return INT64;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return UINT64;
    default:
      return undefined;
  }
}

function enumNames(e: DescEnum): string {
  return e.values.map((v) => v.name).join(", ");
}

/** What a field expects, for a validation issue. */
export function expectation(field: DescField): string {
  switch (field.fieldKind) {
    case "list":
      return "must be an array";
    case "map":
      return "must be an object";
    case "enum":
      return `must be one of ${enumNames(field.enum)}`;
    case "message":
      switch (field.message.typeName) {
        case "google.protobuf.Timestamp":
          return "must be an RFC 3339 date-time such as 2026-04-01T12:00:00Z";
        case "google.protobuf.Struct":
          return "must be a JSON object";
        default:
          return "must be an object";
      }
    case "scalar":
      return scalarExpectation(field.scalar);
  }
}

function scalarExpectation(scalar: ScalarType): string {
  const range = intRange(scalar);
  if (range !== undefined) return `must be an integer between ${range.min} and ${range.max}`;
  switch (scalar) {
    case ScalarType.STRING:
      return "must be a string";
    case ScalarType.BOOL:
      return "must be true or false";
    case ScalarType.BYTES:
      return "must be base64";
    default:
      return "must be a number";
  }
}

/** Parses one query-string value into the JSON form of a scalar or enum field; undefined when invalid. */
function queryValue(field: DescField, raw: string): JsonValue | undefined {
  if (field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum")) {
    const e = field.enum;
    return e !== undefined && e.values.some((v) => v.name === raw) ? raw : undefined;
  }
  const scalar = field.fieldKind === "scalar" ? field.scalar : field.fieldKind === "list" && field.listKind === "scalar" ? field.scalar : undefined;
  return scalar === undefined ? undefined : scalarQueryValue(scalar, raw);
}

/** Parses one query-string value into the JSON form of a scalar type; undefined when invalid. */
function scalarQueryValue(scalar: ScalarType, raw: string): JsonValue | undefined {
  const range = intRange(scalar);
  if (range !== undefined) {
    if (!/^-?\d{1,20}$/.test(raw)) return undefined;
    const n = BigInt(raw);
    if (n < range.min || n > range.max) return undefined;
    return range === INT32 || range === UINT32 ? Number(n) : n.toString();
  }
  switch (scalar) {
    case ScalarType.STRING:
      return raw;
    case ScalarType.BOOL:
      return raw === "true" ? true : raw === "false" ? false : undefined;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT: {
      if (!/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(raw)) return undefined;
      const n = Number(raw);
      return Number.isFinite(n) ? n : undefined;
    }
    default:
      return undefined;
  }
}

/** Fields a query parameter may set: scalars, enums, lists of them, and maps from strings to scalars. */
function queryBindable(field: DescField): boolean {
  return (
    field.fieldKind === "scalar" ||
    field.fieldKind === "enum" ||
    (field.fieldKind === "list" && (field.listKind === "scalar" || field.listKind === "enum")) ||
    isStringKeyedScalarMap(field)
  );
}

function isStringKeyedScalarMap(field: DescField): field is DescField & { fieldKind: "map"; mapKind: "scalar" } {
  return field.fieldKind === "map" && field.mapKey === ScalarType.STRING && field.mapKind === "scalar";
}

/** `name[key]` → [name, key]; the key is everything between the first "[" and the final "]". */
const MAP_PARAM = /^([^[\]]+)\[(.*)\]$/s;

function fieldIndex(fields: readonly DescField[]): Map<string, DescField> {
  const byName = new Map<string, DescField>();
  for (const f of fields) {
    byName.set(f.jsonName, f);
    byName.set(f.name, f);
  }
  return byName;
}

/** Reads the JSON body keys into `json`, collecting an issue per unknown or mistyped key. */
function bindBody(schema: DescMessage, clientFields: Map<string, DescField>, body: Record<string, unknown>, json: Record<string, JsonValue>, issues: FieldIssue[]): string[] {
  const present: string[] = [];
  for (const [key, value] of Object.entries(body)) {
    const field = clientFields.get(key);
    if (field === undefined) {
      issues.push({ field: key, issue: "unknown field" });
      continue;
    }
    if (present.includes(field.jsonName)) {
      issues.push({ field: field.jsonName, issue: "given twice (by JSON and proto name)" });
      continue;
    }
    // One key at a time, so the issue names the field that failed.
    try {
      fromJson(schema, { [field.jsonName]: value as JsonValue });
    } catch {
      issues.push({ field: field.jsonName, issue: expectation(field) });
      continue;
    }
    present.push(field.jsonName);
    json[field.jsonName] = value as JsonValue;
  }
  return present;
}

/**
 * Builds the RPC request of a matched route. Throws 400 VALIDATION_ERROR listing every bad
 * field at once.
 */
export function decodeRequest(
  match: MatchedRoute,
  query: URLSearchParams,
  body: Record<string, unknown> | undefined,
  workspaceId: string,
): DecodedRequest {
  const { route, pathVars } = match;
  const schema = route.method.input;
  const issues: FieldIssue[] = [];
  const json: Record<string, JsonValue> = {};

  const clientFields = schema.fields.filter((f) => !SERVER_FIELDS.has(f.name) && !pathVars.has(f.name));
  const bodyFields = route.body === "*" ? clientFields : route.body === "" ? [] : clientFields.filter((f) => f.name === route.body);
  const queryFields = route.body === "*" ? [] : clientFields.filter((f) => f.name !== route.body && queryBindable(f));

  // Body.
  let bodyKeys: string[] = [];
  if (body !== undefined) {
    if (route.body === "*") {
      bodyKeys = bindBody(schema, fieldIndex(bodyFields), body, json, issues);
    } else if (route.body === "") {
      for (const key of Object.keys(body)) issues.push({ field: key, issue: "unknown field (this route takes no body)" });
    } else {
      const field = bodyFields[0]!;
      try {
        fromJson(schema, { [field.jsonName]: body as JsonValue });
        json[field.jsonName] = body as JsonValue;
        bodyKeys = Object.keys(body);
      } catch {
        issues.push({ field: field.jsonName, issue: expectation(field) });
      }
    }
  }

  // Query: unknown names are ignored; known names with bad values are not.
  const byQueryName = fieldIndex(queryFields);
  const seen = new Map<DescField, JsonValue[]>();
  // Map entries by field; objects without a prototype, so any key ("__proto__") is only a key.
  const maps = new Map<DescField, Record<string, JsonValue>>();
  for (const [name, raw] of query) {
    const bracketed = MAP_PARAM.exec(name);
    const mapField = bracketed === null ? undefined : byQueryName.get(bracketed[1]!);
    if (mapField !== undefined && isStringKeyedScalarMap(mapField)) {
      const key = bracketed![2]!;
      const entries = maps.get(mapField) ?? (Object.create(null) as Record<string, JsonValue>);
      maps.set(mapField, entries);
      const value = scalarQueryValue(mapField.scalar, raw);
      if (value === undefined) issues.push({ field: `${mapField.jsonName}[${key}]`, issue: scalarExpectation(mapField.scalar) });
      else if (Object.hasOwn(entries, key)) issues.push({ field: `${mapField.jsonName}[${key}]`, issue: "must be given once" });
      else entries[key] = value;
      continue;
    }
    const field = byQueryName.get(name);
    if (field === undefined) continue;
    if (isStringKeyedScalarMap(field)) {
      issues.push({ field: field.jsonName, issue: `must be given as ${field.jsonName}[<key>]=<value>` });
      continue;
    }
    const value = queryValue(field, raw);
    if (value === undefined) {
      issues.push({ field: field.jsonName, issue: expectation(field).replace("must be an array", "must be a list of values") });
      continue;
    }
    const list = seen.get(field) ?? [];
    list.push(value);
    seen.set(field, list);
  }
  const canonical: Array<[string, JsonValue]> = [];
  for (const [field, values] of seen) {
    if (field.fieldKind !== "list" && values.length > 1) {
      issues.push({ field: field.jsonName, issue: "must be given once" });
      continue;
    }
    json[field.jsonName] = field.fieldKind === "list" ? values : values[0]!;
    canonical.push([field.jsonName, json[field.jsonName]!]);
  }
  for (const [field, entries] of maps) {
    json[field.jsonName] = entries;
    const sorted = Object.keys(entries).sort().map((k) => [k, entries[k]!]);
    canonical.push([field.jsonName, sorted]);
  }
  canonical.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  if (issues.length > 0) throw validationError(issues);

  for (const [name, value] of pathVars) {
    const f = schema.fields.find((x) => x.name === name)!;
    json[f.jsonName] = value;
  }

  let message: Message;
  try {
    message = fromJson(schema, json);
  } catch {
    // Every key was checked on its own above; a combination failing is not expected.
    throw validationError([{ field: "body", issue: "invalid request" }]);
  }
  const r = reflect(schema, message);
  const ws = schema.fields.find((f) => f.name === "workspace_id");
  if (ws !== undefined) r.set(ws, workspaceId);
  const mask = schema.fields.find((f) => f.name === "update_mask");
  if (mask !== undefined && mask.fieldKind === "message" && mask.message.typeName === FieldMaskSchema.typeName) {
    r.set(mask, reflect(FieldMaskSchema, create(FieldMaskSchema, { paths: bodyKeys })));
  }
  return { message, canonicalQuery: JSON.stringify(canonical) };
}

// ---------------------------------------------------------------------------------------------
// Response

function isWellKnown(desc: DescMessage): boolean {
  return desc.typeName.startsWith("google.protobuf.");
}

function int64Field(field: DescField): boolean {
  const s = field.fieldKind === "scalar" ? field.scalar : (field.fieldKind === "list" && field.listKind === "scalar") || (field.fieldKind === "map" && field.mapKind === "scalar") ? field.scalar : undefined;
  return s !== undefined && intRange(s) !== undefined && intRange(s) !== INT32 && intRange(s) !== UINT32;
}

function number64(v: JsonValue): JsonValue {
  return typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
}

/**
 * Rewrites protobuf JSON (`toJson` with implicit fields emitted) into the REST shape: every
 * declared field present, in declaration order (unset → null, [] or {}), 64-bit integers as numbers.
 */
function shape(desc: DescMessage, json: Record<string, JsonValue>): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const field of desc.fields) {
    const key = field.jsonName;
    const v = json[key];
    if (v === undefined || v === null) {
      out[key] = field.fieldKind === "list" ? [] : field.fieldKind === "map" ? {} : null;
      continue;
    }
    switch (field.fieldKind) {
      case "scalar":
        out[key] = int64Field(field) ? number64(v) : v;
        break;
      case "list":
        out[key] = !Array.isArray(v)
          ? v
          : int64Field(field)
            ? v.map(number64)
            : field.listKind === "message" && !isWellKnown(field.message)
              ? v.map((e) => shape(field.message, e as Record<string, JsonValue>))
              : v;
        break;
      case "map": {
        const m: Record<string, JsonValue> = {};
        for (const [k, e] of Object.entries(v as Record<string, JsonValue>)) {
          m[k] = int64Field(field) ? number64(e) : field.mapKind === "message" && !isWellKnown(field.message) ? shape(field.message, e as Record<string, JsonValue>) : e;
        }
        out[key] = m;
        break;
      }
      case "message":
        out[key] = isWellKnown(field.message) ? v : shape(field.message, v as Record<string, JsonValue>);
        break;
      case "enum":
        out[key] = v;
        break;
    }
  }
  return out;
}

/** The REST JSON of a message. */
export function restJson(desc: DescMessage, message: Message): Record<string, JsonValue> {
  return shape(desc, toJson(desc, message, { alwaysEmitImplicit: true }) as Record<string, JsonValue>);
}

export interface EncodedResponse {
  readonly status: number;
  readonly body: string;
}

/**
 * The fields that carry a response's pagination: a field named `pagination`, or the members of
 * a oneof named `pagination` (one shape per kind of list, e.g. by page or by cursor).
 */
function paginationFields(desc: DescMessage): DescField[] {
  const oneof = desc.oneofs.find((o) => o.name === "pagination");
  if (oneof !== undefined) return oneof.fields;
  const field = desc.fields.find((f) => f.name === "pagination");
  return field === undefined ? [] : [field];
}

/** The success envelope of an RPC answer: data (the response_body field or the whole message), pagination when the answer has one. */
export function encodeResponse(route: Route, message: Message): EncodedResponse {
  const desc = route.method.output;
  const json = restJson(desc, message);
  const paginations = paginationFields(desc);
  const pagination = paginations.find((f) => isFieldSet(message, f));
  const paginationJson = pagination === undefined ? undefined : json[pagination.jsonName];
  let data: JsonValue;
  if (route.responseBody === "") {
    for (const f of paginations) delete json[f.jsonName];
    data = json;
  } else {
    data = json[desc.fields.find((f) => f.name === route.responseBody)!.jsonName] ?? null;
  }
  const envelope: Record<string, JsonValue> = { success: true, data };
  if (pagination !== undefined && paginationJson !== undefined && pagination.name !== route.responseBody) {
    envelope["pagination"] = paginationJson;
  }
  let status = 200;
  if (route.policy.createdField !== "") {
    const f = desc.fields.find((x) => x.name === route.policy.createdField)!;
    if (reflect(desc, message).get(f) === true) status = 201;
  }
  return { status, body: JSON.stringify(envelope) };
}
