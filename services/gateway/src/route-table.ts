/**
 * The routing table, built only from service descriptors: every method with a
 * `google.api.http` option becomes a route, and its `linquid.policy.v1.route` option says
 * what the gateway enforces. There is no other list of routes.
 *
 * Matching (documented in README.md):
 * - a path is split on "/" and each segment percent-decoded before matching;
 * - among templates that match, the one with a literal earliest wins ("/customers/count"
 *   beats "/customers/{id}"); that template alone decides the answer, so a wrong method on
 *   it is 405 with `Allow`, never a fall-through to a less specific template;
 * - on one template and method, mappings with `when_query` whose parameter has that value
 *   are tried before the mapping without one;
 * - variables never match an empty segment, and decoded variables with control characters
 *   are refused (400) before any service sees them.
 *
 * A mapping on a server-streaming method becomes a streaming route: its answer is one body
 * written record by record (stream-format.ts), the records being the elements of each
 * response message's `response_body` field, in the format the request's
 * `stream_format_field` picks.
 */
import {
  getOption,
  hasOption,
  ScalarType,
  type DescField,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
} from "@bufbuild/protobuf";
import type { Code } from "@connectrpc/connect";
import { http, route as routeOption } from "@linquid/contracts";
import { HttpError } from "./http-error.js";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

type Segment = { readonly literal: string } | { readonly variable: DescField };

export interface RoutePolicy {
  readonly scope: string;
  readonly entitlement: string;
  readonly cacheTtlSeconds: number;
  readonly invalidatesCache: boolean;
  readonly createdField: string;
  /** Parsed `when_query`, if any. */
  readonly whenQuery: { readonly name: string; readonly value: string } | undefined;
  /** Resource errors the method declares (NOT_FOUND, ALREADY_EXISTS), beyond those of every method. */
  readonly errors: readonly Code[];
}

/** What a streaming route writes: records of `record` from `records`, formatted as `formatField` says. */
export interface StreamSpec {
  /** The repeated message field of each response message that holds the records. */
  readonly records: DescField;
  /** The message type of a record. */
  readonly record: DescMessage;
  /** The string request field naming the format ("ndjson" | "csv"); undefined = always NDJSON. */
  readonly formatField: DescField | undefined;
}

export interface Route {
  readonly service: DescService;
  readonly method: DescMethodUnary | DescMethodServerStreaming;
  /** Set on server-streaming routes. */
  readonly stream: StreamSpec | undefined;
  readonly httpMethod: HttpMethod;
  /** As written in the contract, e.g. "/customers/{id}". */
  readonly template: string;
  readonly segments: readonly Segment[];
  /** "" (no body), "*" (the whole request), or a request field name. */
  readonly body: string;
  /** "" (the whole response) or a response field name. */
  readonly responseBody: string;
  readonly policy: RoutePolicy;
}

export interface MatchedRoute {
  readonly route: Route;
  /** Path variables by request field (proto) name, decoded. */
  readonly pathVars: ReadonlyMap<string, string>;
}

export type MatchResult =
  | { readonly kind: "found"; readonly match: MatchedRoute }
  | { readonly kind: "method-not-allowed"; readonly allow: readonly HttpMethod[] }
  | { readonly kind: "not-found" };

export interface RouteTable {
  readonly routes: readonly Route[];
  /** Finds the route of a raw path (below the base path, undecoded) and method. Throws HttpError 400 for undecodable variables. */
  match(method: string, rawPath: string, query: URLSearchParams): MatchResult;
}

interface Template {
  readonly template: string;
  readonly segments: readonly Segment[];
  /** Higher is more specific: a literal in an earlier position outranks any number of later ones. */
  readonly rank: readonly number[];
  readonly routes: Route[];
}

function parseTemplate(template: string, method: DescMethodUnary | DescMethodServerStreaming): Segment[] {
  if (!template.startsWith("/")) throw new Error(`${method.parent.typeName}.${method.name}: path "${template}" must start with "/"`);
  return template
    .slice(1)
    .split("/")
    .map((part): Segment => {
      const v = /^\{([a-z_][a-z0-9_]*)(?:=\*)?\}$/.exec(part);
      if (v === null) {
        if (part === "" || /[{}*]/.test(part)) throw new Error(`${method.parent.typeName}.${method.name}: unsupported path segment "${part}" in "${template}"`);
        return { literal: part };
      }
      const field = method.input.fields.find((f) => f.name === v[1]);
      if (field === undefined || field.fieldKind !== "scalar" || field.scalar !== ScalarType.STRING) {
        throw new Error(`${method.parent.typeName}.${method.name}: path variable {${v[1]}} is not a string field of ${method.input.typeName}`);
      }
      return { variable: field };
    });
}

