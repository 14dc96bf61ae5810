/**
 * Connect interceptors that carry W3C trace context across every RPC: the client side
 * opens a CLIENT span and injects `traceparent` into the request headers, the server side
 * extracts it and opens a SERVER span. They work over HTTP/2 and the in-memory transport alike.
 */
import type { Interceptor } from "@connectrpc/connect";
import { ConnectError } from "@connectrpc/connect";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { inSpan } from "./spans.js";

const tracer = trace.getTracer("linquid.rpc");

const headerSetter = { set: (h: Headers, k: string, v: string) => h.set(k, v) };
const headerGetter = {
  get: (h: Headers, k: string) => h.get(k) ?? undefined,
  keys: (h: Headers) => [...h.keys()],
};

function fail(span: Span, err: unknown): void {
  const ce = ConnectError.from(err);
  span.setAttribute("rpc.grpc.status_code", ce.code);
  span.recordException(ce);
  span.setStatus({ code: SpanStatusCode.ERROR, message: ce.rawMessage });
}

function rpcSpan(kind: SpanKind, req: { service: { typeName: string }; method: { name: string } }) {
  return { kind, attributes: { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name } };
}

/** Client side: opens a span per call and propagates its context in the headers. */
export function createClientTracingInterceptor(): Interceptor {
  return (next) => (req) =>
    inSpan(tracer, `${req.service.typeName}/${req.method.name}`, rpcSpan(SpanKind.CLIENT, req), () => {
      propagation.inject(context.active(), req.header, headerSetter);
      return next(req);
    }, fail);
}

/** Server side: continues the caller's trace from the headers. */
export function createServerTracingInterceptor(): Interceptor {
  return (next) => (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    return context.with(parent, () => inSpan(tracer, `${req.service.typeName}/${req.method.name}`, rpcSpan(SpanKind.SERVER, req), () => next(req), fail));
  };
}
