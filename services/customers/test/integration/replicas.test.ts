/**
 * Several replicas of the customers plugin on one database, as Kubernetes runs them: this
 * process's mesh and two more `main.ts` processes serving CustomersService on the same
 * database, written to at the same time. Nothing coordinates them but the database.
 */
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import { newId } from "@linquid/mesh";
import { startReplicas, startTestMesh, type MeshProcess, type TestMesh } from "@linquid/mesh/testing";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newCustomerDoc, type CustomerDoc } from "../../src/customer-doc.js";
import type { FollowUpDoc } from "../../src/follow-up-markers.js";
import type { KeyDoc } from "../../src/identity-keys.js";
import { customersDb } from "./helpers.js";

const REPLICAS = 2;

describe("customers replicas on one database", () => {
  let main: TestMesh;
  let replicas: MeshProcess[] = [];
  let clients: Array<Client<typeof CustomersService>>;
  let db: Db;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    // This process also serves analytics, so the follow-ups of every replica can complete.
    main = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics" });
    ({ replicas, clients } = await startReplicas(main, REPLICAS, { MESH_PLUGINS: "customers", ANALYTICS_ADDR: main.host.grpcUrl! }, CustomersService));
    ({ db, close: closeDb } = await customersDb(main));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await closeDb?.();
    await main?.stop();
  });

  const customers = () => db.collection<CustomerDoc>("customers");
  const keys = () => db.collection<KeyDoc>("customer_keys");
  const markers = () => db.collection<FollowUpDoc>("customer_follow_ups");
  const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)]!;

  /** Every live externalId of the workspace belongs to exactly one live customer, whose key points at it. */
  async function assertIdentityConsistent(ws: string): Promise<CustomerDoc[]> {
    const live = await customers().find({ workspaceId: ws, deletedAt: null }).toArray();
    const exts = live.map((d) => d.externalId);
    expect(new Set(exts).size, `live externalIds ${exts.join(",")}`).toBe(exts.length);
    for (const d of live) expect((await keys().findOne({ _id: `${ws}:${d.externalId}` }))?.customerId, `key of ${d.externalId}`).toBe(d._id);
    return live;
  }

  async function waitFor(what: string, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
    const until = Date.now() + ms;
    while (!(await ok())) {
      if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms\n${replicas.map((r) => r.log().slice(-2000)).join("\n")}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it("ends concurrent creates of one externalId through every replica in exactly one customer", async () => {
    const ws = (await main.workspace()).id;
    const exts = ["one", "two", "three", "four"];
    const answers = await Promise.all(
      exts.flatMap((externalId) =>
        clients.flatMap((c, r) =>
          Array.from({ length: 8 }, (_, i) => c.createCustomer({ workspaceId: ws, externalId, name: `r${r}-${i}` }).then((res) => ({ externalId, res }))),
        ),
      ),
    );
    for (const externalId of exts) {
      const mine = answers.filter((a) => a.externalId === externalId);
      expect(new Set(mine.map((a) => a.res.customer!.id)).size, externalId).toBe(1);
      expect(mine.filter((a) => a.res.created), externalId).toHaveLength(1);
    }
    const live = await assertIdentityConsistent(ws);
    expect(live.map((d) => d.externalId).sort()).toEqual([...exts].sort());
    // Every replica answers the same customer for each externalId.
    for (const externalId of exts) {
      const seen = await Promise.all(clients.map((c) => c.getCustomer({ workspaceId: ws, id: `ext_${externalId}` })));
      expect(new Set(seen.map((s) => s.customer!.id)).size).toBe(1);
    }
  });

  it("keeps identities consistent under concurrent creates, renames and deletes through every replica, and completes every follow-up", async () => {
    const ws = (await main.workspace()).id;
    const names = ["e0", "e1", "e2", "e3", "e4"];
    const created = new Set<string>();
    const seed = await Promise.all(names.map((externalId) => pick(clients).createCustomer({ workspaceId: ws, externalId })));
    const ids = seed.map((s) => s.customer!.id);
    for (const id of ids) created.add(id);
    const deleted = new Set<string>();
    const ops: Array<Promise<unknown>> = [];
    for (let i = 0; i < 90; i++) {
      const c = pick(clients);
      const target = pick(names);
      const who = pick(ids);
      const dice = Math.random();
      const op =
        dice < 0.35
          ? c.createCustomer({ workspaceId: ws, externalId: target, email: `u${i}@example.com` }).then((r) => {
              if (r.created) {
                created.add(r.customer!.id);
                ids.push(r.customer!.id);
              }
            })
          : dice < 0.85
            ? c.updateCustomer({ workspaceId: ws, id: who, externalId: target, updateMask: { paths: ["externalId"] } })
            : c.deleteCustomer({ workspaceId: ws, id: who }).then(() => deleted.add(who));
      // A rename onto a held externalId is 409; a customer deleted meanwhile is 404.
      ops.push(op.catch((err: unknown) => expect([Code.AlreadyExists, Code.NotFound]).toContain(ConnectError.from(err).code)));
    }
    await Promise.all(ops);
    const live = await assertIdentityConsistent(ws);
    for (const id of deleted) {
      const doc = await customers().findOne({ _id: id });
      expect(doc).toMatchObject({ externalId: null, email: null, search: [] });
      expect(doc?.deletedAt).toBeInstanceOf(Date);
    }
    expect(live.every((d) => !deleted.has(d._id))).toBe(true);

    // Follow-ups: every scrub and registration completes, each marker gone, whichever replica
    // wrote it and whichever replica's sweeper (or the write itself) did the work.
    await waitFor("follow-ups done", async () => (await markers().countDocuments({ workspaceId: ws })) === 0);
    const analyticsDb = db.client.db(`${main.config.mongodbDbPrefix}_analytics`);
    const totals = await analyticsDb.collection<{ customerId: string; createdAt: Date | null }>("customer_totals").find({ workspaceId: ws }).toArray();
    const registered = new Set(totals.filter((t) => t.createdAt instanceof Date).map((t) => t.customerId));
    for (const id of created) expect(registered.has(id), `registration of ${id}`).toBe(true);
    // No key is left pointing at a deleted customer (the scrub removes stale ones).
    for (const id of deleted) expect(await keys().countDocuments({ customerId: id })).toBe(0);
    // And analytics answers for every live one through any replica.
    const analytics = main.host.client(AnalyticsService);
    for (const d of live) await analytics.getJourneySummary({ workspaceId: ws, id: d._id });
  });

  it("fences off writes that never happened before clearing their markers, from any replica's sweeper", async () => {
    const ws = (await main.workspace()).id;
    const past = new Date(Date.now() - 60_000);
    // A delete that crashed after recording its scrub, before its update: the customer is live.
    const live = newCustomerDoc(newId("cus"), ws, "still-here", {}, past);
    await customers().insertOne(live);
    await keys().insertOne({ _id: `${ws}:still-here`, customerId: live._id, token: "k", at: past });
    await markers().insertOne({ _id: `scrub:${live._id}`, kind: "scrub", workspaceId: ws, customerId: live._id, token: "crashed-delete", due: past });
    // A create that crashed after recording its registration, before its insert.
    const ghost = newId("cus");
    await markers().insertOne({ _id: `register:${ghost}`, kind: "register", workspaceId: ws, customerId: ghost, token: "crashed-create", due: past });

    await waitFor("markers cleared", async () => (await markers().countDocuments({ workspaceId: ws })) === 0);
    // The live customer was not scrubbed; its rev moved, so the late delete's update fails.
    const after = await customers().findOne({ _id: live._id });
    expect(after).toMatchObject({ externalId: "still-here", deletedAt: null, rev: live.rev + 1 });
    expect(await customers().findOneAndUpdate({ _id: live._id, rev: live.rev, deletedAt: null }, { $set: { deletedAt: new Date() } })).toBeNull();
    // The ghost id is poisoned: the late insert fails, so no customer can appear without its registration.
    expect(await customers().findOne({ _id: ghost })).toMatchObject({ tombstone: true, deletedAt: expect.any(Date) });
    const late = await customers().insertOne(newCustomerDoc(ghost, ws, "late", {}, new Date())).catch((err: { code?: number }) => err.code);
    expect(late).toBe(11000);
    // The customer is still served normally through every replica.
    for (const c of clients) expect((await c.getCustomer({ workspaceId: ws, id: "ext_still-here" })).customer!.id).toBe(live._id);
  });
});
