/**
 * One trace spans a REST request: the gateway, the RPC to a service, and the service's
 * database calls, continuing the caller's W3C traceparent.
 */
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

describe("end-to-end tracing", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let mesh: TestMesh;
  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: "test", exporter });
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,gateway", ANALYTICS_ADDR: "http://127.0.0.1:9" });
  });
  afterAll(async () => {
    await mesh?.stop();
    await telemetry?.shutdown();
  });

  it("follows a request from the gateway through the customers service to MongoDB", async () => {
    const { key } = await mesh.workspace();
    exporter.reset();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await mesh.request("POST", "/customers", {
      key,
      body: { externalId: "trace-1" },
      headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    });
    expect(res.status).toBe(201);
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const gateway = spans.find((s) => s.name === "POST /customers");
    const rpcServer = spans.find((s) => s.name === "linquid.customers.v1.CustomersService/CreateCustomer" && s.kind === 1);
    const db = spans.filter((s) => s.name.startsWith("mongodb."));
    expect(gateway?.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    expect(rpcServer).toBeDefined();
    expect(db.length).toBeGreaterThan(0);
    // Every database span descends from an RPC server span, and that from the gateway's span.
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const ancestors = (span: (typeof spans)[number]) => {
      const out: string[] = [];
      for (let p = span.parentSpanContext?.spanId; p !== undefined && byId.has(p); p = byId.get(p)!.parentSpanContext?.spanId) out.push(byId.get(p)!.name);
      return out;
    };
    for (const d of db) {
      const chain = ancestors(d);
      expect(chain.some((n) => n.startsWith("linquid."))).toBe(true);
      expect(chain.at(-1)).toBe("POST /customers");
    }
    expect(db.some((d) => d.name === "mongodb.insertOne customers" && ancestors(d).includes(rpcServer!.name))).toBe(true);
  });
});
