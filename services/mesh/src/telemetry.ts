/**
 * OpenTelemetry bootstrap. Call startTelemetry() before anything else loads: W3C trace
 * context is propagated through every RPC (see rpc-tracing.ts), and spans are exported
 * over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and nowhere otherwise.
 *
 * What a span costs depends on whether anything exports it:
 * - an exporter configured: new traces are sampled at `sampleRatio` (OTEL_TRACES_SAMPLER_ARG),
 *   a trace whose caller decided (traceparent's sampled flag) follows that decision, and only
 *   sampled spans are recorded;
 * - nothing exporting: spans are never recorded. Each still gets ids of its own in its trace
 *   (the caller's, or a new one), so log lines carry trace ids and downstream services receive
 *   the caller's trace and sampling decision unchanged; a span then costs two random ids and an
 *   object, nothing of the SDK's span bookkeeping.
 */
import { context, trace, TraceFlags, type Context, type Span, type SpanContext, type SpanOptions, type Tracer, type TracerProvider } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor, ParentBasedSampler, RandomIdGenerator, SimpleSpanProcessor, TraceIdRatioBasedSampler, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";

export interface Telemetry {
  shutdown(): Promise<void>;
}

export interface TelemetryOptions {
  serviceName: string;
  /** OTLP endpoint (base URL); spans go to `${endpoint}/v1/traces`. */
  otlpEndpoint?: string | undefined;
  /** Extra exporter, e.g. an InMemorySpanExporter in tests. Exported synchronously. */
  exporter?: SpanExporter;
  /** Share of new traces recorded when something exports (default 1). */
  sampleRatio?: number;
}

const ids = new RandomIdGenerator();
const INVALID_TRACE_ID = "00000000000000000000000000000000";

/** Spans that record nothing but carry trace context on (see the module comment). */
class PropagatingTracer implements Tracer {
  startSpan(_name: string, options?: SpanOptions, ctx: Context = context.active()): Span {
    // A parent in the context was made here or checked by the propagator that extracted it.
    const parent = options?.root === true ? undefined : trace.getSpanContext(ctx);
    const inTrace = parent !== undefined && parent.traceId !== INVALID_TRACE_ID;
    const spanContext: SpanContext = {
      traceId: inTrace ? parent.traceId : ids.generateTraceId(),
      spanId: ids.generateSpanId(),
      traceFlags: inTrace ? parent.traceFlags : TraceFlags.NONE,
    };
    if (inTrace && parent.traceState !== undefined) spanContext.traceState = parent.traceState;
    return trace.wrapSpanContext(spanContext);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: [F] | [SpanOptions, F] | [SpanOptions, Context, F]): ReturnType<F> {
    const fn = rest[rest.length - 1] as F;
    const options = rest.length >= 2 ? (rest[0] as SpanOptions) : undefined;
    const ctx = rest.length === 3 ? (rest[1] as Context) : context.active();
    const span = this.startSpan(name, options, ctx);
    return context.with(trace.setSpan(ctx, span), fn as (span: Span) => ReturnType<F>, undefined, span);
  }
}

class PropagatingTracerProvider implements TracerProvider {
  private readonly tracer = new PropagatingTracer();
  getTracer(): Tracer {
    return this.tracer;
  }
}

/** Starts the SDK: context propagation always, recording and export only where configured. */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  const spanProcessors: SpanProcessor[] = [];
  if (options.otlpEndpoint !== undefined) {
    spanProcessors.push(new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces` }) }));
  }
  if (options.exporter !== undefined) spanProcessors.push(new SimpleSpanProcessor({ exporter: options.exporter }));
  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    // Without processors the SDK registers no tracer provider; the propagating one is set below.
    spanProcessors,
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio ?? 1) }),
    instrumentations: [],
    // Resource detectors read the host and process only; nothing is fetched.
  });
  sdk.start();
  if (spanProcessors.length === 0) trace.setGlobalTracerProvider(new PropagatingTracerProvider());
  return {
    shutdown: async () => {
      await sdk.shutdown();
      if (spanProcessors.length === 0) trace.disable();
    },
  };
}
