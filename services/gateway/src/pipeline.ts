/**
 * The policy chain of every REST request, in its one fixed order:
 *
 *   1. request id   X-Request-Id, SERVER span continuing the caller's traceparent;
 *                   within it, the access line and metrics of the final answer (observe.ts)
 *   2. error map    anything thrown below → the JSON error envelope (error-map.ts)
 *   3. routing      /openapi.json and /docs answered without a key (openapi/reference.ts);
 *                   the contract's routes: 404 NOT_FOUND / 405 METHOD_NOT_ALLOWED
 *   4. auth         API key → principal: 401 UNAUTHORIZED / INVALID_API_KEY, 503
 *   5. budget view  answers refused in 6–7 still carry X-RateLimit-* (nothing spent)
 *   6. scope        403 FORBIDDEN
 *   7. entitlement  403 FEATURE_NOT_AVAILABLE
 *   8. rate limit   spends a token: 429 RATE_LIMITED + Retry-After
 *   9. decode       path, query, body → RPC request: 400 / 413 / 415
 *  10. idempotency  POST/PATCH with Idempotency-Key: replay, 409 / 422, or run and keep (idempotency.ts)
 *  11. cache        snapshot read / generation bump (X-Cache)
 *  12. RPC call     through the mesh client, headers from an allow-list only
 *
 * Idempotency comes after the rate limit, so a replayed request spends a token like any other (a
 * retry loop is not free), and after decoding, so a request the gateway refuses as malformed
 * leaves its key unused; it comes before the cache, so a replay changes nothing, not even the
 * workspace's snapshot generation.
 *
 * Each step is a small policy made by a factory; this file only puts them in order. A streaming
 * route's call answers as soon as the first response message (or the error) arrives: an error
 * before it is an ordinary error answer; after it, the body is streamed (server.ts), each
 * message asked for when the client has taken the one before.
 */
import type { Message } from "@bufbuild/protobuf";
import type { CallOptions } from "@connectrpc/connect";
import type { Logger } from "@linquid/mesh";
import { createAuthPolicy, createScopePolicy, type Authenticator } from "./auth.js";
import type { Answer, GatewayRequest, Step } from "./context.js";
import { createEntitlementPolicy } from "./entitlement.js";
import { toHttpError } from "./error-map.js";
import { HttpError } from "./http-error.js";
import { createRateLimitPolicies, type Limiter } from "./rate-limit.js";
import { createObservePolicy } from "./observe.js";
import { createRequestIdPolicy } from "./request-id.js";
import type { Route, RouteTable } from "./route-table.js";
import { recordWriter, streamFormatOf } from "./stream-format.js";
import { decodeRequest, encodeResponse, parseJsonBody } from "./transcoder.js";

/** Calls the RPC of a route. The gateway wires it to the mesh clients; tests to fakes. */
export type Invoke = (route: Route, request: Message, options: CallOptions) => Promise<Message>;
/** Calls the server-streaming RPC of a streaming route. */
export type InvokeStream = (route: Route, request: Message, options: CallOptions) => AsyncIterable<Message>;

export interface PipelineDeps {
  readonly routes: RouteTable;
  readonly authenticator: Authenticator;
  readonly limiter: Limiter;
  readonly cache: Step;
  /** Answers the API reference (/openapi.json, /docs) before routing; absent in tests of the chain alone. */
  readonly reference?: Step;
  /** The Idempotency-Key policy (idempotency.ts); without it the header is ignored. */
  readonly idempotency?: Step;
  readonly invoke: Invoke;
  /** Needed when the routes include streaming ones. */
  readonly invokeStream?: InvokeStream;
  readonly logger: Logger;
  /** Per-call deadline towards the services. */
  readonly rpcTimeoutMs?: number;
}

/** An error answer in the contract's envelope. */
export function errorAnswer(err: HttpError): Answer {
  const error: Record<string, unknown> = { code: err.code, message: err.message };
  if (err.details !== undefined && err.details.length > 0) error["details"] = err.details;
  return { status: err.status, body: JSON.stringify({ success: false, error }), code: err.code };
}

function createErrorMapPolicy(logger: Logger): Step {
  return async (req, next) => {
    try {
      return await next();
    } catch (err) {
      const mapped = toHttpError(err, req.route?.route.service);
      if (mapped.status >= 500) {
        const cause = err instanceof Error ? { name: err.name, message: err.message, cause: err.cause instanceof Error ? err.cause.message : undefined } : String(err);
        logger.error("request failed", { requestId: req.requestId, route: req.route ? `${req.method} ${req.route.route.template}` : undefined, status: mapped.status, error: cause });
      }
      for (const [k, v] of Object.entries(mapped.headers ?? {})) req.responseHeaders.set(k, v);
      return errorAnswer(mapped);
    }
  };
}

