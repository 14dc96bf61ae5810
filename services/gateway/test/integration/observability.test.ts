/**
 * Access logs and metrics of a running mesh: one line per REST request and per RPC served, with
 * the ids that join them to each other and to the trace, never PII or keys; LOG_LEVEL; the
 * Prometheus text of the metrics port moving with the traffic.
 */
import { createHash } from "node:crypto";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@linquid/contracts";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

type Line = Record<string, unknown>;
const parse = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);

/** The value of one sample of the Prometheus text, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    // Label values hold braces ("/customers/{id}"): the set ends at the first "} ".
    const end = line.indexOf("} ");
    const have = line.slice(name.length + 1, end).split(/,(?=\w+=")/);
    if (want.every((w) => have.includes(w))) return Number(line.slice(end + 2).split(" ")[0]);
  }
  return 0;
}

describe("access logs and metrics", () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let mesh: TestMesh;
  let quiet: TestMesh;
  const logged: string[] = [];
  const quietLogged: string[] = [];
  beforeAll(async () => {
    telemetry = startTelemetry({ serviceName: "test", exporter });
    [mesh, quiet] = await Promise.all([
      startTestMesh({ LOG_LEVEL: "info" }, { log: (l) => void logged.push(l) }),
      startTestMesh({ LOG_LEVEL: "warn", MESH_PLUGINS: "workspaces,customers,gateway", ANALYTICS_ADDR: "http://127.0.0.1:1" }, { log: (l) => void quietLogged.push(l) }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([mesh?.stop(), quiet?.stop()]);
    await telemetry?.shutdown();
  });

  const metrics = async (m: TestMesh) => {
    const res = await fetch(`${m.host.metricsUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/openmetrics-text/);
    return res.text();
  };

  it("writes one line per REST request and per RPC served, joined by request, trace and span ids, without PII or keys", async () => {
    const ws = await mesh.workspace();
    const pii = { externalId: `ext-obs-${Date.now()}`, email: "obs.person@example.com", name: "Obsidian Person", metadata: { plan: "secret-plan-value" } };
    const created = await mesh.request("POST", "/customers", { key: ws.key, body: pii });
    expect(created.status).toBe(201);
    const id = created.body.data.id as string;

    const fetched = await mesh.request("GET", `/customers/${id}`, { key: ws.key, headers: { "x-request-id": "rid-obs-get" } });
    expect(fetched.status).toBe(200);
    const byExternal = await mesh.request("GET", `/customers/ext_${pii.externalId}`, { key: ws.key, headers: { "x-request-id": "rid-obs-ext" } });
    expect(byExternal.status).toBe(200);
    const missing = await mesh.request("GET", "/no-such-route", { key: ws.key, headers: { "x-request-id": "rid-obs-404" } });
    expect(missing.status).toBe(404);
    const badKey = await mesh.request("GET", `/customers/${id}`, { key: `${ws.key}x`, headers: { "x-request-id": "rid-obs-401" } });
    expect(badKey.status).toBe(401);
    // A probe is not traffic: no line at info.
    expect((await mesh.grpcClient(Health).check({ service: "" })).status).toBe(ServingStatus.SERVING);

    const lines = parse(logged);
    const access = (rid: string) => lines.filter((l) => l["msg"] === "request" && l["requestId"] === rid);

    // The REST line: route template, never the raw path; ids of the workspace, request, trace, span.
    const [get] = access("rid-obs-get");
    expect(access("rid-obs-get")).toHaveLength(1);
    expect(get).toMatchObject({ level: "info", method: "GET", route: "/customers/{id}", status: 200, workspaceId: ws.id });
    expect(get!["durationMs"]).toEqual(expect.any(Number));
    expect(get!["code"]).toBeUndefined();
    expect(get!["traceId"]).toMatch(/^[0-9a-f]{32}$/);
    expect(get!["spanId"]).toMatch(/^[0-9a-f]{16}$/);
    expect(access("rid-obs-ext")).toMatchObject([{ route: "/customers/{id}", status: 200 }]);
    expect(access("rid-obs-404")).toMatchObject([{ route: null, status: 404, code: "NOT_FOUND" }]);
    expect(access("rid-obs-401")).toMatchObject([{ route: "/customers/{id}", status: 401, code: "INVALID_API_KEY" }]);
    expect(access("rid-obs-401")[0]!["workspaceId"]).toBeUndefined();

    // The RPC it made: its own line, in the same trace, under its own span.
    const rpc = lines.filter((l) => l["msg"] === "rpc" && l["requestId"] === "rid-obs-get");
    expect(rpc).toMatchObject([{ level: "info", rpc: "linquid.customers.v1.CustomersService/GetCustomer", code: "OK", workspaceId: ws.id, traceId: get!["traceId"] }]);
    expect(rpc[0]!["spanId"]).not.toBe(get!["spanId"]);
    expect(rpc[0]!["durationMs"]).toEqual(expect.any(Number));
    // An RPC that failed carries its gRPC code.
    expect(lines.some((l) => l["msg"] === "rpc" && l["rpc"] === "linquid.workspaces.v1.WorkspacesService/AuthenticateApiKey" && l["code"] === "UNAUTHENTICATED")).toBe(true);

    expect(lines.filter((l) => String(l["rpc"]).startsWith("grpc.health.v1.Health/"))).toEqual([]);

    // The ids are the trace's: the gateway's SERVER span and the RPC's.
    const spans = exporter.getFinishedSpans();
    expect(spans.find((s) => s.spanContext().spanId === get!["spanId"])?.name).toBe("GET /customers/{id}");
    expect(spans.find((s) => s.spanContext().spanId === rpc[0]!["spanId"])?.spanContext().traceId).toBe(get!["traceId"]);

    // Nothing the customer or the key holder is: not the PII, the key or its hash.
    const text = logged.join("");
    for (const secret of [pii.externalId, pii.email, pii.name, pii.metadata.plan, ws.key, createHash("sha256").update(ws.key).digest("hex")]) {
      expect(text).not.toContain(secret);
    }
  });

  it("counts requests, RPCs, database and Redis calls, cache lookups, rate-limit refusals and ingested events on the metrics port", async () => {
    const ws = await mesh.workspace();
    const limited = await mesh.workspace({ rateLimit: 1 });
    const before = await metrics(mesh);

    const created = await mesh.request("POST", "/customers", { key: ws.key, body: { externalId: `ext-m-${Date.now()}` } });
    expect(created.status).toBe(201);
    const id = created.body.data.id as string;
    for (let i = 0; i < 3; i++) expect((await mesh.request("GET", `/customers/${id}`, { key: ws.key })).status).toBe(200);
    const cohorts = "/customers/cohorts?group_by=month&start=2026-01-01&end=2026-12-31";
    expect((await mesh.request("GET", cohorts, { key: ws.key })).status).toBe(200);
    const last = await mesh.request("GET", cohorts, { key: ws.key, headers: { "x-request-id": "rid-obs-cached" } });
    expect(last.headers.get("x-cache")).toBe("HIT");
    expect((await mesh.request("GET", `/customers/${id}`, { key: limited.key })).status).toBe(404);
    expect((await mesh.request("GET", `/customers/${id}`, { key: limited.key })).status).toBe(429);
    expect((await mesh.request("POST", "/track/click", { key: ws.key, body: { clickId: `clk-m-${Date.now()}`, linkId: "lnk_1" } })).status).toBe(200);
    expect((await mesh.request("GET", "/openapi.json")).status).toBe(200);

    const after = await metrics(mesh);
    const delta = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);
    // The gateway's own pages are labelled by their path, not as unmatched requests.
    expect(delta("linquid_http_requests_total", { route: "/openapi.json", method: "GET", status: "200", code: "" })).toBe(1);
    expect(delta("linquid_http_requests_total", { route: "/customers/{id}", method: "GET", status: "200", code: "" })).toBe(3);
    expect(delta("linquid_http_requests_total", { route: "/customers/{id}", method: "GET", status: "429", code: "RATE_LIMITED" })).toBe(1);
    expect(delta("linquid_http_request_duration_seconds_count", { route: "/customers/{id}", method: "GET" })).toBe(5);
    expect(delta("linquid_rpc_server_handled_total", { service: "linquid.customers.v1.CustomersService", method: "GetCustomer", code: "OK" })).toBe(3);
    expect(delta("linquid_rpc_server_handled_total", { service: "linquid.customers.v1.CustomersService", method: "GetCustomer", code: "NOT_FOUND" })).toBe(1);
    expect(delta("linquid_rpc_server_duration_seconds_count", { service: "linquid.customers.v1.CustomersService", method: "GetCustomer" })).toBe(4);
    expect(delta("linquid_mongodb_operation_duration_seconds_count", { collection: "customers", operation: "findOne", outcome: "ok" })).toBeGreaterThanOrEqual(4);
    expect(delta("linquid_redis_command_duration_seconds_count", { command: "ratelimit", outcome: "ok" })).toBeGreaterThanOrEqual(1);
    expect(delta("linquid_snapshot_cache_lookups_total", { route: "/customers/cohorts", result: "miss" })).toBe(1);
    expect(delta("linquid_snapshot_cache_lookups_total", { route: "/customers/cohorts", result: "hit" })).toBe(1);
    expect(delta("linquid_rate_limit_refusals_total", { route: "/customers/{id}" })).toBe(1);
    expect(delta("linquid_events_ingested_total", { type: "click", outcome: "stored" })).toBe(1);
    // Process metrics, and the trace of the last cached request as an exemplar of its bucket.
    expect(after).toMatch(/^process_cpu_user_seconds_total /m);
    expect(after).toMatch(/^nodejs_eventloop_lag_seconds /m);
    const cached = parse(logged).find((l) => l["msg"] === "request" && l["requestId"] === "rid-obs-cached")!;
    expect(after).toContain(`# {trace_id="${cached["traceId"] as string}"}`);
    // Labels are templates and codes: no raw path, id or workspace.
    expect(after).not.toContain(id);
    expect(after).not.toContain(ws.id);
  });

  it("writes no access line at LOG_LEVEL=warn", async () => {
    const ws = await quiet.workspace();
    expect((await quiet.request("GET", "/customers/cus_nope", { key: ws.key })).status).toBe(404);
    expect((await quiet.request("GET", "/customers", { key: ws.key })).status).toBe(200);
    const lines = parse(quietLogged);
    expect(lines.filter((l) => l["level"] === "info" || l["level"] === "debug")).toEqual([]);
    expect(lines.filter((l) => l["msg"] === "request" || l["msg"] === "rpc")).toEqual([]);
    // Its metrics still count.
    expect(sample(await metrics(quiet), "linquid_http_requests_total", { route: "/customers/{id}", method: "GET", status: "404", code: "NOT_FOUND" })).toBeGreaterThanOrEqual(1);
  });
});
