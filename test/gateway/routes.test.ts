/**
 * End to end: every route of the contract behind its scope and the plan gate, the transport
 * basics (404, 405, 413, X-Request-Id, /healthz), and revocation.
 */
import { WorkspacesService } from "@linquid/contracts";
import { ALL_SCOPES } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SAMPLE_REQUESTS } from "../../services/gateway/test/support/sample-requests.js";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

let mesh: TestMesh;
beforeAll(async () => {
  mesh = await startTestMesh({ AUTH_CACHE_TTL_MS: "300" });
});
afterAll(async () => {
  await mesh?.stop();
});

const opts = (key: string, body: unknown) => ({ key, ...(body !== undefined ? { body } : {}) });

describe("REST routes end to end", () => {
  it("covers every route of rest-api.md", () => {
    expect(SAMPLE_REQUESTS.map((s) => `${s.method} ${s.path}`).sort()).toEqual(
      [
        "GET /customers",
        "GET /customers/count",
        "GET /customers/export",
        "GET /customers/ext_m1",
        "POST /customers",
        "PATCH /customers/ext_m1",
        "DELETE /customers/ext_m1",
        "GET /customers/cohorts",
        "GET /customers/ltv-cohorts",
        "POST /customers/ext_m1/recalculate-ltv",
        "GET /customers/ext_m1/journey",
        "GET /customers/ext_m1/journey?summary=true",
        "GET /customers/ext_m1/attribution",
        "POST /track/click",
        "POST /track/lead",
        "POST /track/sale",
        "POST /track/event",
        "POST /track/batch",
        "GET /analytics/attribution?model=linear&group_by=link",
      ].sort(),
    );
  });

  it("route × scope: without the route's scope 403 FORBIDDEN, with it neither 401 nor 403", async () => {
    const ws = mesh.host.client(WorkspacesService);
    const { id } = await mesh.workspace({ plan: "pro" });
    const all = (await ws.createApiKey({ workspaceId: id, scopes: ALL_SCOPES })).key;
    // A customer for the :id routes, made through the API.
    expect((await mesh.request("POST", "/customers", { key: all, body: { externalId: "m1" } })).status).toBe(201);
    const scopes = [...new Set(SAMPLE_REQUESTS.map((s) => s.scope))];
    const lacking = new Map<string, string>();
    for (const scope of scopes) lacking.set(scope, (await ws.createApiKey({ workspaceId: id, scopes: ALL_SCOPES.filter((x) => x !== scope) })).key);
    // DELETE last, so the customer exists for the others.
    const ordered = [...SAMPLE_REQUESTS].sort((a, b) => Number(a.method === "DELETE") - Number(b.method === "DELETE"));
    for (const s of ordered) {
      const denied = await mesh.request(s.method, s.path, opts(lacking.get(s.scope)!, s.body));
      expect(denied.status, `${s.method} ${s.path} without ${s.scope}: ${denied.text}`).toBe(403);
      expect(denied.body.error.code).toBe("FORBIDDEN");
      const allowed = await mesh.request(s.method, s.path, opts(all, s.body));
      expect([401, 403], `${s.method} ${s.path} with ${s.scope}: ${allowed.text}`).not.toContain(allowed.status);
      expect(allowed.status, `${s.method} ${s.path}: ${allowed.text}`).toBeLessThan(500);
      // A streamed answer has no envelope: its records, one per line.
      if (s.streaming) expect(allowed.status, `${s.method} ${s.path}: ${allowed.text}`).toBe(200);
      else expect(allowed.body.success, `${s.method} ${s.path}: ${allowed.text}`).toBe(true);
    }
  });

  it("links:write grants create, update and delete", async () => {
    const { key } = await mesh.workspace({ scopes: ["links:write"] });
    expect((await mesh.request("POST", "/customers", { key, body: { externalId: "w1" } })).status).toBe(201);
    expect((await mesh.request("PATCH", "/customers/ext_w1", { key, body: { name: "W" } })).status).toBe(200);
    expect((await mesh.request("DELETE", "/customers/ext_w1", { key })).body).toMatchObject({ success: true, data: { deleted: true } });
    expect((await mesh.request("GET", "/customers", { key })).status).toBe(403);
  });

  it("plan gate: a starter workspace gets 403 FEATURE_NOT_AVAILABLE on every route", async () => {
    const { key } = await mesh.workspace({ plan: "starter", rateLimit: "unlimited" });
    for (const s of SAMPLE_REQUESTS) {
      const r = await mesh.request(s.method, s.path, opts(key, s.body));
      expect(r.status, `${s.method} ${s.path}`).toBe(403);
      expect(r.body).toMatchObject({ success: false, error: { code: "FEATURE_NOT_AVAILABLE" } });
    }
  });

  it("answers the transport basics: X-Request-Id, 404, 405, 413, /healthz", async () => {
    const { key } = await mesh.workspace();
    const health = await fetch(`${mesh.host.gatewayUrl}/healthz`);
    expect([health.status, await health.json()]).toEqual([200, { status: "ok" }]);
    const echoed = await mesh.request("GET", "/customers/count", { key, headers: { "x-request-id": "e2e-req-1" } });
    expect(echoed.status).toBe(200);
    expect(echoed.headers.get("x-request-id")).toBe("e2e-req-1");
    const generated = await mesh.request("GET", "/customers/count", { key });
    expect(generated.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const unknown = await mesh.request("GET", "/links", { key });
    expect(unknown).toMatchObject({ status: 404, body: { success: false, error: { code: "NOT_FOUND" } } });
    expect(unknown.headers.get("x-request-id")).toBeTruthy();
    const wrong = await mesh.request("DELETE", "/customers", { key });
    expect(wrong).toMatchObject({ status: 405, body: { error: { code: "METHOD_NOT_ALLOWED" } } });
    expect(wrong.headers.get("allow")).toBe("GET, POST");
    const big = await mesh.request("POST", "/customers", { key, body: JSON.stringify({ externalId: "big", name: "n".repeat(1024 * 1024 + 10) }) });
    expect(big).toMatchObject({ status: 413, body: { success: false, error: { code: "PAYLOAD_TOO_LARGE" } } });
    expect(big.headers.get("x-request-id")).toBeTruthy();
  });

  it("a revoked key stops working within AUTH_CACHE_TTL_MS", async () => {
    const { key, keyId } = await mesh.workspace();
    expect((await mesh.request("GET", "/customers", { key })).status).toBe(200);
    await mesh.host.client(WorkspacesService).revokeApiKey({ id: keyId });
    const t0 = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - t0 < 2000) {
      status = (await mesh.request("GET", "/customers", { key })).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 25));
    }
    expect(status).toBe(401);
    expect(Date.now() - t0).toBeLessThan(300 + 250);
    expect((await mesh.request("GET", "/customers", { key })).body.error.code).toBe("INVALID_API_KEY");
  });
});
