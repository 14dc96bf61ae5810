/**
 * The one table from RPC status codes to REST answers (rest-api.md, "Envelope"). HTTP statuses
 * are set here and nowhere else. Client errors (4xx) keep the service's message, which is
 * written for the caller; server errors (5xx) get a fixed message, and the cause is logged
 * with the request id, never sent.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService } from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { HttpError } from "./http-error.js";

export interface ErrorMapping {
  readonly status: number;
  readonly code: string;
  /** Fixed message for the caller; undefined = the service's own message (client errors only). */
  readonly message?: string;
  /** Headers the answer carries (Retry-After on 503). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Seconds a 503 asks the client to wait before retrying. Dependencies are watched continuously
 * (a database within a second, peers within two), and the API answers again within 2 s of a
 * dependency's return, so a short wait is the honest one.
 */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 1;
const RETRY_LATER = { "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS) };

const INTERNAL: ErrorMapping = { status: 500, code: "INTERNAL_ERROR", message: "an unexpected error occurred" };

/** Connect code → REST answer. Codes not listed are unexpected: 500 INTERNAL_ERROR. */
export const ERROR_TABLE: ReadonlyMap<Code, ErrorMapping> = new Map<Code, ErrorMapping>([
  // 400 Bad Request: a parameter or body field is wrong; details come from google.rpc.BadRequest.
  [Code.InvalidArgument, { status: 400, code: "VALIDATION_ERROR" }],
  // 400 Bad Request: the request is well-formed but conflicts with the workspace (e.g. a foreign currency).
  [Code.FailedPrecondition, { status: 400, code: "VALIDATION_ERROR" }],
  // 400 Bad Request: a value outside the range the service can answer for.
  [Code.OutOfRange, { status: 400, code: "VALIDATION_ERROR" }],
  // 401 Unauthorized: the credentials behind the call are not (or no longer) valid.
  [Code.Unauthenticated, { status: 401, code: "INVALID_API_KEY", message: "invalid API key" }],
  // 403 Forbidden: the caller may not do this.
  [Code.PermissionDenied, { status: 403, code: "FORBIDDEN" }],
  // 404 Not Found: missing, deleted, or another workspace's — indistinguishable on purpose.
  [Code.NotFound, { status: 404, code: "NOT_FOUND" }],
  // 409 Conflict: the only uniqueness a REST caller can collide with is a live customer's externalId.
  [Code.AlreadyExists, { status: 409, code: "DUPLICATE_EXTERNAL_ID" }],
  // 429 Too Many Requests: a service-side budget ran out.
  [Code.ResourceExhausted, { status: 429, code: "RATE_LIMITED" }],
  // 503 Service Unavailable: a backing service or database cannot be reached; retrying may help.
  [Code.Unavailable, { status: 503, code: "SERVICE_UNAVAILABLE", message: "a backing service is unavailable, try again shortly", headers: RETRY_LATER }],
  // 503 Service Unavailable: the backing service did not answer in time.
  [Code.DeadlineExceeded, { status: 503, code: "SERVICE_UNAVAILABLE", message: "a backing service did not answer in time, try again shortly", headers: RETRY_LATER }],
  // 500 Internal Server Error: see ANALYTICS_INTERNAL for the analytics service.
  [Code.Internal, INTERNAL],
]);

/**
 * Answers the gateway's own policies give, for which no RPC code stands: REST code → answer.
 * (The other refusals of the policy chain — 401, 403, 405, 413, 415, 429 — are still thrown
 * where they are decided.)
 */
export const POLICY_ERRORS = {
  // 409 Conflict: a request with the same Idempotency-Key is still running; retrying shortly gets its answer.
  IDEMPOTENCY_IN_PROGRESS: { status: 409, code: "IDEMPOTENCY_IN_PROGRESS", message: "a request with this Idempotency-Key is still running; retry shortly", headers: RETRY_LATER },
  // 422 Unprocessable Content: the Idempotency-Key was sent before with a different method, route or body.
  IDEMPOTENCY_KEY_REUSED: { status: 422, code: "IDEMPOTENCY_KEY_REUSED", message: "this Idempotency-Key was used for a different request (method, route or body); send a new key with a new request" },
} as const satisfies Readonly<Record<string, ErrorMapping>>;

/** The HttpError of a POLICY_ERRORS line. */
export function policyError(m: ErrorMapping): HttpError {
  return new HttpError(m.status, m.code, m.message ?? m.code.toLowerCase().replace(/_/g, " "), undefined, m.headers);
}

/** 500 Internal Server Error from an AnalyticsService method: an analytics query failed. */
const ANALYTICS_INTERNAL: ErrorMapping = { status: 500, code: "ANALYTICS_ERROR", message: "an analytics query failed" };

const MAX_MESSAGE = 500;

/** The mapping for an RPC error code, raised by a method of `service` (when known). */
export function mappingOf(code: Code, service?: DescService): ErrorMapping {
  if (code === Code.Internal && service?.typeName === AnalyticsService.typeName) return ANALYTICS_INTERNAL;
  return ERROR_TABLE.get(code) ?? INTERNAL;
}

/**
 * Turns anything thrown inside the gateway into the HttpError to answer with. HttpErrors pass
 * through; ConnectErrors go through the table; anything else is 500 INTERNAL_ERROR.
 */
export function toHttpError(err: unknown, service?: DescService): HttpError {
  if (err instanceof HttpError) return err;
  if (!(err instanceof ConnectError)) return new HttpError(INTERNAL.status, INTERNAL.code, INTERNAL.message!);
  const m = mappingOf(err.code, service);
  const message = m.message ?? (err.rawMessage.slice(0, MAX_MESSAGE) || m.code.toLowerCase().replace(/_/g, " "));
  const details = m.status === 400 ? safeViolations(err) : [];
  return new HttpError(m.status, m.code, message, details.length > 0 ? details : undefined, m.headers);
}

function safeViolations(err: ConnectError): ReturnType<typeof violationsOf> {
  try {
    return violationsOf(err);
  } catch {
    // An undecodable detail must not turn a 400 into a 500.
    return [];
  }
}
