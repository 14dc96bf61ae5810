/**
 * Runs work inside an active span that records failures: the one place span bookkeeping
 * (exception, ERROR status, end) is written. RPC, MongoDB and Redis spans all go through it.
 */
import { SpanStatusCode, type Span, type SpanOptions, type Tracer } from "@opentelemetry/api";

/** Starts `name` as the active span, runs `fn` in it, marks it failed if `fn` throws, ends it. */
export function inSpan<T>(tracer: Tracer, name: string, options: SpanOptions, fn: (span: Span) => Promise<T>, describeError?: (span: Span, err: unknown) => void): Promise<T> {
  return tracer.startActiveSpan(name, options, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      if (describeError !== undefined) describeError(span, err);
      else {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      throw err;
    } finally {
      span.end();
    }
  });
}
