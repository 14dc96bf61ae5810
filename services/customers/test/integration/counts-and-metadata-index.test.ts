/**
 * The structures lists are served from besides the customers themselves: the live-customer
 * counter (customer-counts.ts) and the metadata index (metadata-index.ts) — how they follow
 * writes, and how they are set right after a writer died halfway.
 */
import { CustomersService } from "@linquid/contracts";
import { createLogger, newId } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Client } from "@connectrpc/connect";
import type { Collection, Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CustomerCounts } from "../../src/customer-counts.js";
import { newCustomerDoc, type CustomerDoc } from "../../src/customer-doc.js";
import { MongoCustomersRepository } from "../../src/customers-repository.js";
import { metadataTerm, NO_FILTERS } from "../../src/filters.js";
import { createMetadataFollowUp } from "../../src/follow-ups.js";
import { RetrySweeper } from "../../src/retry-sweeper.js";
import { customersDb } from "./helpers.js";

describe("live-customer counter and metadata index", () => {
  let mesh: TestMesh;
  let c: Client<typeof CustomersService>;
  let db: Db;
  let customers: Collection<CustomerDoc>;
  let closeDb: () => Promise<void>;
  let repo: MongoCustomersRepository;

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers", ANALYTICS_ADDR: "http://127.0.0.1:1" });
    c = mesh.grpcClient(CustomersService);
    ({ db, close: closeDb } = await customersDb(mesh));
    customers = db.collection<CustomerDoc>("customers");
    repo = new MongoCustomersRepository(db, { followUpFirstDueMs: 0 });
  });
  afterAll(async () => {
    await closeDb?.();
    await mesh?.stop();
  });

  const indexCount = (ws: string) => customers.countDocuments({ workspaceId: ws, deletedAt: null });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("the counter follows creates, stitches and deletes, concurrent ones included", async () => {
    const ws = newId("ws");
    const counts = new CustomerCounts(db, customers, undefined, { retryMs: 0 });
    // Not trusted before a reconciliation: counted from the index.
    await c.createCustomer({ workspaceId: ws, externalId: "a" });
    expect(await counts.count(ws)).toBe(1);
    expect(await counts.reconcile(ws)).toBe(true);
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => c.createCustomer({ workspaceId: ws, externalId: `p${i}` })),
      c.stitchCustomers({ workspaceId: ws, items: Array.from({ length: 30 }, (_, i) => ({ externalId: `s${i}` })) }),
      ...Array.from({ length: 10 }, (_, i) => c.stitchCustomer({ workspaceId: ws, externalId: `p${i}` })),
    ]);
    await Promise.all(Array.from({ length: 8 }, (_, i) => c.deleteCustomer({ workspaceId: ws, id: `ext_s${i}` })));
    const doc = await counts.counts.findOne({ _id: ws });
    expect(doc).toMatchObject({ ready: true, pending: 0, n: 1 + 20 + 30 - 8 });
    expect(await indexCount(ws)).toBe(43);
    expect((await c.countCustomers({ workspaceId: ws })).count).toBe(43n);
  });

  it("a reconciliation corrects a counter, but never while a write is pending, until the writer is taken for dead", async () => {
    const ws = newId("ws");
    const counts = new CustomerCounts(db, customers, undefined, { quietMs: 300, retryMs: 0 });
    await customers.insertMany(Array.from({ length: 5 }, (_, i) => newCustomerDoc(newId("cus"), ws, `d${i}`, {}, new Date())));
    expect(await counts.reconcile(ws)).toBe(true);
    expect(await counts.count(ws)).toBe(5);
    // Off by some writes behind the service's back: the next reconciliation corrects it.
    await customers.insertOne(newCustomerDoc(newId("cus"), ws, "late", {}, new Date()));
    expect(await counts.count(ws)).toBe(5);
    expect(await counts.reconcile(ws)).toBe(true);
    expect(await counts.count(ws)).toBe(6);
    // A writer announced itself and died: nothing is reconciled while it might still settle…
    await counts.begin(ws, 1);
    expect(await counts.reconcile(ws)).toBe(false);
    await customers.insertOne(newCustomerDoc(newId("cus"), ws, "orphan", {}, new Date()));
    expect(await counts.reconcile(ws)).toBe(false);
    // …and once the counter has not moved for quietMs, its pending write is taken for dead.
    await sleep(350);
    expect(await counts.reconcile(ws)).toBe(true);
    expect(await counts.counts.findOne({ _id: ws })).toMatchObject({ n: 7, pending: 0, ready: true });
  });

  it("a count due for its periodic check answers at once and reconciles in the background", async () => {
    const ws = newId("ws");
    const counts = new CustomerCounts(db, customers, undefined, { recheckMs: 1, retryMs: 0 });
    await customers.insertMany(Array.from({ length: 3 }, (_, i) => newCustomerDoc(newId("cus"), ws, `r${i}`, {}, new Date())));
    expect(await counts.count(ws)).toBe(3);
    for (let i = 0; i < 50 && (await counts.counts.findOne({ _id: ws }))?.ready !== true; i++) {
      await counts.count(ws);
      await sleep(50);
    }
    expect(await counts.counts.findOne({ _id: ws })).toMatchObject({ ready: true, n: 3 });
  });

  it("a metadata sweeper syncs the entries a dead writer left, fencing its write off first", async () => {
    const ws = newId("ws");
    const created = (await c.createCustomer({ workspaceId: ws, externalId: "m1", metadata: { tier: "gold" } })).customer!;
    const entries = db.collection("customer_metadata");
    const gold = metadataTerm("tier", "gold");
    const silver = metadataTerm("tier", "silver");
    expect(await entries.countDocuments({ customerId: created.id })).toBe(1);
    // A writer that added the entry of its new value and died before writing the customer.
    await repo.followUps.mark("metadata", ws, created.id);
    await repo.metadata.add([{ _id: `${created.id}:${silver}`, workspaceId: ws, term: silver, createdAt: new Date(Number(created.createdAt!.seconds) * 1000), customerId: created.id }]);
    expect((await c.countCustomers({ workspaceId: ws, metadata: { tier: "silver" } })).count).toBe(1n);
    expect((await c.listCustomers({ workspaceId: ws, metadata: { tier: "silver" } })).customers).toEqual([]);
    const revBefore = (await customers.findOne({ _id: created.id }))!.rev;
    const sweeper = new RetrySweeper(createMetadataFollowUp(repo), createLogger("test", "error"));
    expect(await sweeper.sweep()).toBeGreaterThanOrEqual(1);
    expect((await customers.findOne({ _id: created.id }))!.rev).toBe(revBefore + 1);
    expect(await entries.find({ customerId: created.id }, { projection: { term: 1 } }).toArray()).toEqual([{ _id: `${created.id}:${gold}`, term: gold }]);
    expect(await repo.followUps.find("metadata", created.id)).toBeNull();
    expect((await c.countCustomers({ workspaceId: ws, metadata: { tier: "silver" } })).count).toBe(0n);

    // A create that never happened: its id is poisoned and its entries go.
    const ghost = newId("cus");
    await repo.followUps.mark("metadata", ws, ghost);
    await repo.metadata.add([{ _id: `${ghost}:${gold}`, workspaceId: ws, term: gold, createdAt: new Date(), customerId: ghost }]);
    await sweeper.sweep();
    expect(await customers.findOne({ _id: ghost })).toMatchObject({ tombstone: true });
    expect(await entries.countDocuments({ customerId: ghost })).toBe(0);
    expect((await c.countCustomers({ workspaceId: ws, metadata: { tier: "gold" } })).count).toBe(1n);
  });

  it("a backfill gives customers written without the index their entries", async () => {
    const ws = newId("ws");
    const docs = Array.from({ length: 7 }, (_, i) => newCustomerDoc(newId("cus"), ws, `b${i}`, { metadata: { plan: i % 2 ? "pro" : "free", i } }, new Date(Date.now() + i)));
    await customers.insertMany(docs);
    expect(docs.every((d) => d.metadataIndexed === undefined)).toBe(true);
    // Until covered, a metadata filter checks each customer itself (this repository has not seen the index complete).
    const fresh = new MongoCustomersRepository(db);
    const pro = { ...NO_FILTERS, metadata: [["plan", "pro"]] as Array<[string, string]> };
    expect((await fresh.page(ws, pro, "asc", { skip: 0 }, 10)).docs.map((d) => d._id)).toEqual([docs[1]!._id, docs[3]!._id, docs[5]!._id]);
    expect(await fresh.backfillMetadata()).toBeGreaterThanOrEqual(7);
    expect(await customers.countDocuments({ workspaceId: ws, metadataIndexed: true })).toBe(7);
    expect(await db.collection("customer_metadata").countDocuments({ workspaceId: ws })).toBe(14);
    expect(await fresh.count(ws, pro)).toBe(3);
    expect((await fresh.page(ws, pro, "desc", { skip: 0 }, 2)).docs.map((d) => d._id)).toEqual([docs[5]!._id, docs[3]!._id]);
  });
});
