/**
 * Cursor walks through the bounded windows of keyset.ts against a brute-force model: any
 * spread of creation times (ties, milliseconds, days, years apart), any filters, either order,
 * any page size — every matching live customer exactly once, in (createdAt, id) order.
 */
import { newId } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import fc from "fast-check";
import type { Collection, Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newCustomerDoc, type CustomerDoc } from "../../src/customer-doc.js";
import { MongoCustomersRepository } from "../../src/customers-repository.js";
import { matchesFilters, NO_FILTERS, type CustomerFilters } from "../../src/filters.js";
import { customersDb } from "./helpers.js";

/** Undefined two times in three. */
function sometimes<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> {
  return fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
}

describe("cursor walks (property)", () => {
  let mesh: TestMesh;
  let db: Db;
  let customers: Collection<CustomerDoc>;
  let closeDb: () => Promise<void>;
  let repo: MongoCustomersRepository;

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers", ANALYTICS_ADDR: "http://127.0.0.1:1" });
    ({ db, close: closeDb } = await customersDb(mesh));
    customers = db.collection<CustomerDoc>("customers");
    repo = new MongoCustomersRepository(db);
  });
  afterAll(async () => {
    await closeDb?.();
    await mesh?.stop();
  });

  it("visit every match once, in order, from any start, with any filters", async () => {
    const GAPS = [0, 1, 7, 1000, 3_600_000, 86_400_000, 400 * 86_400_000];
    const scenario = fc.record({
      // Each customer comes some gap after the one before.
      gaps: fc.array(fc.constantFrom(...GAPS), { minLength: 5, maxLength: 70 }),
      countries: fc.array(fc.constantFrom("US", "GB", null), { minLength: 70, maxLength: 70 }),
      names: fc.array(fc.constantFrom("Ann", "Bob", "anna"), { minLength: 70, maxLength: 70 }),
      deleted: fc.array(fc.integer({ min: 0, max: 4 }).map((x) => x === 0), { minLength: 70, maxLength: 70 }),
      limit: fc.integer({ min: 1, max: 9 }),
      country: sometimes(fc.constantFrom("US", "GB")),
      search: sometimes(fc.constantFrom("ann", "b")),
      // Bounds at a customer's creation time, or a millisecond beside it.
      after: sometimes(fc.tuple(fc.nat(), fc.integer({ min: -1, max: 1 }))),
      before: sometimes(fc.tuple(fc.nat(), fc.integer({ min: -1, max: 1 }))),
      // A poor first guess of the span (the cursor's hint): windows must widen and narrow.
      hint: fc.constantFrom(1, 50, 3_600_000, 10 * 365 * 86_400_000),
    });
    let walked = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const ws = newId("ws");
        let t = Date.UTC(2024, 0, 1);
        const docs = s.gaps.map((gap, i) => {
          t += gap;
          const d = newCustomerDoc(newId("cus"), ws, `e${i}`, { name: s.names[i]!, ...(s.countries[i] ? { country: s.countries[i]! } : {}) }, new Date(t));
          return s.deleted[i] ? { ...d, deletedAt: new Date(), search: [] } : d;
        });
        if (docs.length > 0) await customers.insertMany(docs);
        const at = (b: [number, number] | undefined) => (b === undefined || docs.length === 0 ? undefined : docs[b[0] % docs.length]!.createdAt.getTime() + b[1]);
        const createdAfter = at(s.after);
        let createdBefore = at(s.before);
        if (createdAfter !== undefined && createdBefore !== undefined && createdAfter >= createdBefore) createdBefore = undefined;
        const f: CustomerFilters = { ...NO_FILTERS, country: s.country, search: s.search, createdAfter, createdBefore };
        const expected = docs
          .filter((d) => matchesFilters(d, ws, f))
          .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a._id < b._id ? -1 : 1))
          .map((d) => d._id);

        for (const order of ["asc", "desc"] as const) {
          const seen: string[] = [];
          let page = await repo.page(ws, f, order, { skip: 0 }, s.limit);
          seen.push(...page.docs.map((d) => d._id));
          let first = true;
          while (page.hasMore) {
            const last = page.docs[page.docs.length - 1]!;
            const span = first ? s.hint : page.spanMs;
            first = false;
            page = await repo.page(ws, f, order, { from: { t: last.createdAt.getTime(), id: last._id, span } }, s.limit);
            expect(page.docs.length).toBeLessThanOrEqual(s.limit);
            seen.push(...page.docs.map((d) => d._id));
          }
          expect(seen).toEqual(order === "asc" ? expected : [...expected].reverse());
          walked += seen.length;
        }
        expect(await repo.count(ws, f)).toBe(expected.length);
      }),
      { numRuns: 60 },
    );
    // The runs walked real lists, not only empty ones.
    expect(walked).toBeGreaterThan(300);
  });
});
