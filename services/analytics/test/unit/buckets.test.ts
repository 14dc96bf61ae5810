import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dayKey, isoWeekKey, monthIndex, monthIndexOfKey, monthKey, monthKeyOfIndex } from "../../src/buckets.js";
import { parseIsoBound } from "../../src/dates.js";
import { splitPartialDay, splitRange } from "../../src/reads.js";

const d = (s: string) => new Date(`${s}T12:00:00Z`);

describe("bucket keys", () => {
  it.each([
    ["2020-12-31", "2020-W53"], // Thursday: 2020 has 53 weeks
    ["2021-01-03", "2020-W53"], // Sunday after
    ["2021-01-04", "2021-W01"],
    ["2024-12-30", "2025-W01"], // Monday belongs to next year's week 1
    ["2025-12-28", "2025-W52"],
    ["2025-12-29", "2026-W01"],
    ["2026-01-01", "2026-W01"],
    ["2026-04-01", "2026-W14"],
    ["2026-12-31", "2026-W53"],
    ["2027-01-01", "2026-W53"],
    ["2027-01-04", "2027-W01"],
  ])("ISO week of %s is %s", (day, week) => {
    expect(isoWeekKey(d(day))).toBe(week);
    expect(isoWeekKey(new Date(`${day}T00:00:00Z`))).toBe(week);
    expect(isoWeekKey(new Date(`${day}T23:59:59.999Z`))).toBe(week);
  });

  it("uses UTC, not the local zone", () => {
    expect(dayKey(new Date("2026-03-31T23:30:00-02:00"))).toBe("2026-04-01");
    expect(monthKey(new Date("2026-03-31T23:30:00-02:00"))).toBe("2026-04");
  });

  it("consecutive days change week exactly on Mondays, and weeks are 1..53", () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1990, 0, 1) / 86_400_000, max: Date.UTC(2100, 0, 1) / 86_400_000 }), (n) => {
        const today = new Date(n * 86_400_000);
        const tomorrow = new Date((n + 1) * 86_400_000);
        const changed = isoWeekKey(today) !== isoWeekKey(tomorrow);
        expect(changed).toBe(tomorrow.getUTCDay() === 1);
        const w = Number(isoWeekKey(today).slice(6));
        expect(w >= 1 && w <= 53).toBe(true);
      }),
    );
  });

  it("month indexes round-trip", () => {
    fc.assert(
      fc.property(fc.date({ min: new Date("1970-01-01"), max: new Date("2999-12-31"), noInvalidDate: true }), (at) => {
        expect(monthKeyOfIndex(monthIndex(at))).toBe(monthKey(at));
        expect(monthIndexOfKey(monthKey(at))).toBe(monthIndex(at));
      }),
    );
  });
});

describe("date bounds", () => {
  it("reads dates as whole days and date-times exactly", () => {
    expect(parseIsoBound("2026-04-01", "start")).toBe(Date.UTC(2026, 3, 1));
    expect(parseIsoBound("2026-04-01", "end")).toBe(Date.UTC(2026, 3, 2) - 1);
    expect(parseIsoBound("2026-04-01T10:00:00+02:00", "start")).toBe(Date.UTC(2026, 3, 1, 8));
    expect(parseIsoBound("2026-04-01T10:00:00.5Z", "end")).toBe(Date.UTC(2026, 3, 1, 10, 0, 0, 500));
    for (const bad of ["2026-02-30", "2026-13-01", "yesterday", "2026-04-01T25:00:00Z", "2026-04-01T10:00:00", "1712000000"]) {
      expect(parseIsoBound(bad, "start"), bad).toBeUndefined();
    }
  });

  it("splits a range into whole days and partial edge days that cover it exactly", () => {
    const DAY = 86_400_000;
    const base = Date.UTC(2026, 0, 1);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 * DAY }), fc.integer({ min: 0, max: 10 * DAY }), fc.integer({ min: 0, max: 12 * DAY }), (x, y, probe) => {
        const start = base + Math.min(x, y);
        const end = base + Math.max(x, y);
        const { fromDay, toDay, partial } = splitRange({ start, end });
        const t = base + probe;
        const inWhole = dayKey(new Date(t)) >= fromDay && dayKey(new Date(t)) <= toDay;
        const inPartial = partial.filter(([a, b]) => t >= a && t <= b).length;
        expect(Number(inWhole) + inPartial).toBe(t >= start && t <= end ? 1 : 0);
      }),
    );
  });

  it("splits a partial day into whole hours and at most two sub-hour edges that cover it exactly", () => {
    const HOUR = 3_600_000;
    const day = Date.UTC(2026, 0, 5);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 24 * HOUR - 1 }), fc.integer({ min: 0, max: 24 * HOUR - 1 }), fc.integer({ min: -HOUR, max: 25 * HOUR }), (x, y, probe) => {
        // Edges often on an hour or a millisecond off one.
        const snap = (v: number) => (v % 7 === 0 ? v - (v % HOUR) : v % 7 === 1 ? v - (v % HOUR) + HOUR - 1 : v);
        const a = day + Math.min(snap(x), snap(y));
        const b = day + Math.max(snap(x), snap(y));
        const { hours, edges } = splitPartialDay(a, b);
        expect(edges.length).toBeLessThanOrEqual(2);
        // Each edge lies within one hour, unless it is the whole interval without a whole hour (then at most two hours).
        for (const [ea, eb] of edges) expect(Math.floor(eb / HOUR) - Math.floor(ea / HOUR)).toBeLessThanOrEqual(hours === null ? 1 : 0);
        const t = day + probe;
        const hour = new Date(t).toISOString().slice(0, 13);
        const inHours = hours !== null && hour >= hours[0] && hour <= hours[1] ? 1 : 0;
        const inEdges = edges.filter(([ea, eb]) => t >= ea && t <= eb).length;
        expect(inHours + inEdges).toBe(t >= a && t <= b ? 1 : 0);
      }),
    );
    expect(splitPartialDay(Date.parse("2026-01-05T12:00:00Z"), Date.parse("2026-01-05T23:59:59.998Z"))).toEqual({
      hours: ["2026-01-05T12", "2026-01-05T22"],
      edges: [[Date.parse("2026-01-05T23:00:00Z"), Date.parse("2026-01-05T23:59:59.998Z")]],
    });
    expect(splitPartialDay(Date.parse("2026-01-05T12:30:00Z"), Date.parse("2026-01-05T13:20:00Z"))).toEqual({
      hours: null,
      edges: [[Date.parse("2026-01-05T12:30:00Z"), Date.parse("2026-01-05T13:20:00Z")]],
    });
  });
});
