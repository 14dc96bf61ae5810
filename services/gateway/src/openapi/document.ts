/**
 * The OpenAPI 3.1 document of the REST API, built at start from the routes the gateway serves
 * (route-table.ts: the contracts' google.api.http and linquid.policy.v1.route options), the
 * transcoder's JSON form (json-schema.ts), the error table (errors.ts → error-map.ts) and the
 * headers the policies set. Nothing in it is kept by hand, so it cannot describe a route the
 * gateway does not serve; the contract test checks every answer the integration tests get
 * against it.
 *
 * One operation per path and method: mappings told apart by `when_query` (the journey and its
 * summary) share one operation whose 200 answer is either of their envelopes.
 */
import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { CONTRACT_COMMENTS } from "@linquid/contracts";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { csvColumns } from "../stream-format.js";
import type { HttpMethod, Route } from "../route-table.js";
import { IDEMPOTENT_METHODS } from "../idempotency.js";
import { ERROR_CODE_MEANINGS, operationErrors } from "./errors.js";
import { createSchemaRegistry, enumSchema, scalarSchema, SERVER_FIELDS, type JsonSchema, type SchemaRegistry } from "./json-schema.js";

export type OpenApiDocument = Record<string, unknown> & { readonly paths: Record<string, Record<string, Operation>> };
type Operation = Record<string, unknown>;

export interface OpenApiOptions {
  /** API_BASE_PATH: the server URL the paths are relative to. */
  readonly basePath: string;
  /** info.version. */
  readonly version?: string;
  /** Descriptions of services, methods, messages and fields by full name; the contracts' comments by default. */
  readonly comments?: Readonly<Record<string, string>>;
}

/** Where the reference answers itself, below the base path (served by reference.ts). */
export const OPENAPI_PATH = "/openapi.json";
export const DOCS_PATH = "/docs";
export const RENDERER_PATH = "/docs/redoc.standalone.js";

const SECURITY_SCHEMES = {
  apiKey: {
    type: "apiKey",
    in: "header",
    name: "X-API-Key",
    description: "An API key (`lw_live_…` or `lw_test_…`) in the X-API-Key header. Made by an operator (`npm run admin -- key create`); it belongs to one workspace and carries scopes.",
  },
  bearer: {
    type: "http",
    scheme: "bearer",
    bearerFormat: "lw_live_… API key",
    description: "The same API key as `Authorization: Bearer <key>`. Sending different keys in one request is 400.",
  },
} as const;

const RATE_LIMIT_VALUE = { oneOf: [{ type: "integer", minimum: 0 }, { type: "string", const: "unlimited" }] };

const HEADERS: Record<string, JsonSchema> = {
  "X-Request-Id": {
    description: "The caller's X-Request-Id when it sent a sane one (1–128 printable ASCII, no spaces), else a new UUID. On every answer.",
    schema: { type: "string", pattern: "^[\\x21-\\x7e]{1,128}$" },
  },
  "X-RateLimit-Limit": { description: "The workspace's request budget per hour, or `unlimited`.", schema: RATE_LIMIT_VALUE },
  "X-RateLimit-Remaining": { description: "Whole requests left in the budget, or `unlimited`.", schema: RATE_LIMIT_VALUE },
  "X-RateLimit-Reset": { description: "Unix seconds when the budget is full again.", schema: { type: "integer", minimum: 0 } },
  "Retry-After": { description: "Seconds to wait before trying again.", schema: { type: "integer", minimum: 0 } },
  "X-Cache": { description: "`HIT` when the answer is a snapshot, `MISS` when it was computed.", schema: { type: "string", enum: ["HIT", "MISS"] } },
  "Idempotent-Replayed": { description: "`true` when this is the kept answer of an earlier request with the same Idempotency-Key.", schema: { type: "string", enum: ["true"] } },
};

/** A header of an answer (inline: a reference cannot say whether the header is required). */
const header = (name: string, required = false): JsonSchema => ({ ...HEADERS[name]!, ...(required ? { required: true } : {}) });

