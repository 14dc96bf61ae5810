/**
 * One access line and the RED metrics of every RPC served, in-process or over gRPC: method,
 * gRPC status code, duration, the workspace when the request names one, the request id the
 * gateway passed on, and the trace and span ids of the RPC's SERVER span. Nothing else of the
 * request or the answer is read: no PII, no keys.
 *
 * Health checks (the kubelet's probes) are logged at debug only.
 *
 * It runs inside the server tracing interceptor (host.ts puts it after), so the active span is
 * the RPC's. A streamed answer is done when its last message was taken, failed or was dropped.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Logger } from "./logger.js";
import { rpcDuration, rpcHandled, secondsSince } from "./metrics.js";

/** gRPC's names of the status codes (grpc/doc/statuscodes.md), by number. */
export const GRPC_CODE_NAMES: readonly string[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** Connect has no member for success; gRPC's code 0. */
const OK = 0 as Code;

/** Probes, not traffic: the kubelet asks every few seconds. Their lines are debug; they are counted alike. */
const HEALTH = "grpc.health.v1.Health";

/** The request id a caller passed, when it is one a log line may carry (see the gateway's request-id.ts). */
const SANE_ID = /^[\x21-\x7e]{1,128}$/;

function workspaceOf(message: unknown): string | undefined {
  const ws = (message as { workspaceId?: unknown }).workspaceId;
  return typeof ws === "string" && ws !== "" ? ws : undefined;
}

/** Wraps a streamed answer so that `done` runs once when it ends, however it ends. */
async function* observed<T>(messages: AsyncIterable<T>, done: (code: Code) => void): AsyncGenerator<T> {
  let code: Code = Code.Canceled;
  try {
    yield* messages;
    code = OK;
  } catch (err) {
    code = ConnectError.from(err).code;
    throw err;
  } finally {
    done(code);
  }
}

/** The access-log and metrics interceptor of the services' side. */
export function createRpcObserveInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const service = req.service.typeName;
    const method = req.method.name;
    const sc = trace.getActiveSpan()?.spanContext();
    const ids = sc !== undefined && trace.isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : {};
    const workspaceId = req.stream ? undefined : workspaceOf(req.message);
    const requestId = req.header.get("x-request-id");
    const quiet = service === HEALTH;
    let finished = false;
    const done = (code: Code) => {
      if (finished) return;
      finished = true;
      const seconds = secondsSince(started);
      const name = GRPC_CODE_NAMES[code] ?? String(code);
      rpcHandled.inc({ service, method, code: name });
      rpcDuration.observe({ service, method }, seconds);
      (quiet ? logger.debug : logger.info)("rpc", {
        rpc: `${service}/${method}`,
        code: name,
        durationMs: Math.round(seconds * 10_000) / 10,
        ...(workspaceId !== undefined ? { workspaceId } : {}),
        ...(requestId !== null && SANE_ID.test(requestId) ? { requestId } : {}),
        ...ids,
      });
    };
    try {
      const res = await next(req);
      if (!res.stream) {
        done(OK);
        return res;
      }
      return { ...res, message: observed(res.message, done) };
    } catch (err) {
      done(ConnectError.from(err).code);
      throw err;
    }
  };
}
