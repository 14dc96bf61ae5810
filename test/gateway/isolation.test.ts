/**
 * End to end: a workspace never reaches, nor learns about, another workspace's customers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

let mesh: TestMesh;
beforeAll(async () => {
  mesh = await startTestMesh();
});
afterAll(async () => {
  await mesh?.stop();
});

describe("workspace isolation", () => {
  it("a key of workspace B gets 404 reading, patching and deleting A's customer, by id and by ext_", async () => {
    const a = await mesh.workspace();
    const b = await mesh.workspace();
    const created = await mesh.request("POST", "/customers", { key: a.key, body: { externalId: "iso-1", email: "iso@example.com", name: "Iso" } });
    expect(created.status).toBe(201);
    const id: string = created.body.data.id;
    const notFound = (r: { status: number; body: any }) => {
      expect(r.status).toBe(404);
      expect(r.body).toMatchObject({ success: false, error: { code: "NOT_FOUND" } });
    };
    const customerRoutes: Array<[string, string, unknown]> = [];
    for (const ref of [id, "ext_iso-1"]) {
      customerRoutes.push(["GET", `/customers/${ref}`, undefined], ["PATCH", `/customers/${ref}`, { name: "Mallory" }], ["DELETE", `/customers/${ref}`, undefined]);
      customerRoutes.push(["GET", `/customers/${ref}/journey`, undefined], ["GET", `/customers/${ref}/journey?summary=true`, undefined], ["GET", `/customers/${ref}/attribution`, undefined], ["POST", `/customers/${ref}/recalculate-ltv`, undefined]);
    }
    const answers: string[] = [];
    for (const [method, path, body] of customerRoutes) {
      const r = await mesh.request(method, path, { key: b.key, ...(body !== undefined ? { body } : {}) });
      notFound(r);
      answers.push(JSON.stringify(r.body.error.code));
    }
    // B's own missing customer answers exactly like A's existing one: nothing to tell them apart.
    const missing = await mesh.request("GET", "/customers/ext_never-existed", { key: b.key });
    expect(missing.body).toEqual((await mesh.request("GET", "/customers/ext_iso-1", { key: b.key })).body);
    // B sees none of A's customers in lists and counts, even when searching.
    expect((await mesh.request("GET", "/customers?search=iso", { key: b.key })).body.data).toEqual([]);
    expect((await mesh.request("GET", "/customers/count?search=iso", { key: b.key })).body.data).toEqual({ count: 0 });
    // A's customer is untouched.
    const still = await mesh.request("GET", `/customers/${id}`, { key: a.key });
    expect(still.status).toBe(200);
    expect(still.body.data).toMatchObject({ id, externalId: "iso-1", email: "iso@example.com", name: "Iso" });
    expect((await mesh.request("GET", "/customers/ext_iso-1", { key: a.key })).body.data.id).toBe(id);
  });

  it("the same externalId in two workspaces is two customers", async () => {
    const a = await mesh.workspace();
    const b = await mesh.workspace();
    const ca = await mesh.request("POST", "/customers", { key: a.key, body: { externalId: "shared" } });
    const cb = await mesh.request("POST", "/customers", { key: b.key, body: { externalId: "shared" } });
    expect([ca.status, cb.status]).toEqual([201, 201]);
    expect(ca.body.data.id).not.toBe(cb.body.data.id);
    expect((await mesh.request("DELETE", "/customers/ext_shared", { key: b.key })).status).toBe(200);
    expect((await mesh.request("GET", "/customers/ext_shared", { key: a.key })).status).toBe(200);
  });

  it("a client cannot pick the workspace: workspaceId in the body is refused, in the query ignored", async () => {
    const a = await mesh.workspace();
    const b = await mesh.workspace();
    const r = await mesh.request("POST", "/customers", { key: b.key, body: { externalId: "x", workspaceId: a.id } });
    expect(r).toMatchObject({ status: 400, body: { error: { code: "VALIDATION_ERROR", details: [{ field: "workspaceId", issue: "unknown field" }] } } });
    await mesh.request("POST", "/customers", { key: a.key, body: { externalId: "only-a" } });
    const listed = await mesh.request("GET", `/customers?workspace_id=${a.id}&workspaceId=${a.id}`, { key: b.key });
    expect(listed.body.data).toEqual([]);
  });
});
