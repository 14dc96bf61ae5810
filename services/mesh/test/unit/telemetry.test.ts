/**
 * Tracing with nothing exporting: spans record nothing, yet trace context flows on. (One
 * process-wide setup per file: the sampling of an exporting process is in trace-sampling.test.ts.)
 */
import { context, propagation, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "../../src/telemetry.js";

describe("tracing without an exporter", () => {
  let telemetry: Telemetry;
  beforeAll(() => {
    telemetry = startTelemetry({ serviceName: "test" });
  });
  afterAll(() => telemetry.shutdown());
  const tracer = () => trace.getTracer("test");
  const inject = () => {
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    return carrier["traceparent"];
  };

  it("records nothing, but gives every span ids of its own in a new trace", () => {
    const [a, b] = ["a", "b"].map((n) => tracer().startSpan(n));
    for (const s of [a!, b!]) {
      expect(s.isRecording()).toBe(false);
      expect(s.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(s.spanContext().traceId).not.toBe("0".repeat(32));
      expect(s.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(s.spanContext().traceFlags).toBe(TraceFlags.NONE);
    }
    expect(a!.spanContext().traceId).not.toBe(b!.spanContext().traceId);
  });

  it("continues the caller's trace with the caller's sampling decision, and propagates the active span", async () => {
    for (const flags of ["01", "00"]) {
      const caller = `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-${flags}`;
      const parent = propagation.extract(ROOT_CONTEXT, { traceparent: caller, tracestate: "vendor=1" });
      const sent = await context.with(parent, () =>
        tracer().startActiveSpan("server", async (server) => {
          expect(server.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
          expect(server.spanContext().spanId).not.toBe("b7ad6b7169203331");
          expect(server.spanContext().traceState?.get("vendor")).toBe("1");
          await new Promise((r) => setTimeout(r, 1));
          // The active span survives an await, and is what a nested call sends on.
          return tracer().startActiveSpan("client", (client) => {
            expect(client.spanContext().spanId).not.toBe(server.spanContext().spanId);
            return inject();
          });
        }),
      );
      expect(sent).toMatch(new RegExp(`^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-${flags}$`));
    }
  });

  it("starts a new trace for a root span even inside another", () => {
    tracer().startActiveSpan("outer", (outer) => {
      const root = tracer().startSpan("root", { root: true });
      expect(root.spanContext().traceId).not.toBe(outer.spanContext().traceId);
    });
  });
});
