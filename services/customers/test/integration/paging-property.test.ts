import { CustomersService } from "@linquid/contracts";
import { newId } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Client } from "@connectrpc/connect";
import fc from "fast-check";
import type { Collection, Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newCustomerDoc, type CustomerDoc } from "../../src/customer-doc.js";
import { customersDb } from "./helpers.js";

describe("ListCustomers paging (property)", () => {
  let mesh: TestMesh;
  let c: Client<typeof CustomersService>;
  let db: Db;
  let customers: Collection<CustomerDoc>;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers" });
    c = mesh.grpcClient(CustomersService);
    ({ db, close: closeDb } = await customersDb(mesh));
    customers = db.collection<CustomerDoc>("customers");
  });
  afterAll(async () => {
    await closeDb?.();
    await mesh?.stop();
  });

  it("walking every page in either order yields each live customer exactly once, by (createdAt, id)", async () => {
    const scenario = fc.record({
      // customers made through the API, in quick succession (createdAt ties are likely)
      viaApi: fc.integer({ min: 0, max: 12 }),
      // customers sharing a handful of creation instants (ties are certain), same document shape
      tied: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 12 }),
      deletes: fc.array(fc.nat(), { maxLength: 6 }),
      limit: fc.integer({ min: 1, max: 7 }),
      search: fc.option(fc.constantFrom("1", "x", "."), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async ({ viaApi, tied, deletes, limit, search }) => {
        const ws = newId("ws");
        const ids: string[] = [];
        await Promise.all(
          Array.from({ length: viaApi }, async (_, i) => {
            ids.push((await c.createCustomer({ workspaceId: ws, externalId: `api-${i}`, name: i % 2 ? "x.y" : "z" })).customer!.id);
          }),
        );
        const base = Date.now() - 60_000;
        for (const [i, slot] of tied.entries()) {
          const doc = newCustomerDoc(newId("cus"), ws, `tied-${i}`, { name: i % 3 ? "x" : "w" }, new Date(base + slot));
          await customers.insertOne(doc);
          // keys as the repository writes them, so the API can address these customers
          await db.collection("customer_keys").insertOne({ _id: `${ws}:tied-${i}` as never, customerId: doc._id, token: "t", at: new Date(base) });
          ids.push(doc._id);
        }
        const deleted = new Set<string>();
        for (const d of deletes) {
          if (ids.length === 0) break;
          const id = ids[d % ids.length]!;
          if (deleted.has(id)) continue;
          await c.deleteCustomer({ workspaceId: ws, id });
          deleted.add(id);
        }

        const all = await customers.find({ workspaceId: ws }).toArray();
        const needle = search?.toLowerCase();
        const expected = all
          .filter((d) => d.deletedAt === null && (needle === undefined || d.search.some((s) => s.includes(needle))))
          .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a._id < b._id ? -1 : a._id > b._id ? 1 : 0))
          .map((d) => d._id);

        for (const sortOrder of ["asc", "desc"] as const) {
          const seen: string[] = [];
          for (let page = 1; ; page++) {
            const res = await c.listCustomers({ workspaceId: ws, page, limit, sortOrder, ...(search !== undefined ? { search } : {}) });
            if (res.pagination.case !== "page") throw new Error("expected page pagination");
            const p = res.pagination.value;
            expect(p.total).toBe(BigInt(expected.length));
            expect(p.totalPages).toBe(Math.ceil(expected.length / limit));
            expect(res.customers.length).toBeLessThanOrEqual(limit);
            seen.push(...res.customers.map((x) => x.id));
            expect(p.hasMore).toBe(page < p.totalPages);
            if (!p.hasMore) break;
          }
          expect(seen).toEqual(sortOrder === "asc" ? expected : [...expected].reverse());
          for (const id of deleted) expect(seen).not.toContain(id);
        }
        expect((await c.countCustomers({ workspaceId: ws, ...(search !== undefined ? { search } : {}) })).count).toBe(BigInt(expected.length));
      }),
      { numRuns: 25 },
    );
  });
});
