/**
 * End to end: Idempotency-Key on POST and PATCH (rest-api.md, "Developer platform"), records kept
 * by the workspaces service in the run's database. Two meshes: every real service (what a replay
 * changes in the customers' and analytics' data), and the gateway with the workspaces service in
 * front of a stand-in upstream that counts every call it receives and fails on demand — without
 * Redis, which idempotency does not need.
 */
import { Code } from "@connectrpc/connect";
import { pluginDatabase, startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../../services/gateway/test/support/fake-upstream.js";

let mesh: TestMesh;
let upstream: FakeUpstream;
let fake: TestMesh;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  [mesh, fake] = await Promise.all([
    startTestMesh(),
    startTestMesh({ MESH_PLUGINS: "workspaces,gateway", CUSTOMERS_ADDR: upstream.url, ANALYTICS_ADDR: upstream.url, REDIS_URL: "none" }),
  ]);
});
afterAll(async () => {
  await Promise.all([mesh?.stop(), fake?.stop()]);
  await upstream?.stop();
});

type Reply = Awaited<ReturnType<TestMesh["request"]>>;
const replayed = (r: Reply) => r.headers.get("idempotent-replayed") === "true";
const count = async (m: TestMesh, key: string) => (await m.request("GET", "/customers/count", { key })).body.data.count as number;
const upstreamCalls = (rpc: string, workspaceId: string) => upstream.calls.filter((c) => c.rpc === rpc && c.workspaceId === workspaceId).length;