function patternOf(method: DescMethodUnary | DescMethodServerStreaming): { httpMethod: HttpMethod; path: string } {
  const rule = getOption(method, http);
  switch (rule.pattern.case) {
    case "get":
      return { httpMethod: "GET", path: rule.pattern.value };
    case "post":
      return { httpMethod: "POST", path: rule.pattern.value };
    case "put":
      return { httpMethod: "PUT", path: rule.pattern.value };
    case "patch":
      return { httpMethod: "PATCH", path: rule.pattern.value };
    case "delete":
      return { httpMethod: "DELETE", path: rule.pattern.value };
    default:
      throw new Error(`${method.parent.typeName}.${method.name}: unsupported google.api.http pattern "${rule.pattern.case ?? "none"}"`);
  }
}

function parseWhenQuery(raw: string, method: DescMethodUnary | DescMethodServerStreaming): RoutePolicy["whenQuery"] {
  if (raw === "") return undefined;
  const eq = raw.indexOf("=");
  if (eq <= 0) throw new Error(`${method.parent.typeName}.${method.name}: when_query must be "name=value", got "${raw}"`);
  return { name: raw.slice(0, eq), value: raw.slice(eq + 1) };
}

/** Builds the routes of `services` from their descriptors. Throws on a mapping the gateway cannot serve. */
export function buildRoutes(services: readonly DescService[]): Route[] {
  const routes: Route[] = [];
  for (const service of services) {
    for (const m of service.methods) {
      if (!hasOption(m, http)) continue;
      if (m.methodKind !== "unary" && m.methodKind !== "server_streaming") throw new Error(`${service.typeName}.${m.name}: only unary and server-streaming methods can have a REST mapping`);
      const method = m as DescMethodUnary | DescMethodServerStreaming;
      if (!hasOption(method, routeOption)) throw new Error(`${service.typeName}.${method.name}: REST-mapped method without a linquid.policy.v1.route option`);
      const rule = getOption(method, http);
      if (rule.additionalBindings.length > 0) throw new Error(`${service.typeName}.${method.name}: additional_bindings are not supported`);
      const { httpMethod, path } = patternOf(method);
      const p = getOption(method, routeOption);
      if (p.scope === "") throw new Error(`${service.typeName}.${method.name}: route policy without a scope`);
      if (rule.body !== "" && rule.body !== "*" && method.input.fields.every((f) => f.name !== rule.body)) {
        throw new Error(`${service.typeName}.${method.name}: body "${rule.body}" is not a request field`);
      }
      if (rule.responseBody !== "" && method.output.fields.every((f) => f.name !== rule.responseBody)) {
        throw new Error(`${service.typeName}.${method.name}: response_body "${rule.responseBody}" is not a response field`);
      }
      if (p.createdField !== "") {
        const f = method.output.fields.find((x) => x.name === p.createdField);
        if (f === undefined || f.fieldKind !== "scalar" || f.scalar !== ScalarType.BOOL) {
          throw new Error(`${service.typeName}.${method.name}: created_field "${p.createdField}" is not a bool response field`);
        }
      }
      let stream: StreamSpec | undefined;
      if (method.methodKind === "server_streaming") {
        const records = method.output.fields.find((f) => f.name === rule.responseBody);
        if (records === undefined || records.fieldKind !== "list" || records.listKind !== "message") {
          throw new Error(`${service.typeName}.${method.name}: a streaming mapping needs a response_body naming a repeated message field`);
        }
        if (p.cacheTtlSeconds > 0 || p.createdField !== "") throw new Error(`${service.typeName}.${method.name}: a streaming route cannot be cached or answer 201`);
        let formatField: DescField | undefined;
        if (p.streamFormatField !== "") {
          formatField = method.input.fields.find((f) => f.name === p.streamFormatField);
          if (formatField === undefined || formatField.fieldKind !== "scalar" || formatField.scalar !== ScalarType.STRING) {
            throw new Error(`${service.typeName}.${method.name}: stream_format_field "${p.streamFormatField}" is not a string request field`);
          }
        }
        stream = { records, record: records.message, formatField };
      } else if (p.streamFormatField !== "") {
        throw new Error(`${service.typeName}.${method.name}: stream_format_field on a unary method`);
      }
      routes.push({
        service,
        method,
        stream,
        httpMethod,
        template: path,
        segments: parseTemplate(path, method),
        body: rule.body,
        responseBody: rule.responseBody,
        policy: {
          scope: p.scope,
          entitlement: p.entitlement,
          cacheTtlSeconds: p.cacheTtlSeconds,
          invalidatesCache: p.invalidatesCache,
          createdField: p.createdField,
          whenQuery: parseWhenQuery(p.whenQuery, method),
          // google.rpc.Code and Connect's Code number the codes alike.
          errors: p.errors as number[] as Code[],
        },
      });
    }
  }
  return routes;
}

