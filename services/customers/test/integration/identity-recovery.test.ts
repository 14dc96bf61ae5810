/**
 * The identity protocol (identity-keys.ts) under crashes and races, on the real database: stale
 * keys left by a crash are taken over, in-flight writes are fenced off, and concurrent creates
 * and renames never leave two live customers with one externalId.
 */
import { Code } from "@connectrpc/connect";
import { newId, seededRandom } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newCustomerDoc, type CustomerDoc } from "../../src/customer-doc.js";
import { MongoCustomersRepository } from "../../src/customers-repository.js";
import { customersDb } from "./helpers.js";


describe("identity keys", () => {
  let mesh: TestMesh;
  let db: Db;
  let closeDb: () => Promise<void>;
  let repo: MongoCustomersRepository;
  const GRACE = 300;

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers" });
    ({ db, close: closeDb } = await customersDb(mesh));
    repo = new MongoCustomersRepository(db, { keyGraceMs: GRACE });
  });
  afterAll(async () => {
    await closeDb?.();
    await mesh?.stop();
  });

  const old = () => new Date(Date.now() - 60_000);

  async function assertConsistent(ws: string): Promise<void> {
    const live = await repo.customers.find({ workspaceId: ws, deletedAt: null }).toArray();
    const exts = live.map((d) => d.externalId);
    expect(new Set(exts).size, `duplicate externalIds: ${exts.join(",")}`).toBe(exts.length);
    for (const d of live) {
      const key = await repo.keys.findOne({ _id: `${ws}:${d.externalId}` });
      expect(key?.customerId, `key of ${d.externalId}`).toBe(d._id);
    }
  }

  it("takes over a key whose customer was never inserted (crash after the key write)", async () => {
    const ws = newId("ws");
    await repo.keys.insertOne({ _id: `${ws}:crashed`, customerId: "cus_neverinserted", token: "t0", at: old() });
    expect(await repo.findLiveByExternalId(ws, "crashed")).toBeNull();
    const { doc, created } = await repo.upsertByExternalId(ws, "crashed", { name: "N" }, "overwrite");
    expect(created).toBe(true);
    expect(doc._id).not.toBe("cus_neverinserted");
    // the crashed writer's id is fenced off: it can never be inserted live any more
    const tomb = await repo.customers.findOne({ _id: "cus_neverinserted" });
    expect(tomb).toMatchObject({ tombstone: true, externalId: null });
    expect(tomb?.deletedAt).toBeInstanceOf(Date);
    await assertConsistent(ws);
  });

  it("takes over a key whose customer is deleted or now has another externalId", async () => {
    const ws = newId("ws");
    const gone: CustomerDoc = { ...newCustomerDoc(newId("cus"), ws, "x", {}, old()), externalId: null, deletedAt: old() };
    const moved = newCustomerDoc(newId("cus"), ws, "moved-on", {}, old());
    await repo.customers.insertMany([gone, moved]);
    await repo.keys.insertMany([
      { _id: `${ws}:was-deleted`, customerId: gone._id, token: "a", at: new Date() }, // young, but deleted is final
      { _id: `${ws}:was-renamed`, customerId: moved._id, token: "b", at: old() },
      { _id: `${ws}:moved-on`, customerId: moved._id, token: "c", at: old() },
    ]);
    expect((await repo.upsertByExternalId(ws, "was-deleted", {}, "overwrite")).created).toBe(true);
    expect((await repo.upsertByExternalId(ws, "was-renamed", {}, "overwrite")).created).toBe(true);
    // the fence bumped the old holder's revision, so a late rename of it back fails its condition
    expect((await repo.customers.findOne({ _id: moved._id }))?.rev).toBe(1);
    await assertConsistent(ws);
  });

  it("waits for a create in flight instead of fencing it", async () => {
    const ws = newId("ws");
    const id = newId("cus");
    await repo.keys.insertOne({ _id: `${ws}:inflight`, customerId: id, token: "t", at: new Date() });
    const pending = repo.upsertByExternalId(ws, "inflight", { name: "second" }, "overwrite");
    await new Promise((r) => setTimeout(r, 50));
    await repo.customers.insertOne(newCustomerDoc(id, ws, "inflight", { name: "first" }, new Date()));
    const res = await pending;
    expect(res).toMatchObject({ created: false, doc: { _id: id, name: "second" } });
    expect(await repo.customers.countDocuments({ tombstone: true, workspaceId: ws })).toBe(0);
  });

  it("fences off a create that lands after the grace period", async () => {
    const ws = newId("ws");
    const lateId = newId("cus");
    await repo.keys.insertOne({ _id: `${ws}:late`, customerId: lateId, token: "t", at: new Date() });
    const winner = await repo.upsertByExternalId(ws, "late", {}, "overwrite");
    expect(winner.created).toBe(true);
    const lateInsert = await rpcErrorOf(() => repo.customers.insertOne(newCustomerDoc(lateId, ws, "late", {}, new Date())));
    expect(lateInsert).toBe(11000);
    await assertConsistent(ws);
  });

  it("frees a stale key's externalId for a rename too", async () => {
    const ws = newId("ws");
    await repo.keys.insertOne({ _id: `${ws}:target`, customerId: "cus_ghost", token: "t", at: old() });
    const { doc } = await repo.upsertByExternalId(ws, "source", {}, "overwrite");
    const renamed = await repo.update(ws, doc._id, { externalId: "target" });
    expect(renamed?.externalId).toBe("target");
    expect(await repo.keys.findOne({ _id: `${ws}:source` })).toBeNull();
    await assertConsistent(ws);
  });

  it("never ends concurrent creates, renames and deletes with two live customers sharing an externalId", async () => {
    // The operations are drawn from a seeded generator, printed so a failing mix can be sent
    // again (IDENTITY_RACE_SEED=<seed>); how they interleave is up to the database's timing.
    const seed = Number(process.env["IDENTITY_RACE_SEED"] ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`identity race seed: ${seed} (replay the operations with IDENTITY_RACE_SEED=${seed})`);
    const random = seededRandom(seed);
    // grace 0 fences and poisons writes in flight at once: the most hostile interleavings
    const eager = new MongoCustomersRepository(db, { keyGraceMs: 0 });
    for (let round = 0; round < 8; round++) {
      const ws = newId("ws");
      const names = ["e0", "e1", "e2", "e3"];
      const created = await Promise.all(names.map((n) => repo.upsertByExternalId(ws, n, {}, "overwrite")));
      const ids = created.map((s) => s.doc._id);
      const ops: Array<Promise<unknown>> = [];
      for (let i = 0; i < 40; i++) {
        const r = round % 2 === 0 ? repo : random() < 0.5 ? repo : eager;
        const target = names[Math.floor(random() * names.length)]!;
        const who = ids[Math.floor(random() * ids.length)]!;
        const dice = random();
        const op =
          dice < 0.4
            ? r.upsertByExternalId(ws, target, { name: `n${i}` }, "overwrite").then((res) => ids.push(res.doc._id))
            : dice < 0.88
              ? r.update(ws, who, { externalId: target })
              : r.softDelete(ws, who);
        ops.push(op.catch((err) => expect(err.code, `seed ${seed}, round ${round}, op ${i}`).toBe(Code.AlreadyExists)));
      }
      await Promise.all(ops);
      await assertConsistent(ws).catch((err: Error) => {
        err.message = `seed ${seed}, round ${round}: ${err.message}`;
        throw err;
      });
    }
  });

  it("bulk stitch: answers held keys from one read, claims absent ones in bulk, and sends the rest one by one", async () => {
    const ws = newId("ws");
    const held = (await repo.upsertByExternalId(ws, "held", { email: "h@x.io" }, "overwrite")).doc;
    const toFill = (await repo.upsertByExternalId(ws, "to-fill", {}, "overwrite")).doc;
    // a stale key left by a crash, and a young one of a create in flight
    await repo.keys.insertOne({ _id: `${ws}:stale`, customerId: "cus_crashedbulk", token: "s", at: old() });
    const inflight = newId("cus");
    await repo.keys.insertOne({ _id: `${ws}:inflight-bulk`, customerId: inflight, token: "i", at: new Date() });
    const landing = new Promise((r) => setTimeout(r, 50)).then(() => repo.customers.insertOne(newCustomerDoc(inflight, ws, "inflight-bulk", {}, new Date())));
    const out = await repo.stitchMany(ws, [
      { externalId: "held", patch: { email: "other@x.io" } },
      { externalId: "to-fill", patch: { name: "Filled" } },
      { externalId: "new-1", patch: { email: "n1@x.io" } },
      { externalId: "stale", patch: {} },
      { externalId: "inflight-bulk", patch: {} },
      { externalId: "new-2", patch: {} },
    ]);
    await landing;
    expect(out.map((o) => o.created)).toEqual([false, false, true, true, false, true]);
    expect(out[0]!.doc).toMatchObject({ _id: held._id, email: "h@x.io" }); // fill never overwrites
    expect(out[1]!.doc).toMatchObject({ _id: toFill._id, name: "Filled" });
    expect(out[2]!.doc).toMatchObject({ externalId: "new-1", email: "n1@x.io" });
    expect(out[4]!.doc._id).toBe(inflight);
    expect(await repo.customers.findOne({ _id: "cus_crashedbulk" })).toMatchObject({ tombstone: true });
    await assertConsistent(ws);
  });

  it("bulk stitches racing single stitches of the same external ids end in one customer each", async () => {
    const ws = newId("ws");
    const names = Array.from({ length: 30 }, (_, i) => `r${i}`);
    const results = await Promise.all([
      repo.stitchMany(ws, names.map((externalId) => ({ externalId, patch: {} }))),
      repo.stitchMany(ws, [...names].reverse().map((externalId) => ({ externalId, patch: { name: "B" } }))),
      ...names.map((externalId) => repo.upsertByExternalId(ws, externalId, {}, "fill").then((r) => [r])),
    ]);
    const byName = new Map<string, Set<string>>();
    let created = 0;
    for (const list of results) {
      for (const r of list) {
        byName.set(r.doc.externalId!, (byName.get(r.doc.externalId!) ?? new Set()).add(r.doc._id));
        if (r.created) created++;
      }
    }
    for (const n of names) expect(byName.get(n)?.size, n).toBe(1);
    expect(created).toBe(names.length);
    expect(await repo.customers.countDocuments({ workspaceId: ws, deletedAt: null })).toBe(names.length);
    await assertConsistent(ws);
  });
});

async function rpcErrorOf(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return undefined;
}
