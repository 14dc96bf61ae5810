/**
 * The gateway in a real mesh (workspaces plugin, Redis, FerretDB) in front of a stand-in for
 * the customers and analytics services reached over gRPC.
 */
import { connect } from "node:net";
import { Code } from "@connectrpc/connect";
import { WorkspacesService } from "@linquid/contracts";
import { ALL_SCOPES, startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { startTelemetry, type Telemetry } from "@linquid/mesh";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SAMPLE_REQUESTS } from "../support/sample-requests.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.js";

let upstream: FakeUpstream;
let mesh: TestMesh;
const spans = new InMemorySpanExporter();
let telemetry: Telemetry;
beforeAll(async () => {
  telemetry = startTelemetry({ serviceName: "gateway-test", exporter: spans });
  upstream = await startFakeUpstream();
  mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,gateway", CUSTOMERS_ADDR: upstream.url, ANALYTICS_ADDR: upstream.url, AUTH_CACHE_TTL_MS: "300" });
});
afterAll(async () => {
  await mesh?.stop();
  await upstream?.stop();
  await telemetry?.shutdown();
});

async function keyWith(workspaceId: string, scopes: string[]): Promise<{ key: string; keyId: string }> {
  const k = await mesh.host.client(WorkspacesService).createApiKey({ workspaceId, scopes });
  return { key: k.key, keyId: k.apiKey!.id };
}

