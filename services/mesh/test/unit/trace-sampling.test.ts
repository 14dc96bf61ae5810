/**
 * Tracing with an exporter: new traces sampled at the configured ratio (here 0: none), a
 * caller's decision followed either way.
 */
import { context, propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "../../src/telemetry.js";

describe("tracing with an exporter and a sampling ratio", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  beforeAll(() => {
    telemetry = startTelemetry({ serviceName: "test", exporter, sampleRatio: 0 });
  });
  afterAll(() => telemetry.shutdown());

  it("records no new trace at ratio 0, but every span of a trace its caller sampled, and none of one it did not", async () => {
    const tracer = trace.getTracer("test");
    const root = tracer.startSpan("root");
    expect(root.isRecording()).toBe(false);
    root.end();
    for (const flags of ["01", "00"]) {
      const parent = propagation.extract(ROOT_CONTEXT, { traceparent: `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-${flags}` });
      context.with(parent, () =>
        tracer.startActiveSpan(`server ${flags}`, (server) => {
          tracer.startSpan(`child ${flags}`).end();
          server.end();
        }),
      );
    }
    // The processor hands spans over asynchronously; the unsampled ones never come.
    for (let i = 0; i < 100 && exporter.getFinishedSpans().length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    expect(exporter.getFinishedSpans().map((s) => s.name).sort()).toEqual(["child 01", "server 01"]);
    expect(new Set(exporter.getFinishedSpans().map((s) => s.spanContext().traceId))).toEqual(new Set(["0af7651916cd43dd8448eb211c80319c"]));
  });
});
