import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { customerCredits, MODELS, splitAmount, type ClickTouch } from "../../src/attribution.js";

const DAY = 86_400_000;
const click = (day: number, linkId: string, ref = `c${day}${linkId}`, campaignId: string | null = null): ClickTouch => ({ at: new Date(day * DAY), ref, linkId, campaignId, source: null });

describe("attribution models", () => {
  it("credits a sale as each model says", () => {
    const clicks = [click(1, "a"), click(2, "b"), click(3, "c"), click(4, "d")];
    const sale = [{ at: new Date(5 * DAY), amount: 1000 }];
    const revenue = (model: (typeof MODELS)[number], half = 7) => customerCredits(model, clicks, sale, half).map((c) => [c.linkId, c.revenue]);
    expect(revenue("first_touch")).toEqual([["a", 1000], ["b", 0], ["c", 0], ["d", 0]]);
    expect(revenue("last_touch")).toEqual([["a", 0], ["b", 0], ["c", 0], ["d", 1000]]);
    expect(revenue("linear")).toEqual([["a", 250], ["b", 250], ["c", 250], ["d", 250]]);
    expect(revenue("position_based")).toEqual([["a", 400], ["b", 100], ["c", 100], ["d", 400]]);
    // Half-life of one day: each click weighs half the next one's (1 : 2 : 4 : 8).
    expect(revenue("time_decay", 1)).toEqual([["a", 67], ["b", 133], ["c", 267], ["d", 533]]);
  });

  it("credits each sale to the clicks before it, a sale before every click to the first click", () => {
    const clicks = [click(2, "a"), click(4, "b")];
    const sales = [{ at: new Date(1 * DAY), amount: 300 }, { at: new Date(3 * DAY), amount: 100 }, { at: new Date(4 * DAY), amount: 50 }];
    const credits = customerCredits("last_touch", clicks, sales);
    expect(credits.map((c) => [c.linkId, c.revenue])).toEqual([["a", 400], ["b", 50]]);
    expect(credits.map((c) => c.weight)).toEqual([400 / 450, 50 / 450]);
    // Two clicks on one link and campaign are one credit; another campaign on it is another.
    const grouped = customerCredits("linear", [click(1, "a", "x1", "spring"), click(2, "a", "x2", "spring"), click(3, "a", "x3", "fall")], [{ at: new Date(9 * DAY), amount: 10 }]);
    expect(grouped.map((c) => [c.campaignId, c.revenue])).toEqual([["spring", 7], ["fall", 3]]);
  });

  it("splits every amount in integers that sum to it, weights summing to 1, for every model", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ day: fc.integer({ min: 0, max: 40 }), link: fc.constantFrom("a", "b", "c") }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.record({ day: fc.integer({ min: 0, max: 40 }), amount: fc.nat(1_000_000) }), { maxLength: 8 }),
        fc.double({ min: 0.01, max: 60, noNaN: true }),
        (cs, ss, half) => {
          const clicks = cs.map((c, i) => click(c.day, c.link, `c${i}`));
          const sales = ss.map((s) => ({ at: new Date(s.day * DAY), amount: s.amount }));
          for (const model of MODELS) {
            const credits = customerCredits(model, clicks, sales, half);
            expect(credits.reduce((n, c) => n + c.revenue, 0)).toBe(sales.reduce((n, s) => n + s.amount, 0));
            expect(credits.reduce((n, c) => n + c.weight, 0)).toBeCloseTo(1, 9);
            for (const c of credits) expect(c.revenue).toBeGreaterThanOrEqual(0);
          }
        },
      ),
    );
    expect(splitAmount(10, [1 / 3, 1 / 3, 1 / 3])).toEqual([4, 3, 3]);
    expect(splitAmount(0, [0.5, 0.5])).toEqual([0, 0]);
  });
});