const PARAMETERS = {
  IdempotencyKey: {
    name: "Idempotency-Key",
    in: "header",
    required: false,
    description:
      "Makes a retry safe: the first answer with a status below 500 is kept for 24 hours per workspace and key; the same method, route and body sent again with the key gets that answer again (with `Idempotent-Replayed: true`) and changes nothing. The key with anything different is 422 IDEMPOTENCY_KEY_REUSED; a retry while the first request runs is 409 IDEMPOTENCY_IN_PROGRESS.",
    schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x20-\\x7e]+$" },
  },
  RequestId: {
    name: "X-Request-Id",
    in: "header",
    required: false,
    description: "An id for this request, echoed in the answer and the gateway's logs (1–128 printable ASCII, no spaces); a new UUID otherwise.",
    schema: { type: "string", pattern: "^[\\x21-\\x7e]{1,128}$" },
  },
};

const FIELD_ISSUE: JsonSchema = {
  type: "object",
  description: "One offending field, named as the caller sent it.",
  required: ["field", "issue"],
  additionalProperties: false,
  properties: { field: { type: "string" }, issue: { type: "string" } },
};

/** The fields that carry a response's pagination (transcoder.ts paginationFields). */
function paginationFields(desc: DescMessage): DescField[] {
  const oneof = desc.oneofs.find((o) => o.name === "pagination");
  if (oneof !== undefined) return oneof.fields;
  const field = desc.fields.find((f) => f.name === "pagination");
  return field === undefined ? [] : [field];
}

/** "ListCustomers" → "List customers". */
function sentence(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").split(" ");
  return words.map((w, i) => (i === 0 ? w : w.toLowerCase())).join(" ");
}

function pathVariables(route: Route): DescField[] {
  return route.segments.flatMap((s) => ("variable" in s ? [s.variable] : []));
}

/** The OpenAPI path of a route: the template with `{name=*}` written `{name}`. */
function openApiPath(route: Route): string {
  return route.template.replace(/\{([a-z_][a-z0-9_]*)=\*\}/g, "{$1}");
}

/** Fields a query parameter may set (transcoder.ts queryBindable). */
function queryBindable(field: DescField): boolean {
  return (
    field.fieldKind === "scalar" ||
    field.fieldKind === "enum" ||
    (field.fieldKind === "list" && (field.listKind === "scalar" || field.listKind === "enum")) ||
    (field.fieldKind === "map" && field.mapKey === 9 /* STRING */ && field.mapKind === "scalar")
  );
}

function queryParameter(field: DescField, route: Route): Record<string, unknown> {
  const base = { name: field.jsonName, in: "query", required: false };
  if (field.fieldKind === "map" && field.mapKind === "scalar") {
    return {
      ...base,
      style: "deepObject",
      explode: true,
      description: `Given as \`${field.jsonName}[<key>]=<value>\`, each key once.`,
      schema: { type: "object", additionalProperties: scalarSchema(field.scalar) },
    };
  }
  if (field.fieldKind === "list") {
    const items = field.listKind === "enum" ? enumSchema(field.enum) : field.listKind === "scalar" ? scalarSchema(field.scalar) : {};
    return { ...base, style: "form", explode: true, schema: { type: "array", items } };
  }
  let schema = field.fieldKind === "enum" ? enumSchema(field.enum) : field.fieldKind === "scalar" ? scalarSchema(field.scalar) : {};
  if (route.stream?.formatField === field) schema = { type: "string", enum: ["ndjson", "csv"], default: "ndjson" };
  if (route.policy.whenQuery?.name === field.name) {
    return { ...base, description: `\`${field.jsonName}=${route.policy.whenQuery.value}\` answers ${route.method.name} instead (see the 200 answer).`, schema };
  }
  return { ...base, schema };
}