function createRoutingPolicy(routes: RouteTable): Step {
  return async (req, next) => {
    const found = routes.match(req.method, req.path, req.query);
    if (found.kind === "not-found") throw new HttpError(404, "NOT_FOUND", "no such route; see the API reference for the routes under the base path");
    if (found.kind === "method-not-allowed") {
      throw new HttpError(405, "METHOD_NOT_ALLOWED", `method ${req.method} is not allowed here; use ${found.allow.join(", ")}`, undefined, { allow: found.allow.join(", ") });
    }
    req.route = found.match;
    return next();
  };
}

function createDecodePolicy(): Step {
  return async (req, next) => {
    const header = req.headers["content-type"];
    const body = parseJsonBody(await req.readBody(), typeof header === "string" ? header : undefined);
    const decoded = decodeRequest(req.route!, req.query, body, req.principal!.workspaceId);
    req.rpcRequest = decoded.message;
    req.canonicalQuery = decoded.canonicalQuery;
    return next();
  };
}

/** The last step: the RPC itself. Only allow-listed headers reach the service: the request id (trace context is added by the mesh's client interceptor). */
function createCall(invoke: Invoke, invokeStream: InvokeStream | undefined, timeoutMs: number): (req: GatewayRequest) => Promise<Answer> {
  return async (req) => {
    const route = req.route!.route;
    if (route.stream !== undefined) {
      if (invokeStream === undefined) throw new Error(`no stream invoker for ${route.method.name}`);
      return callStream(invokeStream, req);
    }
    const response = await invoke(route, req.rpcRequest!, { headers: { "x-request-id": req.requestId! }, timeoutMs });
    return encodeResponse(route, response);
  };
}

/**
 * A streaming call. It has no overall deadline (an export takes as long as its client reads);
 * the service bounds each step, and the call is cancelled when the client goes away or the
 * body stops being read (server.ts), which stops the service's walk.
 */
async function callStream(invokeStream: InvokeStream, req: GatewayRequest): Promise<Answer> {
  const route = req.route!.route;
  const spec = route.stream!;
  const cancel = new AbortController();
  const onGone = () => cancel.abort();
  req.signal?.addEventListener("abort", onGone, { once: true });
  const messages = invokeStream(route, req.rpcRequest!, { headers: { "x-request-id": req.requestId! }, signal: cancel.signal, timeoutMs: 0 })[Symbol.asyncIterator]();
  const done = () => {
    req.signal?.removeEventListener("abort", onGone);
    cancel.abort();
    // Ends the producer too (an in-process stream is only cancelled when returned).
    void messages.return?.().catch(() => undefined);
  };
  let first: IteratorResult<Message>;
  try {
    first = await messages.next();
  } catch (err) {
    done();
    throw err;
  }
  const format = spec.formatField === undefined ? "ndjson" : streamFormatOf((req.rpcRequest as unknown as Record<string, unknown>)[spec.formatField.localName]);
  const writer = recordWriter(spec.record, format);
  const records = (m: Message) => (m as unknown as Record<string, Message[]>)[spec.records.localName] ?? [];
  async function* chunks(): AsyncGenerator<string, void, undefined> {
    try {
      if (writer.head !== "") yield writer.head;
      for (let r = first; r.done !== true; r = await messages.next()) {
        const text = writer.rows(records(r.value));
        if (text !== "") yield text;
      }
    } finally {
      done();
    }
  }
  const gen = chunks();
  return {
    status: 200,
    body: "",
    stream: {
      contentType: writer.contentType,
      chunks: {
        next: () => gen.next(),
        // A generator never started skips its `finally`: end the call here as well.
        return: async () => {
          done();
          return gen.return(undefined);
        },
      },
    },
  };
}

/** Composes the chain; the returned function never throws. */
export function createPipeline(deps: PipelineDeps): (req: GatewayRequest) => Promise<Answer> {
  const rateLimit = createRateLimitPolicies(deps.limiter);
  const steps: Step[] = [
    createRequestIdPolicy(),
    createObservePolicy(deps.logger),
    createErrorMapPolicy(deps.logger),
    ...(deps.reference === undefined ? [] : [deps.reference]),
    createRoutingPolicy(deps.routes),
    createAuthPolicy(deps.authenticator),
    rateLimit.report,
    createScopePolicy(),
    createEntitlementPolicy(),
    rateLimit.enforce,
    createDecodePolicy(),
    ...(deps.idempotency === undefined ? [] : [deps.idempotency]),
    deps.cache,
  ];
  const call = createCall(deps.invoke, deps.invokeStream, deps.rpcTimeoutMs ?? 15_000);
  return async (req) => {
    const run = (i: number): Promise<Answer> => (i === steps.length ? call(req) : steps[i]!(req, () => run(i + 1)));
    try {
      return await run(0);
    } catch (err) {
      // Only reachable if the request-id or error-map step itself failed.
      deps.logger.error("pipeline failed", { requestId: req.requestId, error: err instanceof Error ? err.message : String(err) });
      return errorAnswer(new HttpError(500, "INTERNAL_ERROR", "an unexpected error occurred"));
    }
  };
}
