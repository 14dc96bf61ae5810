/**
 * Cohort and LTV answers from the rollup cells. Without a date range a cohort question reads
 * the all-time cells of one dimension; with one it sums the day cells of the whole days in
 * range, and for a partial boundary day (an edge with a time of day) the hour cells of the
 * whole hours inside it. Only the sub-hour remainder at each edge — at most two partial hours
 * per range edge — is answered customer by customer: the member lists of those hours, each
 * candidate checked against its totals. So the documents read grow with the answer (keys ×
 * days, (campaign, source) pairs × hours) plus the customers anchored in the edge hours; a
 * "last 24 hours" range no longer reads every customer of the day's busy hours.
 */
import { dayKey, dayStartMs, DAY_MS, isoWeekKey, monthIndex, monthKeyOfIndex } from "./buckets.js";
import type { TimeRange } from "./dates.js";
import type { AnalyticsRepository, CohortCellDoc, HourCellDoc, TotalsDoc } from "./repository.js";
import { cohortAnchor, cohortValues, contributions, dayCellId, type CohortDimension, type CohortValues, type DayDimension } from "./totals.js";
import { stateOf } from "./rollups.js";

export interface CohortRow extends CohortValues {
  cohort: string | null;
  conversionRate: number;
}

export interface LtvRow {
  cohort: string;
  customers: number;
  revenue: number[];
  cumulativeRevenue: number[];
  ltv: number[];
}

const MIN_DAY = "0000-01-01";
const MAX_DAY = "9999-12-31";

function addInto(m: Map<string | null, CohortValues>, key: string | null, v: CohortValues): void {
  const cur = m.get(key) ?? { customers: 0, leads: 0, sales: 0, revenue: 0, customersWithSale: 0 };
  m.set(key, {
    customers: cur.customers + v.customers,
    leads: cur.leads + v.leads,
    sales: cur.sales + v.sales,
    revenue: cur.revenue + v.revenue,
    customersWithSale: cur.customersWithSale + v.customersWithSale,
  });
}

const valuesOf = (c: CohortCellDoc | HourCellDoc): CohortValues => ({ customers: c.customers, leads: c.leads, sales: c.sales, revenue: c.revenue, customersWithSale: c.customersWithSale });

/** Rows sorted by cohort key, customers-less rows dropped, the null cohort last. */
export function toRows(m: Map<string | null, CohortValues>): CohortRow[] {
  return [...m]
    .filter(([, v]) => v.customers > 0)
    .sort(([a], [b]) => (a === b ? 0 : a === null ? 1 : b === null ? -1 : a < b ? -1 : 1))
    .map(([cohort, v]) => ({ cohort, ...v, conversionRate: v.customers === 0 ? 0 : v.customersWithSale / v.customers }));
}

/** The whole days inside a range and the partial days at its edges. */
export function splitRange(r: TimeRange): { fromDay: string; toDay: string; partial: Array<[number, number]> } {
  const partial: Array<[number, number]> = [];
  let fromDay = MIN_DAY;
  let toDay = MAX_DAY;
  const S = r.start;
  const E = r.end;
  if (S !== undefined) {
    const d = dayKey(new Date(S));
    const start = dayStartMs(d);
    if (S === start) fromDay = d;
    else {
      fromDay = dayKey(new Date(start + DAY_MS));
      partial.push([S, Math.min(E ?? Infinity, start + DAY_MS - 1)]);
    }
  }
  if (E !== undefined) {
    const d = dayKey(new Date(E));
    const start = dayStartMs(d);
    if (E === start + DAY_MS - 1) toDay = d;
    else {
      toDay = dayKey(new Date(start - DAY_MS));
      const from = Math.max(S ?? -Infinity, start);
      // The start's partial day already covers it when both edges fall on the same day.
      if (!(S !== undefined && dayKey(new Date(S)) === d && S !== dayStartMs(d))) partial.push([from, E]);
    }
  }
  return { fromDay, toDay, partial: partial.filter(([a, b]) => a <= b) };
}

const HOUR_MS = 3_600_000;
const hourKey = (ms: number) => new Date(ms).toISOString().slice(0, 13);