function successHeaders(routes: readonly Route[], method: HttpMethod): Record<string, unknown> {
  const headers: Record<string, unknown> = {
    "X-Request-Id": header("X-Request-Id", true),
    "X-RateLimit-Limit": header("X-RateLimit-Limit", true),
    "X-RateLimit-Remaining": header("X-RateLimit-Remaining", true),
    "X-RateLimit-Reset": header("X-RateLimit-Reset", true),
  };
  // CACHE_TTL_SECONDS=0 turns caching (and the header) off, hence not required.
  if (routes.some((r) => r.policy.cacheTtlSeconds > 0)) headers["X-Cache"] = header("X-Cache");
  if (IDEMPOTENT_METHODS.has(method)) headers["Idempotent-Replayed"] = header("Idempotent-Replayed");
  return headers;
}

/** `{success: true, data, pagination?}` of a unary route (transcoder.ts encodeResponse). */
function envelopeSchema(route: Route, registry: SchemaRegistry): JsonSchema {
  const desc = route.method.output;
  const paginations = paginationFields(desc);
  let data: JsonSchema;
  if (route.responseBody === "") {
    data = paginations.length === 0 ? registry.ref(desc, "output") : registry.messageSchema(desc, "output", { fields: desc.fields.filter((f) => !paginations.includes(f)) });
  } else {
    const field = desc.fields.find((f) => f.name === route.responseBody)!;
    // The field the route answers with is the answer: the services always set it.
    data = field.fieldKind === "message" ? registry.ref(field.message, "output") : registry.fieldSchema(field, "output");
  }
  const properties: Record<string, JsonSchema> = { success: { const: true }, data };
  const shown = paginations.filter((f) => f.name !== route.responseBody && f.fieldKind === "message");
  if (shown.length > 0) {
    const refs = shown.map((f) => registry.ref((f as DescField & { fieldKind: "message" }).message, "output"));
    properties["pagination"] = refs.length === 1 ? refs[0]! : { oneOf: refs };
  }
  // Pagination is sent when the service set it (lists always do), so it is not required.
  return { type: "object", required: ["success", "data"], additionalProperties: false, properties };
}

function successResponses(routes: readonly Route[], registry: SchemaRegistry, method: HttpMethod): Record<string, unknown> {
  const headers = successHeaders(routes, method);
  const primary = routes.find((r) => r.policy.whenQuery === undefined) ?? routes[0]!;
  if (primary.stream !== undefined) {
    const spec = primary.stream;
    const columns = csvColumns(spec.record).map((c) => c.name);
    return {
      "200": {
        description:
          "Every matching record, streamed as it is read, without an envelope. NDJSON (default): one record per line, in the same JSON form as elsewhere. " +
          `CSV (\`${spec.formatField?.jsonName ?? "format"}=csv\`, RFC 4180, CRLF line ends): a header row, then one row per record; nested objects flattened to dotted columns, ` +
          "JSON objects and lists as JSON text, text starting with = + - @ prefixed with '. An error after the first record cuts the body off (an incomplete chunked body), never a short complete-looking one.",
        headers,
        content: {
          "application/x-ndjson": { schema: registry.ref(spec.record, "output"), "x-linquid-per-line": true },
          "text/csv": { schema: { type: "string" }, example: `${columns.join(",")}\r\n` },
        },
      },
    };
  }
  const envelopes = routes.map((r) => envelopeSchema(r, registry));
  const schema = envelopes.length === 1 ? envelopes[0]! : { oneOf: envelopes };
  const content = { "application/json": { schema } };
  const responses: Record<string, unknown> = {};
  const created = routes.find((r) => r.policy.createdField !== "");
  if (created !== undefined) {
    responses["200"] = { description: `OK: \`${created.policy.createdField}\` was false (an existing record was updated).`, headers, content };
    responses["201"] = { description: `Created: \`${created.policy.createdField}\` was true.`, headers, content };
  } else {
    const variants = routes.length > 1 ? ` Either envelope: ${routes.map((r) => (r.policy.whenQuery === undefined ? `${r.method.name} by default` : `${r.method.name} with \`${r.policy.whenQuery.name}=${r.policy.whenQuery.value}\``)).join(", ")}.` : "";
    responses["200"] = { description: `OK.${variants}`, headers, content };
  }
  return responses;
}

function errorSchema(codes: readonly string[]): JsonSchema {
  return {
    type: "object",
    required: ["success", "error"],
    additionalProperties: false,
    properties: {
      success: { const: false },
      error: {
        type: "object",
        required: ["code", "message"],
        additionalProperties: false,
        properties: {
          code: { type: "string", enum: codes },
          message: { type: "string", description: "For people; client errors keep the service's words, server errors a fixed text." },
          details: { type: "array", minItems: 1, items: { $ref: "#/components/schemas/FieldIssue" } },
        },
      },
    },
  };
}

function errorResponses(routes: readonly Route[], method: HttpMethod): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, errors] of operationErrors(routes)) {
    const codes = [...errors.codes];
    const headers: Record<string, unknown> = { "X-Request-Id": header("X-Request-Id", true) };
    // Answers after authentication show the budget; a 401 has no workspace to show.
    if (status !== 401) for (const h of ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]) headers[h] = header(h);
    if (errors.headers.has("retry-after")) headers["Retry-After"] = header("Retry-After");
    // A kept answer below 500 is replayed as it was, errors included.
    if (IDEMPOTENT_METHODS.has(method) && status < 500) headers["Idempotent-Replayed"] = header("Idempotent-Replayed");
    out[String(status)] = {
      description: codes.map((c) => `\`${c}\`: ${ERROR_CODE_MEANINGS[c] ?? c.toLowerCase().replace(/_/g, " ")}`).join("; "),
      headers,
      content: { "application/json": { schema: errorSchema(codes) } },
    };
  }
  return out;
}