describe("Idempotency-Key", () => {
  it("a retry gets the first answer again with Idempotent-Replayed: true, and changes nothing", async () => {
    const ws = await mesh.workspace();
    const post = () => mesh.request("POST", "/customers", { key: ws.key, body: { externalId: "idem-1", email: "ada@example.com" }, headers: { "idempotency-key": "create-idem-1" } });
    const first = await post();
    expect(first.status).toBe(201);
    expect(replayed(first)).toBe(false);
    const again = await post();
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(replayed(again)).toBe(true);
    expect(again.headers.get("content-type")).toBe(first.headers.get("content-type"));
    expect(again.headers.get("x-ratelimit-limit")).toBe("unlimited");
    // Run twice, the create would have answered 200 with a newer updatedAt (an upsert by externalId).
    expect(await count(mesh, ws.key)).toBe(1);
    const stored = await mesh.request("GET", "/customers/ext_idem-1", { key: ws.key });
    expect(stored.body.data.updatedAt).toBe(first.body.data.updatedAt);

    // PATCH: the replay answers what the first PATCH answered, and does not undo a later change.
    const id: string = first.body.data.id;
    const patch = () => mesh.request("PATCH", `/customers/${id}`, { key: ws.key, body: { name: "First" }, headers: { "idempotency-key": "rename-1" } });
    expect((await patch()).body.data.name).toBe("First");
    expect((await mesh.request("PATCH", `/customers/${id}`, { key: ws.key, body: { name: "Second" } })).status).toBe(200);
    const patchAgain = await patch();
    expect(replayed(patchAgain)).toBe(true);
    expect(patchAgain.body.data.name).toBe("First");
    expect((await mesh.request("GET", `/customers/${id}`, { key: ws.key })).body.data.name).toBe("Second");

    // Tracking: run twice, the second click would say duplicate: true; replayed, it repeats the first answer.
    const click = () => mesh.request("POST", "/track/click", { key: ws.key, body: { clickId: "clk-idem-1", linkId: "lnk_1" }, headers: { "idempotency-key": "click-1" } });
    const c1 = await click();
    const c2 = await click();
    expect(c1.body.data.duplicate).toBe(false);
    expect(c2.text).toBe(c1.text);
    expect(replayed(c2)).toBe(true);
  });

  it("the same key with another body, route or customer: 422 IDEMPOTENCY_KEY_REUSED, nothing runs", async () => {
    const ws = await fake.workspace();
    const headers = { "idempotency-key": "reuse-me" };
    expect((await fake.request("POST", "/customers", { key: ws.key, body: { externalId: "r1" }, headers })).status).toBe(201);
    const reuses: Array<[string, string, unknown]> = [
      ["POST", "/customers", { externalId: "r2" }],
      ["POST", "/customers", '{"externalId": "r1"}'], // the same JSON spelled differently is another body
      ["POST", "/track/click", { clickId: "c1", linkId: "l1" }],
      ["PATCH", "/customers/ext_r1", { externalId: "r1" }],
    ];
    for (const [method, path, body] of reuses) {
      const r = await fake.request(method, path, { key: ws.key, body, headers });
      expect(r.status).toBe(422);
      expect(r.body).toMatchObject({ success: false, error: { code: "IDEMPOTENCY_KEY_REUSED" } });
    }
    expect(upstreamCalls("CreateCustomer", ws.id)).toBe(1);
    expect(upstreamCalls("TrackClick", ws.id) + upstreamCalls("UpdateCustomer", ws.id)).toBe(0);
  });

  it("10 identical requests at once, 5 times over: exactly one runs each time; the others get 409 or its answer", async () => {
    const ws = await mesh.workspace();
    for (let round = 0; round < 5; round++) {
      const send = () => mesh.request("POST", "/customers", { key: ws.key, body: { externalId: `race-${round}` }, headers: { "idempotency-key": `race-${round}` } });
      const answers = await Promise.all(Array.from({ length: 10 }, send));
      const ran = answers.filter((r) => r.status === 201 && !replayed(r));
      expect(ran, `round ${round}: ${answers.map((r) => r.status).join(",")}`).toHaveLength(1);
      for (const r of answers) {
        if (r === ran[0]) continue;
        if (r.status === 409) expect(r.body.error.code).toBe("IDEMPOTENCY_IN_PROGRESS");
        else expect({ status: r.status, replayed: replayed(r), text: r.text }).toEqual({ status: 201, replayed: true, text: ran[0]!.text });
      }
      expect(await count(mesh, ws.key)).toBe(round + 1);
    }

    // Counted at the service itself: each round's request reached it once.
    const w = await fake.workspace();
    for (let round = 0; round < 5; round++) {
      const send = () => fake.request("POST", "/track/click", { key: w.key, body: { clickId: `c-${round}`, linkId: "l" }, headers: { "idempotency-key": `click-${round}` } });
      const answers = await Promise.all(Array.from({ length: 10 }, send));
      expect(answers.every((r) => r.status === 200 || r.status === 409)).toBe(true);
      expect(upstreamCalls("TrackClick", w.id)).toBe(round + 1);
    }
  });

  it("a 5xx is not kept: the retry runs, and its answer is the one kept", async () => {
    const ws = await fake.workspace();
    const post = () => fake.request("POST", "/customers", { key: ws.key, body: { externalId: "flaky" }, headers: { "idempotency-key": "flaky-1" } });
    upstream.fail("CreateCustomer", Code.Unavailable);
    try {
      expect((await post()).status).toBe(503);
      upstream.fail("CreateCustomer", Code.Internal);
      expect((await post()).status).toBe(500);
    } finally {
      upstream.fail("CreateCustomer", undefined);
    }
    const ok = await post();
    expect(ok.status).toBe(201);
    expect(replayed(ok)).toBe(false);
    const again = await post();
    expect(replayed(again)).toBe(true);
    expect(again.text).toBe(ok.text);
    expect(upstreamCalls("CreateCustomer", ws.id)).toBe(3);
  });

  it("a 4xx the service answered is kept like any answer below 500", async () => {
    const ws = await fake.workspace();
    const patch = () => fake.request("PATCH", "/customers/ext_nobody", { key: ws.key, body: { email: "x@example.com" }, headers: { "idempotency-key": "patch-missing" } });
    const first = await patch();
    expect(first).toMatchObject({ status: 404, body: { error: { code: "NOT_FOUND" } } });
    const again = await patch();
    expect(again.text).toBe(first.text);
    expect(replayed(again)).toBe(true);
    expect(upstreamCalls("UpdateCustomer", ws.id)).toBe(1);
  });

  it("an expired key is free again, even for another body", async () => {
    const ws = await mesh.workspace();
    const headers = { "idempotency-key": "daily" };
    expect((await mesh.request("POST", "/customers", { key: ws.key, body: { externalId: "day-1" }, headers })).status).toBe(201);
    expect((await mesh.request("POST", "/customers", { key: ws.key, body: { externalId: "day-2" }, headers })).status).toBe(422);
    // 24 hours later, as far as the record can tell.
    const { db, close } = await pluginDatabase(mesh, "workspaces");
    try {
      const moved = await db.collection("idempotency_keys").updateMany({ workspaceId: ws.id }, { $set: { expiresAt: new Date(Date.now() - 1000) } });
      expect(moved.modifiedCount).toBe(1);
    } finally {
      await close();
    }
    const later = await mesh.request("POST", "/customers", { key: ws.key, body: { externalId: "day-2" }, headers });
    expect(later.status).toBe(201);
    expect(replayed(later)).toBe(false);
    expect(await count(mesh, ws.key)).toBe(2);
  });

  it("the same key in two workspaces: two independent requests", async () => {
    const a = await mesh.workspace();
    const b = await mesh.workspace();
    const headers = { "idempotency-key": "shared-key" };
    const ra = await mesh.request("POST", "/customers", { key: a.key, body: { externalId: "same" }, headers });
    const rb = await mesh.request("POST", "/customers", { key: b.key, body: { externalId: "same" }, headers });
    expect([ra.status, replayed(ra), rb.status, replayed(rb)]).toEqual([201, false, 201, false]);
    expect(rb.body.data.id).not.toBe(ra.body.data.id);
    // And another body under it in B is no reuse of A's.
    const other = await mesh.request("POST", "/customers", { key: b.key, body: { externalId: "other" }, headers });
    expect(other.status).toBe(422);
    expect([await count(mesh, a.key), await count(mesh, b.key)]).toEqual([1, 1]);
  });

  it("400 VALIDATION_ERROR naming the header for a malformed key; nothing runs", async () => {
    const ws = await mesh.workspace();
    for (const bad of ["k".repeat(256), "clé", ""]) {
      const r = await mesh.request("POST", "/customers", { key: ws.key, body: { externalId: "bad-key" }, headers: { "idempotency-key": bad } });
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ success: false, error: { code: "VALIDATION_ERROR", details: [{ field: "Idempotency-Key" }] } });
    }
    expect(await count(mesh, ws.key)).toBe(0);
    // 255 printable characters are a key.
    const ok = await mesh.request("POST", "/customers", { key: ws.key, body: { externalId: "good-key" }, headers: { "idempotency-key": `a b~${"x".repeat(251)}` } });
    expect(ok.status).toBe(201);
  });
});