function sameShape(a: readonly Segment[], b: readonly Segment[]): boolean {
  return a.length === b.length && a.every((s, i) => ("literal" in s ? "literal" in b[i]! && b[i].literal === s.literal : "variable" in b[i]!));
}

function compareRank(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return b[i]! - a[i]!;
  return 0;
}

const controlChars = /[\u0000-\u001f\u007f]/;

function decodeSegment(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** A routing table over `routes`, most specific template first. */
export function createRouteTable(routes: readonly Route[]): RouteTable {
  const templates: Template[] = [];
  for (const r of routes) {
    let t = templates.find((x) => sameShape(x.segments, r.segments));
    if (t === undefined) {
      t = { template: r.template, segments: r.segments, rank: r.segments.map((s) => ("literal" in s ? 1 : 0)), routes: [] };
      templates.push(t);
    }
    const clash = t.routes.find((x) => x.httpMethod === r.httpMethod && x.policy.whenQuery?.name === r.policy.whenQuery?.name && x.policy.whenQuery?.value === r.policy.whenQuery?.value);
    if (clash !== undefined) throw new Error(`${r.httpMethod} ${r.template} is mapped twice (${clash.method.name}, ${r.method.name})`);
    t.routes.push(r);
  }
  templates.sort((a, b) => compareRank(a.rank, b.rank));
  // Conditional mappings first, so that the plain one is the fallback.
  for (const t of templates) t.routes.sort((a, b) => Number(b.policy.whenQuery !== undefined) - Number(a.policy.whenQuery !== undefined));

  return {
    routes,
    match(method, rawPath, query) {
      if (!rawPath.startsWith("/")) return { kind: "not-found" };
      const rawSegments = rawPath.slice(1).split("/");
      const decoded = rawSegments.map(decodeSegment);
      for (const t of templates) {
        if (t.segments.length !== rawSegments.length) continue;
        const ok = t.segments.every((s, i) => {
          const d = decoded[i];
          // An undecodable segment can only stand for a variable; the error is raised below, once the template is known.
          return "literal" in s ? d === s.literal : rawSegments[i] !== "";
        });
        if (!ok) continue;
        const candidates = t.routes.filter((r) => r.httpMethod === method);
        if (candidates.length === 0) {
          const allow = [...new Set(t.routes.map((r) => r.httpMethod))];
          return { kind: "method-not-allowed", allow };
        }
        const chosen = candidates.find((r) => r.policy.whenQuery === undefined || query.get(r.policy.whenQuery.name) === r.policy.whenQuery.value);
        if (chosen === undefined) return { kind: "not-found" };
        const pathVars = new Map<string, string>();
        t.segments.forEach((s, i) => {
          if (!("variable" in s)) return;
          const value = decoded[i];
          const field = s.variable.jsonName;
          if (value === undefined) throw new HttpError(400, "VALIDATION_ERROR", `${field}: malformed percent-encoding`, [{ field, issue: "malformed percent-encoding" }]);
          if (controlChars.test(value)) throw new HttpError(400, "VALIDATION_ERROR", `${field}: must not contain control characters`, [{ field, issue: "must not contain control characters" }]);
          pathVars.set(s.variable.name, value);
        });
        return { kind: "found", match: { route: chosen, pathVars } };
      }
      return { kind: "not-found" };
    },
  };
}