function describe(routes: readonly Route[], primary: Route, comments: Readonly<Record<string, string>>): string {
  const p = primary.policy;
  const lines: string[] = [];
  for (const r of routes) {
    const comment = comments[`${r.service.typeName}.${r.method.name}`];
    if (comment !== undefined) lines.push(r.policy.whenQuery === undefined ? comment : `With \`${r.policy.whenQuery.name}=${r.policy.whenQuery.value}\`: ${comment}`);
  }
  if (primary.stream !== undefined) lines.push(`Streams its answer (NDJSON or CSV, see the 200 answer); one request against the budget, never cached.`);
  for (const r of routes) {
    const rpc = `\`${r.service.typeName}/${r.method.name}\``;
    lines.push(r.policy.whenQuery === undefined ? `RPC: ${rpc}.` : `With \`${r.policy.whenQuery.name}=${r.policy.whenQuery.value}\`: ${rpc}.`);
  }
  lines.push(`Scope: \`${p.scope}\`${["links:create", "links:update", "links:delete"].includes(p.scope) ? " (or `links:write`)" : ""}.`);
  if (p.entitlement !== "") lines.push(`Plan: the workspace needs \`${p.entitlement}\` (pro and enterprise); 403 FEATURE_NOT_AVAILABLE otherwise.`);
  if (p.cacheTtlSeconds > 0) lines.push(`Cached: a snapshot of the answer is served for up to ${p.cacheTtlSeconds} s (\`X-Cache\`); any write that changes it makes the next read fresh.`);
  if (p.invalidatesCache) lines.push("Changes what cached reads show: the workspace's next reads are fresh.");
  if (IDEMPOTENT_METHODS.has(primary.httpMethod)) lines.push("Takes an `Idempotency-Key` header to make retries safe.");
  return lines.join("\n\n");
}