describe("gateway through the mesh", () => {
  it("answers /healthz, 404, 405 and echoes X-Request-Id", async () => {
    const { key } = await mesh.workspace();
    const health = await fetch(`${mesh.host.gatewayUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });

    const unknown = await mesh.request("GET", "/nope", { key, headers: { "x-request-id": "trace-me-123" } });
    expect(unknown).toMatchObject({ status: 404, body: { success: false, error: { code: "NOT_FOUND" } } });
    expect(unknown.headers.get("x-request-id")).toBe("trace-me-123");
    const outside = await fetch(`${mesh.host.gatewayUrl}/customers`);
    expect(outside.status).toBe(404);
    expect(outside.headers.get("x-request-id")).toBeTruthy();

    const wrong = await mesh.request("PUT", "/customers", { key });
    expect(wrong).toMatchObject({ status: 405, body: { error: { code: "METHOD_NOT_ALLOWED" } } });
    expect(wrong.headers.get("allow")).toBe("GET, POST");
  });

  it("answers 413 to a body over 1 MiB", async () => {
    const { key } = await mesh.workspace();
    const r = await mesh.request("POST", "/customers", { key, body: JSON.stringify({ externalId: "x", metadata: { pad: "p".repeat(1024 * 1024) } }) });
    expect(r).toMatchObject({ status: 413, body: { success: false, error: { code: "PAYLOAD_TOO_LARGE" } } });
    expect(r.headers.get("x-request-id")).toBeTruthy();
  });

  it("answers 400 to conflicting credentials: two different Bearer keys, or X-API-Key with another Bearer key", async () => {
    const a = await mesh.workspace();
    const b = await mesh.workspace();
    const port = Number(new URL(mesh.host.gatewayUrl!).port);
    // Two Authorization lines: only a raw socket sends them apart (fetch joins them with a comma).
    const rawGet = (lines: string[]) =>
      new Promise<string>((resolve) => {
        const sock = connect(port, "127.0.0.1", () => sock.write(`GET ${mesh.config.apiBasePath}/customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${lines.join("\r\n")}\r\n\r\n`));
        let out = "";
        sock.on("data", (d: Buffer) => (out += d.toString()));
        sock.on("close", () => resolve(out));
      });
    const two = await rawGet([`Authorization: Bearer ${a.key}`, `Authorization: Bearer ${b.key}`]);
    expect(two).toMatch(/^HTTP\/1\.1 400 /);
    expect(two).toContain('"code":"VALIDATION_ERROR"');
    expect(two).toContain("conflicting API keys");
    // The same key twice is one key.
    expect(await rawGet([`Authorization: Bearer ${a.key}`, `Authorization: Bearer ${a.key}`])).toMatch(/^HTTP\/1\.1 200 /);
    // Joined by a client, and X-API-Key against Bearer.
    expect((await mesh.request("GET", "/customers", { headers: { authorization: `Bearer ${a.key}, Bearer ${b.key}` } })).status).toBe(400);
    const mixed = await mesh.request("GET", "/customers", { key: a.key, headers: { authorization: `Bearer ${b.key}` } });
    expect(mixed).toMatchObject({ status: 400, body: { success: false, error: { code: "VALIDATION_ERROR" } } });
    expect((await mesh.request("GET", "/customers", { key: a.key, headers: { authorization: `Bearer ${a.key}` } })).status).toBe(200);
  });

  it("enforces every route's scope (route × scope matrix) and links:write", async () => {
    const { id } = await mesh.workspace({ plan: "pro" });
    const all = await keyWith(id, ALL_SCOPES);
    for (const s of SAMPLE_REQUESTS) {
      const without = await keyWith(
        id,
        ALL_SCOPES.filter((x) => x !== s.scope),
      );
      const denied = await mesh.request(s.method, s.path, { key: without.key, ...(s.body ? { body: s.body } : {}) });
      expect(denied.status, `${s.method} ${s.path} without ${s.scope}`).toBe(403);
      expect(denied.body.error.code).toBe("FORBIDDEN");
      const allowed = await mesh.request(s.method, s.path, { key: all.key, ...(s.body ? { body: s.body } : {}) });
      expect([401, 403], `${s.method} ${s.path} with ${s.scope}: ${allowed.text}`).not.toContain(allowed.status);
      expect(allowed.status, allowed.text).toBeLessThan(500);
    }
    const writer = await keyWith(id, ["links:write"]);
    for (const s of SAMPLE_REQUESTS.filter((x) => ["links:create", "links:update", "links:delete"].includes(x.scope))) {
      const r = await mesh.request(s.method, s.path, { key: writer.key, ...(s.body ? { body: s.body } : {}) });
      expect([401, 403], `${s.method} ${s.path} with links:write`).not.toContain(r.status);
    }
    expect((await mesh.request("GET", "/customers", { key: writer.key })).status).toBe(403);
  });

  it("gates every route on the plan: starter → 403 FEATURE_NOT_AVAILABLE", async () => {
    const { key } = await mesh.workspace({ plan: "starter", rateLimit: "unlimited" });
    for (const s of SAMPLE_REQUESTS) {
      const r = await mesh.request(s.method, s.path, { key, ...(s.body ? { body: s.body } : {}) });
      expect(r.status, `${s.method} ${s.path}`).toBe(403);
      expect(r.body.error.code).toBe("FEATURE_NOT_AVAILABLE");
    }
  });

  it("sends the principal's workspace, the request id and the trace upstream — never the key", async () => {
    const { id, key } = await mesh.workspace();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const before = upstream.calls.length;
    const r = await mesh.request("GET", "/customers?workspace_id=ws_other", {
      key,
      headers: { "x-request-id": "rid-upstream", traceparent: `00-${traceId}-00f067aa0ba902b7-01`, cookie: "session=1", authorization: `Bearer ${key}` },
    });
    expect(r.status).toBe(200);
    const call = upstream.calls.slice(before).find((c) => c.rpc === "ListCustomers")!;
    expect(call.workspaceId).toBe(id);
    expect(call.headers["x-request-id"]).toBe("rid-upstream");
    // The trace continues: same trace id, a new parent (the gateway's spans).
    expect(call.headers["traceparent"]).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(call.headers["traceparent"]).not.toContain("00f067aa0ba902b7");
    const server = spans.getFinishedSpans().find((sp) => sp.kind === SpanKind.SERVER && sp.name === "GET /customers" && sp.spanContext().traceId === traceId);
    expect(server?.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    const all = JSON.stringify(call.headers);
    expect(all).not.toContain(key);
    expect(all).not.toContain(key.slice(8));
    expect(Object.keys(call.headers)).not.toContain("x-api-key");
    expect(Object.keys(call.headers)).not.toContain("cookie");
    expect(Object.keys(call.headers)).not.toContain("authorization");
  });

  it("answers the contract's shapes: 201 on create, lists with pagination, DELETE → {id, deleted}", async () => {
    const { key } = await mesh.workspace();
    const created = await mesh.request("POST", "/customers", { key, body: { externalId: "shape-1", email: "s@example.com" } });
    expect(created.status).toBe(201);
    expect(created.body.data).toMatchObject({ externalId: "shape-1", email: "s@example.com", name: null, metadata: null, stats: { leads: 0, revenue: 0 } });
    expect(created.body.data.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    expect((await mesh.request("POST", "/customers", { key, body: { externalId: "shape-1" } })).status).toBe(200);
    const list = await mesh.request("GET", "/customers?limit=10", { key });
    expect(list.body).toMatchObject({ success: true, data: [{ externalId: "shape-1" }], pagination: { page: 1, limit: 10, total: 1, totalPages: 1, hasMore: false } });
    const patched = await mesh.request("PATCH", "/customers/ext_shape-1", { key, body: { email: null } });
    expect(patched.body.data.email).toBeNull();
    const del = await mesh.request("DELETE", `/customers/${created.body.data.id}`, { key });
    expect(del.body).toEqual({ success: true, data: { id: created.body.data.id, deleted: true } });
    expect((await mesh.request("GET", "/customers/ext_shape-1", { key })).status).toBe(404);
  });

  it("caches heavy reads per workspace and reads its own writes", async () => {
    const { key } = await mesh.workspace();
    const count = () => upstream.calls.filter((c) => c.rpc === "GetCohorts").length;
    const c0 = count();
    const a = await mesh.request("GET", "/customers/cohorts?group_by=week", { key });
    expect(a.headers.get("x-cache")).toBe("MISS");
    expect(a.body.data).toEqual([{ cohort: "2026-W14", customers: 2, leads: 2, sales: 1, revenue: 1999, conversionRate: 0.5 }]);
    const b = await mesh.request("GET", "/customers/cohorts?group_by=week", { key });
    expect(b.headers.get("x-cache")).toBe("HIT");
    expect(b.body).toEqual(a.body);
    expect(count()).toBe(c0 + 1);
    expect((await mesh.request("POST", "/track/click", { key, body: { clickId: "c9", linkId: "l9" } })).status).toBe(200);
    const c = await mesh.request("GET", "/customers/cohorts?group_by=week", { key });
    expect(c.headers.get("x-cache")).toBe("MISS");
    expect(count()).toBe(c0 + 2);
    expect((await mesh.request("GET", "/customers/count", { key })).headers.get("x-cache")).toBeNull();
  });

  it("maps service failures without leaking them", async () => {
    const { key } = await mesh.workspace();
    upstream.fail("GetAttribution", Code.Internal);
    upstream.fail("CountCustomers", Code.Unavailable);
    try {
      const a = await mesh.request("GET", "/customers/cus_1/attribution", { key });
      expect(a).toMatchObject({ status: 500, body: { success: false, error: { code: "ANALYTICS_ERROR" } } });
      const b = await mesh.request("GET", "/customers/count", { key });
      expect(b).toMatchObject({ status: 503, body: { error: { code: "SERVICE_UNAVAILABLE" } } });
      for (const r of [a, b]) expect(r.text).not.toContain("mongo-internal.example");
      const v = await mesh.request("GET", "/customers/cohorts?group_by=year", { key });
      expect(v.body).toEqual({ success: false, error: { code: "VALIDATION_ERROR", message: "group_by: must be week, month, campaign or source", details: [{ field: "group_by", issue: "must be week, month, campaign or source" }] } });
    } finally {
      upstream.fail("GetAttribution", undefined);
      upstream.fail("CountCustomers", undefined);
    }
  });

  it("limits a workspace to its hourly budget: the 6th of 5 gets 429 with Retry-After", async () => {
    const { key } = await mesh.workspace({ rateLimit: 5 });
    const remaining: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await mesh.request("GET", "/customers/count", { key });
      expect(r.status).toBe(200);
      expect(r.headers.get("x-ratelimit-limit")).toBe("5");
      expect(Number(r.headers.get("x-ratelimit-reset"))).toBeGreaterThan(Date.now() / 1000);
      remaining.push(Number(r.headers.get("x-ratelimit-remaining")));
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);
    const limited = await mesh.request("GET", "/customers/count", { key });
    expect(limited).toMatchObject({ status: 429, body: { success: false, error: { code: "RATE_LIMITED" } } });
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(limited.headers.get("x-ratelimit-remaining")).toBe("0");
    // Errors after auth carry the budget too.
    expect((await mesh.request("GET", "/nope/x", { key })).headers.get("x-ratelimit-limit")).toBeNull();
    const forbidden = await mesh.request("GET", "/customers/ltv-cohorts", { key: (await keyWith((await mesh.workspace({ rateLimit: 7 })).id, ["links:read"])).key });
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get("x-ratelimit-limit")).toBe("7");
  });

  it("stops accepting a revoked key within AUTH_CACHE_TTL_MS", async () => {
    const { key, keyId } = await mesh.workspace();
    expect((await mesh.request("GET", "/customers/count", { key })).status).toBe(200);
    await mesh.host.client(WorkspacesService).revokeApiKey({ id: keyId });
    await new Promise((r) => setTimeout(r, 350));
    const r = await mesh.request("GET", "/customers/count", { key });
    expect(r).toMatchObject({ status: 401, body: { error: { code: "INVALID_API_KEY" } } });
  });

  it.each([
    [{}, 401, "UNAUTHORIZED"],
    [{ "x-api-key": "lw_live_nope" }, 401, "INVALID_API_KEY"],
    [{ "x-api-key": "lw_live_" + "Z".repeat(43) }, 401, "INVALID_API_KEY"],
    [{ authorization: "Basic dXNlcjpwYXNz" }, 401, "UNAUTHORIZED"],
  ])("refuses %j with %i %s", async (headers, status, code) => {
    const r = await mesh.request("GET", "/customers", { headers });
    expect(r).toMatchObject({ status, body: { success: false, error: { code } } });
  });
});

describe("streamed answers (a server-streaming RPC over gRPC)", () => {
  const reset = () => Object.assign(upstream.exports, { batches: 1, failAfter: undefined, produced: 0, finished: 0 });

  it("writes each message's records as NDJSON or CSV, one request against the budget", async () => {
    reset();
    const { key } = await mesh.workspace({ rateLimit: 20 });
    await mesh.request("POST", "/customers", { key, body: { externalId: "s1", email: "s1@example.com" } });
    await mesh.request("POST", "/customers", { key, body: { externalId: "=s2" } });
    upstream.exports.batches = 3;
    const nd = await mesh.request("GET", "/customers/export", { key });
    expect(nd.status).toBe(200);
    expect(nd.headers.get("content-type")).toBe("application/x-ndjson");
    expect(nd.headers.get("x-request-id")).toBeTruthy();
    const lines = nd.text.trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((c) => c.externalId)).toEqual(["s1", "=s2", "s1", "=s2", "s1", "=s2"]);
    expect(lines[0]).toMatchObject({ email: "s1@example.com", avatar: null, metadata: null, stats: { leads: 0, currency: null } });
    const csv = await mesh.request("GET", "/customers/export?format=csv", { key });
    expect(csv.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    const rows = csv.text.split("\r\n");
    expect(rows[0]!.split(",").slice(0, 3)).toEqual(["id", "externalId", "email"]);
    expect(rows[2]!.split(",")[1]).toBe("'=s2");
    expect(rows).toHaveLength(1 + 6 + 1);
    expect(Number(csv.headers.get("x-ratelimit-remaining"))).toBe(Number(nd.headers.get("x-ratelimit-remaining")) - 1);
  });

  it("answers an error before the first message in the envelope, and cuts the body on one after it", async () => {
    reset();
    const { key } = await mesh.workspace();
    await mesh.request("POST", "/customers", { key, body: { externalId: "e1" } });
    const bad = await mesh.request("GET", "/customers/export?format=pdf", { key });
    expect(bad).toMatchObject({ status: 400, body: { success: false, error: { code: "VALIDATION_ERROR", details: [{ field: "format" }] } } });
    upstream.fail("ExportCustomers", Code.Unavailable);
    const down = await mesh.request("GET", "/customers/export", { key });
    expect(down).toMatchObject({ status: 503, body: { error: { code: "SERVICE_UNAVAILABLE" } } });
    expect(down.text).not.toContain("mongo-internal");
    upstream.fail("ExportCustomers", undefined);

    upstream.exports.batches = 5;
    upstream.exports.failAfter = 2;
    const res = await fetch(`${mesh.api}/customers/export`, { headers: { "x-api-key": key } });
    expect(res.status).toBe(200);
    // The body ends without its final chunk: a client cannot take it for a complete export.
    await expect(res.text()).rejects.toThrow();
  });

  it("asks for the next message only as the client reads, and cancels the call when the client goes away", async () => {
    reset();
    const { key } = await mesh.workspace();
    await mesh.request("POST", "/customers", { key, body: { externalId: "big", email: "big@example.com" } });
    upstream.exports.batches = 10_000_000;
    const controller = new AbortController();
    const res = await fetch(`${mesh.api}/customers/export`, { headers: { "x-api-key": key }, signal: controller.signal });
    const reader = res.body!.getReader();
    const first = await reader.read();
    const lineBytes = new TextDecoder().decode(first.value).indexOf("\n") + 1;
    // Not read any further: the producer stops once the buffers between it and the client are full.
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    let produced = -1;
    for (let i = 0; i < 20 && upstream.exports.produced !== produced; i++) {
      produced = upstream.exports.produced;
      await sleep(500);
    }
    expect(upstream.exports.produced).toBe(produced);
    // Socket and HTTP/2 buffers: a few MB, whatever the size of the export.
    expect(produced * lineBytes).toBeLessThan(32 * 1024 * 1024);
    controller.abort();
    const until = Date.now() + 5000;
    while (upstream.exports.finished === 0 && Date.now() < until) await sleep(20);
    expect(upstream.exports.finished).toBe(1);
  });
});

describe("gateway with Redis unreachable", () => {
  let down: TestMesh;
  beforeAll(async () => {
    down = await startTestMesh({ MESH_PLUGINS: "workspaces,gateway", CUSTOMERS_ADDR: upstream.url, ANALYTICS_ADDR: upstream.url, REDIS_URL: "redis://127.0.0.1:1" });
  });
  afterAll(async () => {
    await down?.stop();
  });

  it("still answers, uncached, and still limits per process", async () => {
    const { key } = await down.workspace({ rateLimit: 3 });
    for (let i = 0; i < 3; i++) {
      const r = await down.request("GET", "/customers/cohorts", { key });
      expect(r.status).toBe(200);
      expect(r.headers.get("x-cache")).toBe("MISS");
      expect(r.headers.get("x-ratelimit-remaining")).toBe(String(2 - i));
    }
    expect((await down.request("GET", "/customers/cohorts", { key })).status).toBe(429);
    const { key: other } = await down.workspace({ rateLimit: 3 });
    expect((await down.request("POST", "/track/click", { key: other, body: { clickId: "c", linkId: "l" } })).status).toBe(200);
  });
});
