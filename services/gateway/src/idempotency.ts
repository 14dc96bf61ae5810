/**
 * The Idempotency-Key policy (rest-api.md, "Developer platform"): a POST or PATCH sent with
 * `Idempotency-Key: <1..255 printable ASCII>` runs once per workspace and key; sent again within
 * 24 hours with the same method, route and body it gets the first answer again — same status,
 * body and answer headers, plus `Idempotent-Replayed: true` — and nothing runs.
 *
 * - Another method, route or body under a key already used: 422 IDEMPOTENCY_KEY_REUSED.
 * - Sent again while the first is still running: 409 IDEMPOTENCY_IN_PROGRESS (Retry-After: 1).
 * - A first answer of 500 or more is not kept: the key is released and a retry runs again.
 * - Requests refused before this step (401, 403, 429, and the gateway's own 400/413/415 for a
 *   request it cannot decode) never reach it: nothing is kept and the key stays free, so a
 *   corrected request may use it. A 4xx the service answers is kept like any answer below 500.
 * - Other methods ignore the header (GET and DELETE are idempotent by themselves).
 *
 * The fingerprint of a request is the SHA-256 of its method, route template, path parameters,
 * known query parameters (normalized, as the cache keys them) and the SHA-256 of its body bytes:
 * the same JSON spelled differently is a different body.
 *
 * Records are kept by the workspaces plugin's IdempotencyService (the gateway owns no database;
 * see idempotency.proto for why there); this step claims the key before the RPC and records the
 * answer (or releases the key) after it. The service unreachable → 503, like authentication.
 * Redis plays no part. A claim this gateway never settles (it crashed, or the service was away
 * when the answer came) lapses after `leaseMs`, at least the request's deadline: until then a
 * retry gets 409, after it the retry runs. A record or release that fails is tried again in the
 * background, once a second, while the lease lasts.
 *
 * Answer bodies over MAX_KEPT_BODY_BYTES are not kept (the key is released, a warning logged). No
 * POST or PATCH route answers anything near that — a customer record is bounded by its 16 KiB of
 * metadata — so it bounds the record's size; it is not expected to happen.
 */
import { createHash } from "node:crypto";
import type { Client } from "@connectrpc/connect";
import type { IdempotencyService, IdempotentAnswer } from "@linquid/contracts";
import { isUnavailable, unavailable, type Logger } from "@linquid/mesh";
import type { Answer, GatewayRequest, Step } from "./context.js";
import { POLICY_ERRORS, policyError, toHttpError } from "./error-map.js";
import { HttpError, validationError } from "./http-error.js";
import { errorAnswer } from "./pipeline.js";

/** The calls this step makes: the IdempotencyService client, or a fake. */
export type IdempotencyRecords = Pick<Client<typeof IdempotencyService>, "claimIdempotencyKey" | "recordIdempotentAnswer" | "releaseIdempotencyKey">;

export interface IdempotencyPolicyOptions {
  readonly records: IdempotencyRecords;
  /** How long a claim holds if this gateway neither records nor releases it: the request's deadline plus a margin. */
  readonly leaseMs: number;
  readonly logger: Logger;
  /** Budget of each call to the records (default 5 s). */
  readonly callTimeoutMs?: number;
  readonly now?: () => number;
}

export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
export const REPLAYED_HEADER = "idempotent-replayed";
/** Largest answer body kept, in UTF-8 bytes (the service's limit too). */
export const MAX_KEPT_BODY_BYTES = 1024 * 1024;
const KEY_SHAPE = /^[\x20-\x7e]{1,255}$/;
/** Headers every answer gets anew: a replay carries its own request id and budget, not the first's. */
const PER_REQUEST_HEADER = /^(x-request-id|x-ratelimit-.*)$/;
/** Methods that take an Idempotency-Key (rest-api.md, "Developer platform"). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(["POST", "PATCH"]);

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/** The request's Idempotency-Key; undefined without one; 400 when malformed or sent twice. */
export function idempotencyKeyOf(req: GatewayRequest): string | undefined {
  const lines = req.headersDistinct?.[IDEMPOTENCY_KEY_HEADER];
  const raw = req.headers[IDEMPOTENCY_KEY_HEADER];
  if (raw === undefined && (lines === undefined || lines.length === 0)) return undefined;
  const issue = (text: string) => validationError([{ field: "Idempotency-Key", issue: text }]);
  if ((lines !== undefined && lines.length > 1) || Array.isArray(raw)) throw issue("must be sent once");
  const key = lines?.[0] ?? (raw as string);
  if (!KEY_SHAPE.test(key)) throw issue("must be 1..255 printable ASCII characters");
  return key;
}

/** What the request asks for, as one hash (see the file comment). Needs routing and decoding done. */
export function fingerprintOf(req: GatewayRequest, body: Buffer): string {
  const m = req.route!;
  const vars = [...m.pathVars].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return sha256(JSON.stringify([req.method, m.route.template, vars, req.canonicalQuery ?? "", sha256(body)]));
}

