import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toRows } from "../../src/reads.js";
import { accumulate, cohortCellId, contributions, dayCellId, diffCells, emptyTotals, foldEvents, hourCellId, ltvCellId, nonZero, type CellDelta, type FoldableEvent } from "../../src/totals.js";

const event = fc.record({
  _id: fc.string({ minLength: 1, maxLength: 6 }),
  type: fc.constantFrom("click" as const, "lead" as const, "sale" as const, "custom" as const),
  at: fc.integer({ min: Date.UTC(2025, 0, 1), max: Date.UTC(2026, 11, 31) }).map((ms) => new Date(ms)),
  clickId: fc.option(fc.constantFrom("c1", "c2"), { nil: undefined }),
  linkId: fc.constantFrom("l1", "l2"),
  campaignId: fc.option(fc.constantFrom("spring", "fall"), { nil: undefined }),
  source: fc.option(fc.constantFrom("google", "mail"), { nil: undefined }),
  amount: fc.nat(10_000),
}) as fc.Arbitrary<FoldableEvent>;

describe("customer totals", () => {
  it("folding is order-independent", () => {
    fc.assert(
      fc.property(fc.uniqueArray(event, { selector: (e) => e._id, maxLength: 12 }), fc.func(fc.integer()), (events, f) => {
        const shuffled = [...events].sort((a, b) => f(a._id) - f(b._id));
        const norm = (s: ReturnType<typeof foldEvents>) => ({
          ...s,
          links: [...s.links].sort((a, b) => (a.id < b.id ? -1 : 1)),
          campaigns: [...s.campaigns].sort((a, b) => (a.id < b.id ? -1 : 1)),
          sources: [...s.sources].sort((a, b) => (a.id < b.id ? -1 : 1)),
          revenueByMonth: [...s.revenueByMonth].sort((a, b) => (a.month < b.month ? -1 : 1)),
        });
        expect(norm(foldEvents(emptyTotals(), shuffled))).toEqual(norm(foldEvents(emptyTotals(), events)));
      }),
    );
  });

  it("moving a customer by deltas equals recounting the cells (cohort math)", () => {
    fc.assert(
      fc.property(fc.array(fc.uniqueArray(event, { selector: (e) => e._id, maxLength: 6 }), { maxLength: 4 }), fc.array(event, { maxLength: 3 }), (customers, late) => {
        // Cells kept incrementally: each customer folds a first part, then the late events.
        const kept = new Map<string, CellDelta>();
        const finals = customers.map((evs, i) => {
          const before = foldEvents(emptyTotals(), evs);
          accumulate(kept, contributions("ws", before), 1);
          const after = foldEvents(before, late.map((e) => ({ ...e, _id: `${e._id}:${i}` })));
          for (const d of diffCells("ws", before, after)) accumulate(kept, [{ collection: d.collection, id: d.id, fields: d.fields, values: d.inc }], 1);
          return after;
        });
        const recount = new Map<string, CellDelta>();
        for (const s of finals) accumulate(recount, contributions("ws", s), 1);
        const clean = (m: Map<string, CellDelta>) => Object.fromEntries(nonZero(m).map((d) => [d.id, Object.fromEntries(Object.entries(d.inc).filter(([, v]) => v !== 0))]));
        expect(clean(kept)).toEqual(clean(recount));
      }),
    );
  });

  it("a customer feeds exactly one hour cell, keyed by its anchor hour, campaign and source", () => {
    const s = foldEvents(emptyTotals(), [
      { _id: "click:c1", type: "click", at: new Date("2026-01-05T13:20:00Z"), clickId: "c1", linkId: "l1", campaignId: "spring", source: null },
      { _id: "sale:s1", type: "sale", at: new Date("2026-01-06T09:00:00Z"), amount: 40 },
    ]);
    const hours = contributions("ws", s).filter((c) => c.collection === "cohort_hour_cells");
    expect(hours).toEqual([
      {
        collection: "cohort_hour_cells",
        id: hourCellId("ws", "2026-01-05T13", "spring", null),
        fields: { workspaceId: "ws", hour: "2026-01-05T13", campaign: "spring", source: null },
        values: { customers: 1, leads: 0, sales: 1, revenue: 40, customersWithSale: 1 },
      },
    ]);
  });

  it("hour cell ids never collide: null apart from \"null\", keys with \"|\" apart, nor with the other cells' ids", () => {
    const key = fc.option(fc.oneof(fc.constantFrom("null", "n", "k:", "k1:a", "|", "a|n", "a|k:b", "k3:a|b"), fc.string({ maxLength: 5 })), { nil: null });
    const hour = fc.constantFrom("2026-01-05T13", "2026-01-05T14");
    fc.assert(
      fc.property(hour, key, key, hour, key, key, (h1, c1, s1, h2, c2, s2) => {
        const same = h1 === h2 && c1 === c2 && s1 === s2;
        expect(hourCellId("ws", h1, c1, s1) === hourCellId("ws", h2, c2, s2)).toBe(same);
      }),
    );
    // The fold keys every cell's delta by its id alone, whatever its collection.
    fc.assert(
      fc.property(hour, key, key, key, (h, c, s, k) => {
        const others = [cohortCellId("ws", "campaign", k), cohortCellId("ws", "source", k), dayCellId("ws", "campaign", h.slice(0, 10), k), dayCellId("ws", "day", h.slice(0, 10), null), ltvCellId("ws", h.slice(0, 7), 0)];
        expect(others).not.toContain(hourCellId("ws", h, c, s));
      }),
    );
  });

  it("conversion rate is the share of customers with a sale; empty cohorts are dropped, null last", () => {
    const rows = toRows(
      new Map([
        [null, { customers: 2, leads: 1, sales: 3, revenue: 30, customersWithSale: 1 }],
        ["2026-W02", { customers: 4, leads: 4, sales: 1, revenue: 5, customersWithSale: 1 }],
        ["2026-W01", { customers: 0, leads: 0, sales: 0, revenue: 0, customersWithSale: 0 }],
      ]),
    );
    expect(rows.map((r) => [r.cohort, r.conversionRate])).toEqual([
      ["2026-W02", 0.25],
      [null, 0.5],
    ]);
  });
});