/**
 * A partial interval [a, b] (within one day) as the whole hours inside it, as an inclusive
 * range of hour keys (null when none), and the sub-hour remainders at its ends: at most two,
 * one partial hour each — or [a, b] itself when it holds no whole hour (then at most two
 * partial hours, e.g. 12:30–13:20).
 */
export function splitPartialDay(a: number, b: number): { hours: [string, string] | null; edges: Array<[number, number]> } {
  const firstWhole = Math.ceil(a / HOUR_MS) * HOUR_MS;
  const endWhole = Math.floor((b + 1) / HOUR_MS) * HOUR_MS; // exclusive
  if (firstWhole >= endWhole) return { hours: null, edges: [[a, b]] };
  const edges: Array<[number, number]> = [];
  if (a < firstWhole) edges.push([a, firstWhole - 1]);
  if (endWhole <= b) edges.push([endWhole, b]);
  return { hours: [hourKey(firstWhole), hourKey(endWhole - HOUR_MS)], edges };
}

/** [a, b] cut at hour boundaries: one piece per hour it touches. */
function piecesByHour(a: number, b: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let from = a; from <= b; ) {
    const to = Math.min(b, Math.floor(from / HOUR_MS) * HOUR_MS + HOUR_MS - 1);
    out.push([from, to]);
    from = to + 1;
  }
  return out;
}

const scaled = (v: CohortValues, k: number): CohortValues => ({
  customers: k * v.customers,
  leads: k * v.leads,
  sales: k * v.sales,
  revenue: k * v.revenue,
  customersWithSale: k * v.customersWithSale,
});

/** The key an hour cell's customers have under `dim`: week and month from the hour, campaign and source from the cell. */
function hourCellKey(c: HourCellDoc, dim: CohortDimension): string | null {
  if (dim === "week") return isoWeekKey(new Date(Date.parse(`${c.hour}:00:00Z`)));
  if (dim === "month") return c.hour.slice(0, 7);
  return dim === "campaign" ? c.campaign : c.source;
}

export async function cohorts(repo: AnalyticsRepository, ws: string, dim: CohortDimension, range: TimeRange): Promise<CohortRow[]> {
  const m = new Map<string | null, CohortValues>();
  if (range.start === undefined && range.end === undefined) {
    for (const c of await repo.cohortCellsOf(ws, dim)) addInto(m, c.key, valuesOf(c));
    return toRows(m);
  }
  const { fromDay, toDay, partial } = splitRange(range);
  const dayDim = dim === "week" || dim === "month" ? "day" : dim;
  // A partial interval lies within one day: its whole hours come from the hour cells (one query
  // per interval). A partial hour at its ends is read from the member list of its hour, each
  // candidate checked against its totals: the members anchored inside the piece when it is at
  // most half the hour, else the hour's cell less the members anchored in the rest of the hour —
  // so a crowded hour cut near its end costs its few members outside the range, not all of them.
  const hourRanges: Array<[string, string]> = [];
  const added: Array<[number, number]> = [];
  const subtracted: Array<[number, number]> = [];
  for (const [a, b] of partial) {
    const split = splitPartialDay(a, b);
    if (split.hours !== null) hourRanges.push(split.hours);
    for (const [from, to] of split.edges.flatMap(([x, y]) => piecesByHour(x, y))) {
      if (to - from + 1 <= HOUR_MS / 2) {
        added.push([from, to]);
        continue;
      }
      const h0 = Math.floor(from / HOUR_MS) * HOUR_MS;
      hourRanges.push([hourKey(h0), hourKey(h0)]);
      if (from > h0) subtracted.push([h0, from - 1]);
      if (to < h0 + HOUR_MS - 1) subtracted.push([to + 1, h0 + HOUR_MS - 1]);
    }
  }
  const edges = [...added, ...subtracted];
  const [dayCells, hourCells, edgeTotals] = await Promise.all([
    fromDay <= toDay ? dayCellsInRange(repo, ws, dayDim, fromDay, toDay) : Promise.resolve([]),
    Promise.all(hourRanges.map(([from, to]) => repo.hourCellsBetween(ws, from, to))),
    edges.length === 0 ? Promise.resolve(new Map<string, TotalsDoc>()) : repo.membersBetween(ws, edges).then((ids) => repo.findTotals(ws, ids)),
  ]);
  for (const c of dayCells) {
    const key = dim === "week" ? isoWeekKey(new Date(dayStartMs(c.day!))) : dim === "month" ? c.day!.slice(0, 7) : c.key;
    addInto(m, key, valuesOf(c));
  }
  for (const c of hourCells.flat()) addInto(m, hourCellKey(c, dim), valuesOf(c));
  for (const t of edgeTotals.values()) {
    const s = stateOf(t);
    const at = cohortAnchor(s)?.getTime();
    if (at === undefined) continue;
    const within = (list: Array<[number, number]>) => list.some(([a, b]) => at >= a && at <= b);
    const sign = within(added) ? 1 : within(subtracted) ? -1 : 0;
    if (sign === 0) continue;
    const cell = contributions(ws, s).find((c) => c.collection === "cohort_cells" && c.fields["dim"] === dim);
    if (cell !== undefined) addInto(m, cell.fields["key"] as string | null, scaled(cohortValues(s), sign));
  }
  return toRows(m);
}

