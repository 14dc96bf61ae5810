/**
 * One trace follows a call through an RPC client, the service and its database call.
 */
import { context, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { WorkspacesService } from "@linquid/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

describe("tracing", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let mesh: TestMesh;
  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: "test", exporter });
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces" });
  });
  afterAll(async () => {
    await mesh?.stop();
    await telemetry?.shutdown();
  });

  it("propagates W3C trace context from a gRPC client through the service to MongoDB", async () => {
    exporter.reset();
    const client = mesh.grpcClient(WorkspacesService);
    const tracer = trace.getTracer("test");
    const root = tracer.startSpan("caller");
    await context.with(trace.setSpan(context.active(), root), () => client.createWorkspace({ name: "Traced", plan: "pro" }));
    root.end();
    const traceId = root.spanContext().traceId;
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const names = spans.map((s) => s.name);
    expect(names).toContain("linquid.workspaces.v1.WorkspacesService/CreateWorkspace");
    expect(names).toContain("mongodb.insertOne workspaces");
    // The server span sits in the same trace, under the client span, across HTTP/2.
    const server = spans.find((s) => s.name.endsWith("/CreateWorkspace") && s.kind === 1);
    const db = spans.find((s) => s.name === "mongodb.insertOne workspaces");
    expect(server).toBeDefined();
    expect(db?.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
  });
});