export function createIdempotencyPolicy(options: IdempotencyPolicyOptions): Step {
  const { records, leaseMs, logger } = options;
  const timeoutMs = options.callTimeoutMs ?? 5000;
  const now = options.now ?? Date.now;

  /** A failed call to the records: 503 when the service cannot be reached, else a fault (500). */
  const failed = (what: string, err: unknown, req: GatewayRequest): Error => {
    if (isUnavailable(err)) return unavailable("workspaces service", err);
    logger.error(`idempotency ${what} failed`, { requestId: req.requestId, error: err instanceof Error ? err.message : String(err) });
    // An HttpError, not a ConnectError Internal: on an analytics route the error map would call that an analytics failure.
    return new HttpError(500, "INTERNAL_ERROR", "an unexpected error occurred");
  };

  /**
   * Records or releases; a failure is logged and the call tried again once a second while the
   * claim's lease lasts (after it, the claim lapses anyway). The answer never waits for retries.
   */
  const settle = async (what: string, call: () => Promise<boolean>, leaseEnd: number, requestId: string | undefined) => {
    let warned = false;
    const attempt = async (): Promise<boolean> => {
      try {
        if (!(await call())) logger.warn(`idempotency ${what}: the claim had lapsed and the key was claimed again`, { requestId });
        return true;
      } catch (err) {
        if (!warned) logger.warn(`idempotency ${what} failed; retrying while the claim lasts`, { requestId, error: err instanceof Error ? err.message : String(err) });
        warned = true;
        return false;
      }
    };
    if (await attempt()) return;
    const again = () => {
      if (now() + 1000 >= leaseEnd) return;
      setTimeout(() => void attempt().then((ok) => ok || again()), 1000).unref();
    };
    again();
  };

  return async (req, next) => {
    if (!IDEMPOTENT_METHODS.has(req.method)) return next();
    const key = idempotencyKeyOf(req);
    const route = req.route?.route;
    const workspaceId = req.principal?.workspaceId;
    if (route === undefined || workspaceId === undefined) throw new Error("idempotency policy ran before routing or auth");
    // A streamed answer cannot be kept; no POST or PATCH route streams.
    if (key === undefined || route.stream !== undefined) return next();

    const fingerprint = fingerprintOf(req, await req.readBody());
    const claimedAt = now();
    let claim;
    try {
      claim = await records.claimIdempotencyKey({ workspaceId, key, fingerprint, leaseMs }, { timeoutMs });
    } catch (err) {
      throw failed("claim", err, req);
    }
    switch (claim.outcome.case) {
      case "answer":
        return replay(req, claim.outcome.value);
      case "inProgress":
        throw policyError(POLICY_ERRORS.IDEMPOTENCY_IN_PROGRESS);
      case "keyReused":
        throw policyError(POLICY_ERRORS.IDEMPOTENCY_KEY_REUSED);
      case "claimToken":
        break;
      default:
        throw failed("claim", new Error("claim answered no outcome"), req);
    }
    const claimToken = claim.outcome.value;
    const leaseEnd = claimedAt + leaseMs;
    const release = () => settle("release", async () => (await records.releaseIdempotencyKey({ workspaceId, key, claimToken }, { timeoutMs })).released, leaseEnd, req.requestId);
    const keep = (answer: Answer, headers: Record<string, string>) => {
      if (Buffer.byteLength(answer.body, "utf8") > MAX_KEPT_BODY_BYTES) {
        logger.warn("idempotency: answer too large to keep; key released", { requestId: req.requestId, bytes: Buffer.byteLength(answer.body, "utf8") });
        return release();
      }
      const kept = { status: answer.status, body: answer.body, headers };
      return settle("record", async () => (await records.recordIdempotentAnswer({ workspaceId, key, claimToken, answer: kept }, { timeoutMs })).recorded, leaseEnd, req.requestId);
    };

    const before = new Map(req.responseHeaders);
    let answer: Answer;
    try {
      answer = await next();
    } catch (err) {
      // Kept as the error map will answer it (it runs above this step, on the same error).
      const mapped = toHttpError(err, route.service);
      if (mapped.status >= 500) await release();
      else await keep(errorAnswer(mapped), { ...answerHeaders(before, req.responseHeaders), ...mapped.headers });
      throw err;
    }
    if (answer.status >= 500 || answer.stream !== undefined) await release();
    else await keep(answer, answerHeaders(before, req.responseHeaders));
    return answer;
  };
}

/** Headers later steps set on this answer (the cache's X-Cache, say), without the per-request ones. */
function answerHeaders(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of after) if (before.get(k) !== v && !PER_REQUEST_HEADER.test(k)) out[k] = v;
  return out;
}

function replay(req: GatewayRequest, answer: IdempotentAnswer): Answer {
  for (const [k, v] of Object.entries(answer.headers)) req.responseHeaders.set(k, v);
  req.responseHeaders.set(REPLAYED_HEADER, "true");
  const code = answer.status >= 400 ? errorCodeOf(answer.body) : undefined;
  return { status: answer.status, body: answer.body, ...(code === undefined ? {} : { code }) };
}

/** The envelope's error code of a kept error answer, for the access line and metrics, as the first answer had it. */
function errorCodeOf(body: string): string | undefined {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}