/** Above this many candidate cells a range read filters by day instead of naming each cell. */
const MAX_NAMED_DAY_CELLS = 20_000;

/**
 * The day cells of one dimension in [fromDay, toDay]. A day cell can only hold customers when
 * the all-time cells hold them too (same first touch), so the candidates are named from those:
 * the days of the months that have customers, times the dimension's keys that have customers,
 * and read by `_id` — a read proportional to the answer on any backend. Very wide ranges over
 * many keys fall back to the (workspace, dim, day) index.
 */
async function dayCellsInRange(repo: AnalyticsRepository, ws: string, dim: DayDimension, fromDay: string, toDay: string): Promise<CohortCellDoc[]> {
  const [months, keyCells] = await Promise.all([repo.cohortCellsOf(ws, "month"), dim === "day" ? Promise.resolve(null) : repo.cohortCellsOf(ws, dim)]);
  const keys = keyCells === null ? [null] : keyCells.filter((c) => c.customers > 0).map((c) => c.key);
  const days: string[] = [];
  for (const m of months) {
    if (m.customers <= 0 || m.key === null) continue;
    for (let t = dayStartMs(`${m.key}-01`); dayKey(new Date(t)).startsWith(m.key); t += DAY_MS) {
      const d = dayKey(new Date(t));
      if (d >= fromDay && d <= toDay) days.push(d);
    }
  }
  if (days.length * keys.length > MAX_NAMED_DAY_CELLS) return repo.dayCellsOf(ws, dim, fromDay, toDay);
  return repo.dayCellsByIds(days.flatMap((d) => keys.map((k) => dayCellId(ws, dim, d, k))));
}

export async function ltvCohorts(repo: AnalyticsRepository, ws: string, months: number, now: Date): Promise<LtvRow[]> {
  const current = monthIndex(now);
  const keys = Array.from({ length: months }, (_, i) => monthKeyOfIndex(current - months + 1 + i));
  const [cells, ltv] = await Promise.all([repo.monthCohortCells(ws, keys), repo.ltvCellsOf(ws, keys)]);
  const customersOf = new Map(cells.map((c) => [c.key, c.customers]));
  return keys.map((cohort, i) => {
    const length = months - i;
    const revenue = new Array<number>(length).fill(0);
    for (const c of ltv) if (c.cohortMonth === cohort && c.offset >= 0 && c.offset < length) revenue[c.offset]! += c.revenue;
    const customers = customersOf.get(cohort) ?? 0;
    const cumulativeRevenue: number[] = [];
    let sum = 0;
    for (const r of revenue) cumulativeRevenue.push((sum += r));
    return { cohort, customers, revenue, cumulativeRevenue, ltv: cumulativeRevenue.map((c) => (customers === 0 ? 0 : c / customers)) };
  });
}
