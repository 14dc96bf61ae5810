/**
 * Request ids and tracing, the first policy of the chain: every answer carries
 * `X-Request-Id` (the caller's when it sent a sane one, else a new one), and each request
 * runs inside a SERVER span continuing the caller's W3C `traceparent`, so the RPC client
 * interceptor of the mesh carries the trace on to the services.
 */
import { randomUUID } from "node:crypto";
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type TextMapGetter } from "@opentelemetry/api";
import type { Step } from "./context.js";

const tracer = trace.getTracer("linquid.gateway");

/** At most 128 printable ASCII characters, no spaces: safe to echo into a header and a log line. */
const SANE = /^[\x21-\x7e]{1,128}$/;

/** The caller's id when sane, else a fresh one. */
export function requestIdFrom(header: string | string[] | undefined): string {
  const v = Array.isArray(header) ? header[0] : header;
  return v !== undefined && SANE.test(v) ? v : randomUUID();
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

const getter: TextMapGetter<Headers> = {
  keys: (h) => Object.keys(h),
  get: (h, k) => h[k.toLowerCase()],
};

export function createRequestIdPolicy(): Step {
  return (req, next) => {
    const id = requestIdFrom(req.headers["x-request-id"]);
    req.requestId = id;
    req.responseHeaders.set("x-request-id", id);
    const parent = propagation.extract(ROOT_CONTEXT, req.headers, getter);
    return context.with(parent, () =>
      tracer.startActiveSpan(`${req.method} ${req.route?.route.template ?? "gateway"}`, { kind: SpanKind.SERVER, attributes: { "http.request.method": req.method, "request.id": id } }, async (span) => {
        try {
          const answer = await next();
          if (req.route !== undefined) span.updateName(`${req.method} ${req.route.route.template}`);
          span.setAttribute("http.response.status_code", answer.status);
          if (answer.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
          return answer;
        } finally {
          span.end();
        }
      }),
    );
  };
}
