/**
 * OpenTelemetry bootstrap. Call startTelemetry() before anything else loads: W3C trace
 * context is propagated through every RPC (see rpc-tracing.ts), and spans are exported
 * over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and nowhere otherwise.
 */
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor, NoopSpanProcessor, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace";
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
}

/** Starts the SDK: context propagation always, export only where configured. */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  const spanProcessors: SpanProcessor[] = [];
  if (options.otlpEndpoint !== undefined) {
    spanProcessors.push(new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces` }) }));
  }
  if (options.exporter !== undefined) spanProcessors.push(new SimpleSpanProcessor({ exporter: options.exporter }));
  // Spans are still made (and trace context propagated) when nothing exports them.
  if (spanProcessors.length === 0) spanProcessors.push(new NoopSpanProcessor());
  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    spanProcessors,
    instrumentations: [],
    // Resource detectors read the host and process only; nothing is fetched.
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}
