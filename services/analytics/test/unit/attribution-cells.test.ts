import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClickTouch } from "../../src/attribution.js";
import { accumulateSale, customerSaleRows, dayOf, nonZeroDeltas, type AttributionDelta } from "../../src/attribution-cells.js";

const DAY = 86_400_000;
const click = (day: number, linkId: string, ref = `c${day}${linkId}`): ClickTouch => ({ at: new Date(day * DAY), ref, linkId, campaignId: null, source: null });
const sale = (day: number, amount: number, ref = `s${day}`) => ({ ref, at: new Date(day * DAY), amount });

describe("workspace attribution cells", () => {
  it("keeps the previous credit day on the first sale of each day crediting a key", () => {
    const rows = customerSaleRows([click(1, "a")], [sale(2, 10, "s1"), { ref: "s2", at: new Date(2 * DAY + 5), amount: 20 }, sale(5, 30, "s3")]);
    const points = (ref: string) => rows.get(ref)!.filter((r) => r.m === "linear" && r.d === "link").map((r) => [r.k, r.r, r.p]);
    expect(points("s1")).toEqual([["a", 10, null]]);
    expect(points("s2")).toEqual([["a", 20, undefined]]);
    expect(points("s3")).toEqual([["a", 30, dayOf(new Date(2 * DAY))]]);
  });

  it("credits nobody without clicks, and a sale before every click to the first click", () => {
    expect(customerSaleRows([], [sale(1, 10)]).get("s1")).toEqual([]);
    const rows = customerSaleRows([click(3, "b"), click(4, "c")], [sale(1, 10)]).get("s1")!;
    expect(rows.filter((r) => r.d === "link").map((r) => [r.m, r.k, r.r])).toEqual(
      ["first_touch", "last_touch", "linear", "position_based", "time_decay"].map((m) => [m, "b", 10]),
    );
  });

  it("counts a customer once in any range of days: first-time cells plus return cells before the start", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 12 }), fc.nat(30), fc.nat(30), (days, x, y) => {
        const [from, to] = [Math.min(x, y), Math.max(x, y)];
        const rows = customerSaleRows([click(0, "a")], days.map((d) => sale(d, 1, `s${d}`)));
        const cells = new Map<string, AttributionDelta>();
        for (const d of days) accumulateSale(cells, "ws", dayOf(new Date(d * DAY)), rows.get(`s${d}`)!, 1);
        const fromDay = dayOf(new Date(from * DAY));
        const toDay = dayOf(new Date(to * DAY));
        const inRange = (c: AttributionDelta) => c.fields["dim"] === "link" && c.fields["day"]! >= fromDay && c.fields["day"]! <= toDay;
        const counted = nonZeroDeltas(cells)
          .filter(inRange)
          .filter((c) => c.collection === "attribution_day_cells" || (c.collection === "attribution_return_cells" && c.fields["prev"]! < fromDay))
          .reduce((n, c) => n + (c.inc["linear.customers"] ?? 0), 0);
        expect(counted).toBe(days.some((d) => d >= from && d <= to) ? 1 : 0);
      }),
    );
  });
});