function operation(routes: readonly Route[], registry: SchemaRegistry, comments: Readonly<Record<string, string>>): Operation {
  const primary = routes.find((r) => r.policy.whenQuery === undefined) ?? routes[0]!;
  const vars = pathVariables(primary);
  const parameters: unknown[] = vars.map((f) => ({
    name: f.name,
    in: "path",
    required: true,
    description: f.name === "id" ? "A customer id (`cus_…`), or `ext_<externalId>`." : undefined,
    schema: { type: "string", minLength: 1 },
  }));
  const seen = new Set<string>();
  for (const r of routes) {
    if (r.body === "*") continue;
    for (const f of r.method.input.fields) {
      if (SERVER_FIELDS.has(f.name) || vars.some((v) => v.name === f.name) || f.name === r.body || !queryBindable(f) || seen.has(f.jsonName)) continue;
      seen.add(f.jsonName);
      const parameter = queryParameter(f, routes.find((x) => x.policy.whenQuery?.name === f.name) ?? r);
      const comment = comments[`${r.method.input.typeName}.${f.name}`];
      if (comment !== undefined) parameter["description"] = [comment, parameter["description"]].filter((d) => d !== undefined).join("\n\n");
      parameters.push(parameter);
    }
  }
  if (IDEMPOTENT_METHODS.has(primary.httpMethod)) parameters.push({ $ref: "#/components/parameters/IdempotencyKey" });
  parameters.push({ $ref: "#/components/parameters/RequestId" });

  const op: Operation = {
    operationId: primary.method.localName,
    summary: sentence(primary.method.name),
    description: describe(routes, primary, comments),
    tags: [primary.service.name.replace(/Service$/, "")],
    parameters: parameters.map((p) => (typeof p === "object" && p !== null ? Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) : p)),
  };
  const input = primary.method.input;
  if (primary.body === "*") {
    const fields = input.fields.filter((f) => !SERVER_FIELDS.has(f.name) && !vars.some((v) => v.name === f.name));
    const patch = input.fields.some((f) => f.name === "update_mask" && f.fieldKind === "message" && f.message.typeName === FieldMaskSchema.typeName);
    op["requestBody"] = {
      required: false,
      description: patch ? "The fields to change, by JSON name; null clears a field. Unknown fields are 400." : "Fields by JSON name (the proto name is accepted too). Unknown fields are 400.",
      content: { "application/json": { schema: registry.messageSchema(input, "input", { fields, nullClears: patch }) } },
    };
  } else if (primary.body !== "") {
    const field = input.fields.find((f) => f.name === primary.body)!;
    op["requestBody"] = { required: false, content: { "application/json": { schema: registry.fieldSchema(field, "input") } } };
  }
  op["responses"] = { ...successResponses(routes, registry, primary.httpMethod), ...errorResponses(routes, primary.httpMethod) };
  const scopes = [primary.policy.scope];
  op["security"] = [{ apiKey: scopes }, { bearer: scopes }];
  op["x-linquid-scope"] = primary.policy.scope;
  if (primary.policy.entitlement !== "") op["x-linquid-entitlement"] = primary.policy.entitlement;
  if (primary.policy.cacheTtlSeconds > 0) op["x-linquid-cache-ttl-seconds"] = primary.policy.cacheTtlSeconds;
  op["x-linquid-rpc"] = routes.map((r) => `${r.service.typeName}/${r.method.name}`);
  return op;
}

/** The operations serving the reference itself: no key, no budget. */
function referenceOperations(): Record<string, Record<string, Operation>> {
  const headers = { "X-Request-Id": header("X-Request-Id", true) };
  return {
    [OPENAPI_PATH]: {
      get: {
        operationId: "getOpenApiDocument",
        summary: "This document",
        description: "The OpenAPI 3.1 document of the API, generated by the gateway at start from the contracts. No API key needed.",
        tags: ["Reference"],
        security: [],
        responses: { "200": { description: "OK.", headers, content: { "application/json": { schema: { type: "object", required: ["openapi", "info", "paths"] } } } } },
      },
    },
    [DOCS_PATH]: {
      get: {
        operationId: "getReferencePage",
        summary: "API reference page",
        description: "A readable reference rendered from this document in the browser, served whole by the gateway (works offline). No API key needed.",
        tags: ["Reference"],
        security: [],
        responses: { "200": { description: "OK.", headers, content: { "text/html": { schema: { type: "string" } } } } },
      },
    },
    [RENDERER_PATH]: {
      get: {
        operationId: "getReferenceRenderer",
        summary: "Reference page script",
        description: "The script of the reference page (Redoc's standalone bundle), served by the gateway so that the page loads nothing from elsewhere.",
        tags: ["Reference"],
        security: [],
        responses: { "200": { description: "OK.", headers, content: { "text/javascript": { schema: { type: "string" } } } } },
      },
    },
  };
}

