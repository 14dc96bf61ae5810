import { Code } from "@connectrpc/connect";
import { CustomersService } from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Client } from "@connectrpc/connect";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customersDb, rpcError } from "./helpers.js";

describe("CustomersService over gRPC", () => {
  let mesh: TestMesh;
  let c: Client<typeof CustomersService>;
  let db: Db;
  let closeDb: () => Promise<void>;
  let ws: string;
  let otherWs: string;

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers" });
    c = mesh.grpcClient(CustomersService);
    ({ db, close: closeDb } = await customersDb(mesh));
    ws = (await mesh.workspace()).id;
    otherWs = (await mesh.workspace()).id;
  });
  afterAll(async () => {
    await closeDb?.();
    await mesh?.stop();
  });

  it("creates, gets by id and ext_, updates, counts, lists and deletes", async () => {
    const created = await c.createCustomer({ workspaceId: ws, externalId: "crud-1", email: "Ann@Example.com", name: "Ann", country: "fr", metadata: { plan: "gold", n: 3 } });
    expect(created.created).toBe(true);
    const cus = created.customer!;
    expect(cus.id).toMatch(/^cus_/);
    expect(cus).toMatchObject({ externalId: "crud-1", email: "Ann@Example.com", name: "Ann", country: "FR", metadata: { plan: "gold", n: 3 } });
    expect(cus.stats).toMatchObject({ leads: 0n, sales: 0n, revenue: 0n });
    expect(cus.stats?.currency).toBeUndefined();

    expect((await c.getCustomer({ workspaceId: ws, id: cus.id })).customer).toEqual(cus);
    expect((await c.getCustomer({ workspaceId: ws, id: "ext_crud-1" })).customer).toEqual(cus);

    const again = await c.createCustomer({ workspaceId: ws, externalId: "crud-1", name: "Annie" });
    expect(again.created).toBe(false);
    expect(again.customer).toMatchObject({ id: cus.id, name: "Annie", email: "Ann@Example.com" });

    const updated = await c.updateCustomer({ workspaceId: ws, id: cus.id, externalId: "crud-2", email: "ann@new.io", updateMask: { paths: ["externalId", "email", "metadata"] } });
    expect(updated.customer).toMatchObject({ id: cus.id, externalId: "crud-2", email: "ann@new.io", name: "Annie" });
    expect(updated.customer?.metadata).toBeUndefined();
    expect((await rpcError(c.getCustomer({ workspaceId: ws, id: "ext_crud-1" }))).code).toBe(Code.NotFound);
    expect((await c.getCustomer({ workspaceId: ws, id: "ext_crud-2" })).customer?.id).toBe(cus.id);

    expect((await c.countCustomers({ workspaceId: ws, search: "crud-" })).count).toBe(1n);
    const listed = await c.listCustomers({ workspaceId: ws, search: "ANN@NEW" });
    expect(listed.customers.map((x) => x.id)).toEqual([cus.id]);
    expect(listed.pagination).toMatchObject({ case: "page", value: { page: 1, limit: 20, total: 1n, totalPages: 1, hasMore: false } });

    expect(await c.deleteCustomer({ workspaceId: ws, id: "ext_crud-2" })).toMatchObject({ id: cus.id, deleted: true });
    expect((await rpcError(c.getCustomer({ workspaceId: ws, id: cus.id }))).code).toBe(Code.NotFound);
    expect((await rpcError(c.deleteCustomer({ workspaceId: ws, id: cus.id }))).code).toBe(Code.NotFound);
    expect((await c.countCustomers({ workspaceId: ws, search: "crud-" })).count).toBe(0n);
  });

  it("ends 50 parallel creates of one externalId in exactly one customer, created once", async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => c.createCustomer({ workspaceId: ws, externalId: "race-1", ...(i % 2 === 0 ? { name: `n${i}` } : { clickId: `c${i}` }) })),
    );
    expect(new Set(results.map((r) => r.customer!.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const live = await db.collection("customers").find({ workspaceId: ws, deletedAt: null, externalId: "race-1" }).toArray();
    expect(live).toHaveLength(1);
    expect((await c.countCustomers({ workspaceId: ws, search: "race-1" })).count).toBe(1n);
    const keys = await db.collection("customer_keys").find({ _id: `${ws}:race-1` as never }).toArray();
    expect(keys.map((k) => k["customerId"])).toEqual([live[0]!._id]);
  });

  it("frees the externalId of a deleted customer for a new one", async () => {
    const first = (await c.createCustomer({ workspaceId: ws, externalId: "reuse-1", email: "first@x.io" })).customer!;
    await c.deleteCustomer({ workspaceId: ws, id: first.id });
    const second = await c.createCustomer({ workspaceId: ws, externalId: "reuse-1" });
    expect(second.created).toBe(true);
    expect(second.customer!.id).not.toBe(first.id);
    expect(second.customer?.email).toBeUndefined();
    expect((await c.getCustomer({ workspaceId: ws, id: "ext_reuse-1" })).customer?.id).toBe(second.customer!.id);
    // and by rename
    const third = (await c.createCustomer({ workspaceId: ws, externalId: "reuse-2" })).customer!;
    await c.deleteCustomer({ workspaceId: ws, id: second.customer!.id });
    const renamed = await c.updateCustomer({ workspaceId: ws, id: third.id, externalId: "reuse-1", updateMask: { paths: ["externalId"] } });
    expect(renamed.customer?.externalId).toBe("reuse-1");
  });

  it("answers ALREADY_EXISTS when an update takes a live customer's externalId", async () => {
    const a = (await c.createCustomer({ workspaceId: ws, externalId: "dup-a", name: "A" })).customer!;
    await c.createCustomer({ workspaceId: ws, externalId: "dup-b" });
    const err = await rpcError(c.updateCustomer({ workspaceId: ws, id: a.id, externalId: "dup-b", name: "changed", updateMask: { paths: ["externalId", "name"] } }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect((await c.getCustomer({ workspaceId: ws, id: a.id })).customer).toMatchObject({ externalId: "dup-a", name: "A" });
    // renaming to its own externalId is no conflict
    expect((await c.updateCustomer({ workspaceId: ws, id: a.id, externalId: "dup-a", updateMask: { paths: ["externalId"] } })).customer?.externalId).toBe("dup-a");
  });

  it("keeps workspaces apart at the RPC level", async () => {
    const mine = (await c.createCustomer({ workspaceId: ws, externalId: "iso-1", email: "iso@x.io" })).customer!;
    for (const id of [mine.id, "ext_iso-1"]) {
      expect((await rpcError(c.getCustomer({ workspaceId: otherWs, id }))).code).toBe(Code.NotFound);
      expect((await rpcError(c.updateCustomer({ workspaceId: otherWs, id, name: "x", updateMask: { paths: ["name"] } }))).code).toBe(Code.NotFound);
      expect((await rpcError(c.deleteCustomer({ workspaceId: otherWs, id }))).code).toBe(Code.NotFound);
    }
    expect((await c.countCustomers({ workspaceId: otherWs, search: "iso" })).count).toBe(0n);
    expect((await c.listCustomers({ workspaceId: otherWs })).customers.map((x) => x.id)).not.toContain(mine.id);
    // the same externalId in another workspace is another customer
    const theirs = await c.createCustomer({ workspaceId: otherWs, externalId: "iso-1" });
    expect(theirs.created).toBe(true);
    expect(theirs.customer!.id).not.toBe(mine.id);
    expect((await c.getCustomer({ workspaceId: ws, id: mine.id })).customer?.email).toBe("iso@x.io");
    // stats cannot be set across workspaces either
    expect((await rpcError(c.setCustomerStats({ workspaceId: otherWs, customerId: mine.id, stats: { leads: 1n }, version: 1n }))).code).toBe(Code.NotFound);
  });

  it("matches search terms literally, never as a regex or operator", async () => {
    const sws = (await mesh.workspace()).id;
    const names = ["a.b", "axb", "lit.*x", "x$wherey", "paren(1", "back\\slash", "plain", "{\"$ne\":1}", "Big.Dot"];
    const byName = new Map<string, string>();
    for (const [i, name] of names.entries()) {
      byName.set(name, (await c.createCustomer({ workspaceId: sws, externalId: `s${i}`, name })).customer!.id);
    }
    const search = async (s: string) => (await c.listCustomers({ workspaceId: sws, search: s, limit: 100 })).customers.map((x) => x.name).sort();
    expect(await search(".*")).toEqual(["lit.*x"]);
    expect(await search("$where")).toEqual(["x$wherey"]);
    expect(await search("(")).toEqual(["paren(1"]);
    expect(await search("\\")).toEqual(["back\\slash"]);
    expect(await search("a.b")).toEqual(["a.b"]);
    expect(await search(".")).toEqual(["Big.Dot", "a.b", "lit.*x"]);
    expect(await search("big.d")).toEqual(["Big.Dot"]);
    expect(await search("{\"$ne\":1}")).toEqual(["{\"$ne\":1}"]);
    expect(await search("[")).toEqual([]);
    expect(await search("^plain$")).toEqual([]);
    expect((await c.countCustomers({ workspaceId: sws, search: "." })).count).toBe(3n);
    expect((await c.countCustomers({ workspaceId: sws })).count).toBe(BigInt(names.length));
  });

  it("rejects bad list parameters with field violations", async () => {
    const err = await rpcError(c.listCustomers({ workspaceId: ws, page: 0, limit: 101, sortOrder: "sideways" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violationsOf(err).map((v) => v.field).sort()).toEqual(["limit", "page", "sortOrder"]);
  });

  it("scrubs every stored copy of a deleted customer's PII; without analytics the scrub stays pending", async () => {
    const pii = { externalId: "pii-ext-7f3a", email: "pii.person.7f3a@example.com", name: "Pii Person 7f3a", metadata: { secretNote: "pii-meta-7f3a" } };
    const cus = (await c.createCustomer({ workspaceId: ws, ...pii, avatar: "https://x.io/pii-avatar-7f3a.png", clickId: "clk-7f3a" })).customer!;
    await c.updateCustomer({ workspaceId: ws, id: cus.id, externalId: "pii-ext2-7f3a", updateMask: { paths: ["externalId"] } });
    await c.setCustomerStats({ workspaceId: ws, customerId: cus.id, stats: { leads: 3n, sales: 1n, revenue: 990n, currency: "USD" }, version: 5n });
    expect(await c.deleteCustomer({ workspaceId: ws, id: cus.id })).toMatchObject({ id: cus.id, deleted: true });

    const needles = ["pii-ext-7f3a", "pii-ext2-7f3a", "pii.person.7f3a", "pii person 7f3a", "pii-meta-7f3a", "pii-avatar-7f3a"];
    for (const coll of await db.listCollections().toArray()) {
      const docs = await db.collection(coll.name).find({}).toArray();
      const dump = JSON.stringify(docs).toLowerCase();
      for (const n of needles) expect(dump.includes(n), `${n} in ${coll.name}`).toBe(false);
    }
    const stored = await db.collection("customers").findOne({ _id: cus.id as never });
    // analytics does not run in this mesh: the delete is recorded and the scrub waits
    expect(stored).toMatchObject({ externalId: null, email: null, name: null, avatar: null, metadataJson: null, search: [] });
    expect(await db.collection("customer_follow_ups").findOne({ _id: `scrub:${cus.id}` as never })).toMatchObject({ kind: "scrub", customerId: cus.id, workspaceId: ws });
    expect(stored?.["deletedAt"]).toBeInstanceOf(Date);
    // totals stay, and stats can still be set on a deleted customer
    expect(stored?.["stats"]).toMatchObject({ leads: 3, sales: 1, revenue: 990, currency: "USD" });
    expect((await c.setCustomerStats({ workspaceId: ws, customerId: cus.id, stats: { leads: 4n }, version: 6n })).applied).toBe(true);
    expect((await c.setCustomerStats({ workspaceId: ws, customerId: cus.id, stats: { leads: 1n }, version: 6n })).applied).toBe(false);
  });

  it("sets many customers' stats in one call: newer versions stored, stale ones and unknown customers skipped, a bad item refuses the call", async () => {
    const [a, b] = await Promise.all(["bulk-a", "bulk-b"].map(async (externalId) => (await c.createCustomer({ workspaceId: ws, externalId })).customer!));
    await c.setCustomerStats({ workspaceId: ws, customerId: b!.id, stats: { leads: 9n }, version: 10n });
    const otherWs = (await mesh.workspace()).id;
    const theirs = (await c.createCustomer({ workspaceId: otherWs, externalId: "bulk-theirs" })).customer!;
    const res = await c.setCustomersStats({
      workspaceId: ws,
      items: [
        { customerId: a!.id, stats: { leads: 2n, sales: 1n, revenue: 500n, currency: "USD" }, version: 3n },
        { customerId: b!.id, stats: { leads: 1n }, version: 4n }, // older than the stored 10
        { customerId: "cus_nope", stats: { leads: 1n }, version: 1n },
        { customerId: theirs.id, stats: { leads: 7n }, version: 1n }, // another workspace's
      ],
    });
    expect(res.applied).toBe(1n);
    expect((await c.getCustomer({ workspaceId: ws, id: a!.id })).customer?.stats).toMatchObject({ leads: 2n, sales: 1n, revenue: 500n, currency: "USD" });
    expect((await c.getCustomer({ workspaceId: ws, id: b!.id })).customer?.stats?.leads).toBe(9n);
    expect((await c.getCustomer({ workspaceId: otherWs, id: theirs.id })).customer?.stats?.leads ?? 0n).toBe(0n);
    // A bad item refuses the whole call: nothing is stored.
    const err = await rpcError(
      c.setCustomersStats({
        workspaceId: ws,
        items: [
          { customerId: a!.id, stats: { leads: 5n }, version: 4n },
          { customerId: a!.id, stats: { leads: -1n }, version: 5n },
        ],
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violationsOf(err).map((v) => v.field).sort()).toEqual(["items[1].customerId", "items[1].stats.leads"]);
    expect((await c.getCustomer({ workspaceId: ws, id: a!.id })).customer?.stats?.leads).toBe(2n);
    expect((await rpcError(c.setCustomersStats({ workspaceId: ws, items: [] }))).code).toBe(Code.InvalidArgument);
  });

  it("stitches: finds or creates, filling only missing fields", async () => {
    const s1 = await c.stitchCustomer({ workspaceId: ws, externalId: "stitch-1", email: "s@x.io" });
    expect(s1.created).toBe(true);
    const s2 = await c.stitchCustomer({ workspaceId: ws, externalId: "stitch-1", email: "other@x.io", name: "S", clickId: "clk1" });
    expect(s2).toMatchObject({ created: false, customer: { id: s1.customer!.id, email: "s@x.io", name: "S", clickId: "clk1" } });
    const parallel = await Promise.all(Array.from({ length: 20 }, () => c.stitchCustomer({ workspaceId: ws, externalId: "stitch-2" })));
    expect(new Set(parallel.map((p) => p.customer!.id)).size).toBe(1);
    expect(parallel.filter((p) => p.created)).toHaveLength(1);
  });

  it("stitches in bulk: one result per item in order, an invalid item answered with its violations", async () => {
    await c.stitchCustomer({ workspaceId: ws, externalId: "bulk-old", email: "old@x.io" });
    const { results } = await c.stitchCustomers({
      workspaceId: ws,
      items: [{ externalId: "bulk-new", email: "new@x.io" }, { externalId: "bulk-bad", email: "not-an-email" }, { externalId: "bulk-old", name: "Old" }],
    });
    expect(results).toHaveLength(3);
    expect(results[0]).toMatchObject({ created: true, customer: { externalId: "bulk-new", email: "new@x.io" } });
    expect(results[1]!.customer).toBeUndefined();
    expect(results[1]!.invalid?.fieldViolations.map((v) => v.field)).toEqual(["email"]);
    expect(results[2]).toMatchObject({ created: false, customer: { externalId: "bulk-old", email: "old@x.io", name: "Old" } });
    expect((await c.countCustomers({ workspaceId: ws, search: "bulk-bad" })).count).toBe(0n);

    const dup = await rpcError(c.stitchCustomers({ workspaceId: ws, items: [{ externalId: "d" }, { externalId: "d" }] }));
    expect(dup.code).toBe(Code.InvalidArgument);
    const tooMany = await rpcError(c.stitchCustomers({ workspaceId: ws, items: Array.from({ length: 1001 }, (_, i) => ({ externalId: `m${i}` })) }));
    expect(violationsOf(tooMany)).toEqual([{ field: "items", issue: "at most 1000 per call" }]);
  });
});
