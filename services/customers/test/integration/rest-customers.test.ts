/**
 * The customers routes through the REST gateway (rest-api.md, "Customers"), on a real mesh.
 * Uses the default plugin set once the analytics plugin exists; until then every plugin but it.
 */
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";


describe("customers REST routes", () => {
  let mesh: TestMesh;
  let key: string;
  let otherKey: string;

  beforeAll(async () => {
    // Without the analytics plugin, its address is a closed port: deletes then leave the scrub pending.
    mesh = await startTestMesh();
    key = (await mesh.workspace()).key;
    otherKey = (await mesh.workspace()).key;
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  const req = (method: string, path: string, body?: unknown, k = key) => mesh.request(method, path, { key: k, ...(body !== undefined ? { body } : {}) });

  it("POST creates (201), then updates the same externalId (200)", async () => {
    const first = await req("POST", "/customers", { externalId: "rest-1", email: "r@x.io", country: "gb", metadata: { tier: "a" } });
    expect(first.status).toBe(201);
    expect(first.body.success).toBe(true);
    const c = first.body.data;
    expect(c).toMatchObject({ externalId: "rest-1", email: "r@x.io", country: "GB", metadata: { tier: "a" } });
    expect(c.id).toMatch(/^cus_/);
    expect(new Date(c.createdAt).toISOString()).toBe(c.createdAt);
    expect(c.stats).toMatchObject({ leads: expect.anything(), sales: expect.anything(), revenue: expect.anything() });
    expect(Number(c.stats.leads)).toBe(0);

    const second = await req("POST", "/customers", { externalId: "rest-1", name: "Rita" });
    expect(second.status).toBe(200);
    expect(second.body.data).toMatchObject({ id: c.id, name: "Rita", email: "r@x.io" });

    const byExt = await req("GET", "/customers/ext_rest-1");
    expect(byExt.status).toBe(200);
    expect(byExt.body.data.id).toBe(c.id);
    expect((await req("GET", `/customers/${c.id}`, undefined, otherKey)).status).toBe(404);
  });

  it("50 parallel POSTs of one externalId: one customer, one 201", async () => {
    const res = await Promise.all(Array.from({ length: 50 }, (_, i) => req("POST", "/customers", { externalId: "rest-race", name: `n${i}` })));
    expect(res.filter((r) => r.status === 201)).toHaveLength(1);
    expect(res.filter((r) => r.status === 200)).toHaveLength(49);
    expect(new Set(res.map((r) => r.body.data.id)).size).toBe(1);
    const count = await req("GET", "/customers/count?search=rest-race");
    expect(count.body).toEqual({ success: true, data: { count: 1 } });
  });

  it("lists with the paging envelope, newest first, and rejects out-of-range parameters", async () => {
    const ws = await mesh.workspace();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await req("POST", "/customers", { externalId: `page-${i}` }, ws.key)).body.data.id);
    const p1 = await req("GET", "/customers?limit=2", undefined, ws.key);
    expect(p1.status).toBe(200);
    expect(p1.body.pagination).toEqual({ page: 1, limit: 2, total: 5, totalPages: 3, hasMore: true, nextCursor: expect.any(String) });
    expect(p1.body.data.map((c: { id: string }) => c.id)).toEqual([ids[4], ids[3]]);
    const p3 = await req("GET", "/customers?limit=2&page=3&sortOrder=asc", undefined, ws.key);
    expect(p3.body.data.map((c: { id: string }) => c.id)).toEqual([ids[4]]);
    expect(p3.body.pagination).toMatchObject({ page: 3, hasMore: false, nextCursor: null });

    for (const [query, field] of [
      ["limit=101", "limit"],
      ["limit=0", "limit"],
      ["page=0", "page"],
      ["sortOrder=newest", "sortOrder"],
      [`search=${"s".repeat(256)}`, "search"],
    ] as const) {
      const bad = await req("GET", `/customers?${query}`, undefined, ws.key);
      expect(bad.status, query).toBe(400);
      expect(bad.body.error.code).toBe("VALIDATION_ERROR");
      expect(bad.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
    }
  });

  it("validates bodies with field details", async () => {
    const bad = await req("POST", "/customers", { externalId: "", email: "nope", avatar: "ftp://x", country: "XX", metadata: { deep: { a: 1 } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("VALIDATION_ERROR");
    expect(bad.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(["avatar", "country", "email", "externalId", "metadata.deep"]);
    for (const d of bad.body.error.details) expect(typeof d.issue).toBe("string");
  });

  it("PATCH updates given fields, clears nulls, and answers 409 for a taken externalId", async () => {
    const a = (await req("POST", "/customers", { externalId: "patch-a", email: "a@x.io", name: "A" })).body.data;
    await req("POST", "/customers", { externalId: "patch-b" });
    const ok = await req("PATCH", `/customers/${a.id}`, { name: "A2", email: null });
    expect(ok.status).toBe(200);
    expect(ok.body.data).toMatchObject({ id: a.id, name: "A2", externalId: "patch-a" });
    expect(ok.body.data.email ?? null).toBeNull();
    const dup = await req("PATCH", "/customers/ext_patch-a", { externalId: "patch-b" });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe("DUPLICATE_EXTERNAL_ID");
    const cleared = await req("PATCH", `/customers/${a.id}`, { externalId: null });
    expect(cleared.status).toBe(400);
    expect(cleared.body.error.details).toContainEqual({ field: "externalId", issue: "cannot be cleared" });
  });

  it("DELETE answers {id, deleted}, then 404, and frees the externalId", async () => {
    const c = (await req("POST", "/customers", { externalId: "del-1", email: "d@x.io" })).body.data;
    const del = await req("DELETE", `/customers/ext_del-1`);
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ success: true, data: { id: c.id, deleted: true } });
    expect((await req("GET", `/customers/${c.id}`)).status).toBe(404);
    expect((await req("DELETE", `/customers/${c.id}`)).status).toBe(404);
    expect((await req("GET", "/customers/count?search=del-1")).body.data.count).toBe(0);
    expect((await req("POST", "/customers", { externalId: "del-1" })).status).toBe(201);
  });
});