const INTRODUCTION = `The Customers API of the Linquid link-attribution platform: customer identity, revenue tracking and customer analytics.

**Envelope.** JSON in and out, UTF-8. A success is \`{"success": true, "data": …}\`; lists add \`pagination\`. An error is \`{"success": false, "error": {"code", "message", "details"?}}\`, \`details\` naming each offending field for validation errors. Every field of a record is present: an unset one is \`null\`, an empty list \`[]\`. Integers (counts, money in minor units) are JSON numbers; timestamps ISO-8601 UTC strings.

**Authentication.** An API key as \`X-API-Key\` or \`Authorization: Bearer\`; each operation names the scope its key needs. A key belongs to one workspace; a workspace never learns whether another's customer exists (404).

**Budgets.** Every authenticated answer carries \`X-RateLimit-Limit\`, \`X-RateLimit-Remaining\` and \`X-RateLimit-Reset\`; over the budget is 429 with \`Retry-After\`. A 503 carries \`Retry-After\` too.

**Pagination.** \`GET /customers\` pages by \`page\` and \`limit\` (\`pagination\`: page, limit, total, totalPages, hasMore, nextCursor) or, with \`cursor\` from the previous answer's \`nextCursor\`, by cursor (\`pagination\`: limit, hasMore, nextCursor; no total). \`page\` with \`cursor\` is 400.

**Idempotency.** POST and PATCH take an \`Idempotency-Key\` header: a retry with the same key, method, route and body gets the first answer again (\`Idempotent-Replayed: true\`) and changes nothing.

**Other answers.** An unknown route is 404 \`NOT_FOUND\`; a known path with another method 405 \`METHOD_NOT_ALLOWED\` with \`Allow\`. Every answer carries \`X-Request-Id\`; W3C \`traceparent\` is honoured.`;

/** Comments as Markdown text: a line starting with ">" (">= 1; default 1") is not a quote. */
function asMarkdown(comments: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(comments).map(([name, text]) => [name, text.replace(/^>/gm, "\\>")]));
}

/** The document of `routes` (buildRoutes), served under `options.basePath`. */
export function createOpenApiDocument(routes: readonly Route[], options: OpenApiOptions): OpenApiDocument {
  const comments = asMarkdown(options.comments ?? CONTRACT_COMMENTS);
  const registry = createSchemaRegistry(comments);
  const groups = new Map<string, Route[]>();
  for (const r of routes) {
    const key = `${openApiPath(r)} ${r.httpMethod}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const paths: Record<string, Record<string, Operation>> = {};
  for (const group of groups.values()) {
    const path = openApiPath(group[0]!);
    (paths[path] ??= {})[group[0]!.httpMethod.toLowerCase()] = operation(group, registry, comments);
  }
  Object.assign(paths, referenceOperations());
  const services = [...new Map(routes.map((r) => [r.service.typeName, r.service])).values()];
  const tags: Array<{ name: string; description?: string }> = services.map((s) => {
    const description = comments[s.typeName];
    return { name: s.name.replace(/Service$/, ""), ...(description === undefined ? {} : { description }) };
  });
  tags.push({ name: "Reference", description: "The API's own reference: this document and the page rendering it." });
  return {
    openapi: "3.1.1",
    info: { title: "Linquid Customers API", version: options.version ?? "v1", description: INTRODUCTION },
    jsonSchemaDialect: "https://spec.openapis.org/oas/3.1/dialect/base",
    servers: [{ url: options.basePath === "" ? "/" : options.basePath, description: "this gateway (API_BASE_PATH)" }],
    security: [{ apiKey: [] }, { bearer: [] }],
    tags,
    paths,
    components: {
      securitySchemes: SECURITY_SCHEMES,
      parameters: PARAMETERS,
      schemas: { FieldIssue: FIELD_ISSUE, ...Object.fromEntries(Object.entries(registry.components).sort(([a], [b]) => (a < b ? -1 : 1))) },
    },
  };
}
