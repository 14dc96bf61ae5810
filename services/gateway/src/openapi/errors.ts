/**
 * Which error answers an operation can give, by HTTP status and REST code: the refusals of
 * the gateway's own policies that apply to the route, and the RPC codes of its method passed
 * through the one error table (error-map.ts `mappingOf`). An RPC may answer any code for a
 * bad request or a failing dependency; NOT_FOUND and ALREADY_EXISTS only where its route
 * policy declares them (`linquid.policy.v1.route` `errors`).
 */
import { Code } from "@connectrpc/connect";
import { mappingOf, POLICY_ERRORS as ERROR_MAP_POLICY_ERRORS, type ErrorMapping } from "../error-map.js";
import { IDEMPOTENT_METHODS } from "../idempotency.js";
import type { Route } from "../route-table.js";

/** RPC codes an operation documents only when its route policy declares them. */
const DECLARED_CODES: ReadonlySet<Code> = new Set([Code.NotFound, Code.AlreadyExists]);

/** An error answer of the policy chain, and the routes it applies to. */
interface PolicyError extends ErrorMapping {
  readonly appliesTo: (route: Route) => boolean;
}

const always = () => true;

/**
 * The refusals the policies throw themselves (pipeline.ts, in its order). Each line names
 * the policy deciding it; the RPC's own answers come from the error table instead.
 */
const POLICY_ERRORS: readonly PolicyError[] = [
  // auth.ts: different keys in one request; transcoder.ts: a bad parameter or body field; route-table.ts: a bad path variable.
  { status: 400, code: "VALIDATION_ERROR", appliesTo: always },
  // auth.ts: no key.
  { status: 401, code: "UNAUTHORIZED", appliesTo: always },
  // auth.ts: a malformed, unknown or revoked key.
  { status: 401, code: "INVALID_API_KEY", appliesTo: always },
  // auth.ts: the key lacks the route's scope.
  { status: 403, code: "FORBIDDEN", appliesTo: always },
  // entitlement.ts: the workspace's plan lacks the route's entitlement.
  { status: 403, code: "FEATURE_NOT_AVAILABLE", appliesTo: (r) => r.policy.entitlement !== "" },
  // idempotency.ts: the first request with this Idempotency-Key is still running.
  { ...ERROR_MAP_POLICY_ERRORS.IDEMPOTENCY_IN_PROGRESS, appliesTo: (r) => IDEMPOTENT_METHODS.has(r.httpMethod) },
  // server.ts: a body over MAX_BODY_BYTES (every route reads its body, if any).
  { status: 413, code: "PAYLOAD_TOO_LARGE", appliesTo: always },
  // transcoder.ts: a non-empty body that is not JSON.
  { status: 415, code: "UNSUPPORTED_MEDIA_TYPE", appliesTo: always },
  // idempotency.ts: an Idempotency-Key sent again with another method, route or body.
  { ...ERROR_MAP_POLICY_ERRORS.IDEMPOTENCY_KEY_REUSED, appliesTo: (r) => IDEMPOTENT_METHODS.has(r.httpMethod) },
  // rate-limit.ts: the workspace's request budget is spent (Retry-After).
  { status: 429, code: "RATE_LIMITED", appliesTo: always, headers: { "retry-after": "" } },
  // auth.ts: the workspaces service cannot be reached (error-map.ts: Unavailable).
  { ...mappingOf(Code.Unavailable), appliesTo: always },
  // pipeline.ts: anything unexpected.
  { ...mappingOf(Code.Internal), appliesTo: always },
];

/** One status of an operation: its REST codes, and the headers any of them carries. */
export interface StatusErrors {
  readonly codes: Set<string>;
  /** Lower-case header names, e.g. "retry-after". */
  readonly headers: Set<string>;
}

/** The error answers of the operation serving `routes` (one template and method), by status. */
export function operationErrors(routes: readonly Route[]): Map<number, StatusErrors> {
  const out = new Map<number, StatusErrors>();
  const add = (m: ErrorMapping) => {
    const s = out.get(m.status) ?? { codes: new Set<string>(), headers: new Set<string>() };
    out.set(m.status, s);
    s.codes.add(m.code);
    for (const h of Object.keys(m.headers ?? {})) s.headers.add(h.toLowerCase());
  };
  for (const route of routes) {
    for (const e of POLICY_ERRORS) if (e.appliesTo(route)) add(e);
    for (const code of Object.values(Code)) {
      if (typeof code !== "number" || (DECLARED_CODES.has(code) && !route.policy.errors.includes(code))) continue;
      add(mappingOf(code, route.service));
    }
  }
  return new Map([...out].sort(([a], [b]) => a - b));
}

/** What each REST error code means (rest-api.md, "Envelope"), for the reference. */
export const ERROR_CODE_MEANINGS: Readonly<Record<string, string>> = {
  VALIDATION_ERROR: "a bad parameter, body field, date or enum value, an unknown body field, malformed JSON, or different API keys in one request; `details` names each offending field",
  UNAUTHORIZED: "no API key sent",
  INVALID_API_KEY: "an unknown, malformed or revoked API key",
  FORBIDDEN: "the API key lacks the operation's scope",
  FEATURE_NOT_AVAILABLE: "the workspace's plan lacks the entitlement the operation needs (revenue tracking: plans pro and enterprise)",
  NOT_FOUND: "a missing customer, a deleted one, another workspace's, or an unknown route",
  METHOD_NOT_ALLOWED: "a known path with another method (`Allow` lists the methods)",
  DUPLICATE_EXTERNAL_ID: "the externalId belongs to another live customer",
  IDEMPOTENCY_IN_PROGRESS: "a request with the same Idempotency-Key is still running",
  IDEMPOTENCY_KEY_REUSED: "an Idempotency-Key sent again with a different method, route or body",
  PAYLOAD_TOO_LARGE: "a request body over the limit (1 MiB by default)",
  UNSUPPORTED_MEDIA_TYPE: "a non-empty request body that is not application/json",
  RATE_LIMITED: "the workspace's request budget is spent; `Retry-After` says when the next request is admitted",
  ANALYTICS_ERROR: "an analytics query failed",
  INTERNAL_ERROR: "anything else unexpected (never a stack trace)",
  SERVICE_UNAVAILABLE: "a backing service or database cannot be reached; `Retry-After` says when to try again",
};
