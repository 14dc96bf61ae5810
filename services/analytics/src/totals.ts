/**
 * One customer's totals as a commutative fold over its events: counts and sums add up, first
 * and last touch are the minimum and maximum by (event time, event _id). Folding the same set
 * of events in any order gives the same state, which is what makes late and out-of-order
 * events end up exactly as if they had arrived in time order.
 *
 * `contributions` maps a state to the rollup cells it feeds; moving a customer between
 * cohorts is then `diffCells(contributions(old), contributions(new))` applied with $inc.
 */
import { dayKey, isoWeekKey, monthIndex, monthIndexOfKey, monthKey } from "./buckets.js";

export type EventType = "click" | "lead" | "sale" | "custom";

/** The fields of a stored event the totals read. */
export interface FoldableEvent {
  readonly _id: string;
  readonly type: EventType;
  readonly at: Date;
  readonly clickId?: string | null | undefined;
  readonly linkId?: string | null | undefined;
  readonly campaignId?: string | null | undefined;
  readonly source?: string | null | undefined;
  readonly amount?: number | null | undefined;
}

export interface Touch {
  type: EventType;
  at: Date;
  /** The event's _id: breaks ties between events of the same time. */
  ref: string;
  clickId: string | null;
  linkId: string | null;
  campaignId: string | null;
  source: string | null;
}

export interface TouchCount {
  id: string;
  touches: number;
  firstAt: Date;
  lastAt: Date;
}

export interface TotalsState {
  leads: number;
  sales: number;
  revenue: number;
  clicks: number;
  customEvents: number;
  firstTouch: Touch | null;
  lastTouch: Touch | null;
  /** Earliest click: the customer's campaign and source come from it. */
  firstClick: Touch | null;
  firstSaleAt: Date | null;
  links: TouchCount[];
  campaigns: TouchCount[];
  sources: TouchCount[];
  /** Revenue by sale month ("2026-04"), for LTV. */
  revenueByMonth: Array<{ month: string; revenue: number }>;
  /** When the customer was created, if the customers service told (RegisterCustomer). */
  createdAt: Date | null;
}

export function emptyTotals(): TotalsState {
  return {
    leads: 0,
    sales: 0,
    revenue: 0,
    clicks: 0,
    customEvents: 0,
    firstTouch: null,
    lastTouch: null,
    firstClick: null,
    firstSaleAt: null,
    links: [],
    campaigns: [],
    sources: [],
    revenueByMonth: [],
    createdAt: null,
  };
}

/** a comes before b: by time, then by _id. */
export function touchBefore(a: { at: Date; ref: string }, b: { at: Date; ref: string }): boolean {
  const d = a.at.getTime() - b.at.getTime();
  return d < 0 || (d === 0 && a.ref < b.ref);
}

function touchOf(e: FoldableEvent): Touch {
  const click = e.type === "click";
  return {
    type: e.type,
    at: e.at,
    ref: e._id,
    clickId: e.clickId ?? null,
    // Only a click carries its link, campaign and source; other events name at most a click id.
    linkId: click ? (e.linkId ?? null) : null,
    campaignId: click ? (e.campaignId ?? null) : null,
    source: click ? (e.source ?? null) : null,
  };
}

function bump(list: TouchCount[], id: string | null | undefined, at: Date): TouchCount[] {
  if (id === null || id === undefined) return list;
  const i = list.findIndex((t) => t.id === id);
  if (i < 0) return [...list, { id, touches: 1, firstAt: at, lastAt: at }];
  const t = list[i]!;
  const next = [...list];
  next[i] = {
    id,
    touches: t.touches + 1,
    firstAt: at.getTime() < t.firstAt.getTime() ? at : t.firstAt,
    lastAt: at.getTime() > t.lastAt.getTime() ? at : t.lastAt,
  };
  return next;
}

/** The state after one more event. Pure; commutative over events. */
export function foldEvent(s: TotalsState, e: FoldableEvent): TotalsState {
  const touch = touchOf(e);
  const next: TotalsState = {
    ...s,
    firstTouch: s.firstTouch === null || touchBefore(touch, s.firstTouch) ? touch : s.firstTouch,
    lastTouch: s.lastTouch === null || touchBefore(s.lastTouch, touch) ? touch : s.lastTouch,
  };
  switch (e.type) {
    case "click":
      next.clicks += 1;
      if (s.firstClick === null || touchBefore(touch, s.firstClick)) next.firstClick = touch;
      next.links = bump(s.links, e.linkId, e.at);
      next.campaigns = bump(s.campaigns, e.campaignId, e.at);
      next.sources = bump(s.sources, e.source, e.at);
      break;
    case "lead":
      next.leads += 1;
      break;
    case "custom":
      next.customEvents += 1;
      break;
    case "sale": {
      const amount = e.amount ?? 0;
      next.sales += 1;
      next.revenue += amount;
      if (s.firstSaleAt === null || e.at.getTime() < s.firstSaleAt.getTime()) next.firstSaleAt = e.at;
      const month = monthKey(e.at);
      const i = s.revenueByMonth.findIndex((m) => m.month === month);
      next.revenueByMonth =
        i < 0 ? [...s.revenueByMonth, { month, revenue: amount }] : s.revenueByMonth.map((m, j) => (j === i ? { month, revenue: m.revenue + amount } : m));
      break;
    }
  }
  return next;
}

export function foldEvents(s: TotalsState, events: Iterable<FoldableEvent>): TotalsState {
  let out = s;
  for (const e of events) out = foldEvent(out, e);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rollup cells

export type CohortDimension = "week" | "month" | "campaign" | "source";
export type DayDimension = "day" | "campaign" | "source";

export interface CohortValues {
  customers: number;
  leads: number;
  sales: number;
  revenue: number;
  customersWithSale: number;
}

/** A rollup cell: where it lives, its identity fields, and the amounts it holds. */
export interface Cell {
  readonly collection: "cohort_cells" | "cohort_day_cells" | "cohort_hour_cells" | "ltv_cells";
  readonly id: string;
  readonly fields: Readonly<Record<string, string | number | null>>;
  readonly values: Readonly<Record<string, number>>;
}

const keyPart = (key: string | null) => (key === null ? "n" : `k:${key}`);

export const cohortCellId = (ws: string, dim: CohortDimension, key: string | null) => `${ws}|${dim}|${keyPart(key)}`;
export const dayCellId = (ws: string, dim: DayDimension, day: string, key: string | null) => `${ws}|${dim}|${day}|${keyPart(key)}`;
export const ltvCellId = (ws: string, cohortMonth: string, offset: number) => `${ws}|${cohortMonth}|${offset}`;
/**
 * A key followed by another one: its length goes first, so a "|" inside it cannot end it early
 * ("a|k1:b" + null and "a" + "b|n" stay apart); null stays "n", apart from the string "null".
 */
const leadingKeyPart = (key: string | null) => (key === null ? "n" : `k${key.length}:${key}`);
/** The cell of one anchor hour ("2026-01-05T13", UTC) and one (campaign, source) pair. */
export const hourCellId = (ws: string, hour: string, campaign: string | null, source: string | null) => `${ws}|hour|${hour}|${leadingKeyPart(campaign)}|${keyPart(source)}`;

/** What places a customer in cohorts: its first touch, or its creation time when it has no touchpoint. */
export function cohortAnchor(s: TotalsState): Date | null {
  return s.firstTouch?.at ?? s.createdAt;
}

/** "<ISO time>|<ref>": how member lists store a time with what it refers to. */
export function timeEntry(at: Date, ref: string): string {
  return `${at.toISOString()}|${ref}`;
}

export function parseTimeEntry(entry: string): { at: Date; ref: string } {
  const bar = entry.indexOf("|");
  return { at: new Date(entry.slice(0, bar)), ref: entry.slice(bar + 1) };
}

/** Where a customer stands in the member list of its anchor's hour (`cohort_members`), or null. */
export interface AnchorMember {
  /** "2026-01-05T13" (UTC) */
  hour: string;
  /** "<anchor ISO time>|<customerId>" */
  entry: string;
}

export function anchorMember(customerId: string, s: TotalsState): AnchorMember | null {
  const at = cohortAnchor(s);
  if (at === null) return null;
  return { hour: at.toISOString().slice(0, 13), entry: timeEntry(at, customerId) };
}

export function cohortValues(s: TotalsState): CohortValues {
  return { customers: 1, leads: s.leads, sales: s.sales, revenue: s.revenue, customersWithSale: s.sales > 0 ? 1 : 0 };
}

/**
 * The cells a customer feeds: one cohort cell per dimension (all time), one day cell per
 * day-keyed dimension (for start/end filters), one hour cell (for the whole hours of a partial
 * boundary day), and one LTV cell per month with revenue, all keyed by the cohort anchor. The
 * hour cell carries campaign and source together rather than one cell per dimension: a read
 * of a few hours groups them by either, and a write pays one upsert for it instead of three.
 * A customer with neither a touchpoint nor a known creation time feeds nothing.
 */
export function contributions(ws: string, s: TotalsState): Cell[] {
  const at = cohortAnchor(s);
  if (at === null) return [];
  const values = cohortValues(s) as unknown as Record<string, number>;
  const day = dayKey(at);
  const campaign = s.firstClick?.campaignId ?? null;
  const source = s.firstClick?.source ?? null;
  const cohortKeys: Array<[CohortDimension, string | null]> = [
    ["week", isoWeekKey(at)],
    ["month", monthKey(at)],
    ["campaign", campaign],
    ["source", source],
  ];
  const cells: Cell[] = cohortKeys.map(([dim, key]) => ({
    collection: "cohort_cells",
    id: cohortCellId(ws, dim, key),
    fields: { workspaceId: ws, dim, key },
    values,
  }));
  const dayKeys: Array<[DayDimension, string | null]> = [
    ["day", null],
    ["campaign", campaign],
    ["source", source],
  ];
  for (const [dim, key] of dayKeys) {
    cells.push({ collection: "cohort_day_cells", id: dayCellId(ws, dim, day, key), fields: { workspaceId: ws, dim, day, key }, values });
  }
  const hour = at.toISOString().slice(0, 13);
  cells.push({ collection: "cohort_hour_cells", id: hourCellId(ws, hour, campaign, source), fields: { workspaceId: ws, hour, campaign, source }, values });
  const cohortMonth = monthKey(at);
  const base = monthIndexOfKey(cohortMonth);
  for (const m of s.revenueByMonth) {
    const offset = monthIndexOfKey(m.month) - base;
    cells.push({ collection: "ltv_cells", id: ltvCellId(ws, cohortMonth, offset), fields: { workspaceId: ws, cohortMonth, offset }, values: { revenue: m.revenue } });
  }
  return cells;
}

/** A cell increment: the difference between two sets of contributions. */
export interface CellDelta {
  readonly collection: Cell["collection"];
  readonly id: string;
  readonly fields: Cell["fields"];
  readonly inc: Record<string, number>;
}

/** Adds `sign` × each cell into `into` (keyed by cell id). */
export function accumulate(into: Map<string, CellDelta>, cells: readonly Cell[], sign: 1 | -1): void {
  for (const c of cells) {
    let d = into.get(c.id);
    if (d === undefined) {
      d = { collection: c.collection, id: c.id, fields: c.fields, inc: {} };
      into.set(c.id, d);
    }
    for (const [k, v] of Object.entries(c.values)) d.inc[k] = (d.inc[k] ?? 0) + sign * v;
  }
}

/** Drops deltas that change nothing. */
export function nonZero(deltas: Map<string, CellDelta>): CellDelta[] {
  return [...deltas.values()].filter((d) => Object.values(d.inc).some((v) => v !== 0));
}

/** The increments that turn a customer's old contribution into its new one. */
export function diffCells(ws: string, before: TotalsState, after: TotalsState): CellDelta[] {
  const m = new Map<string, CellDelta>();
  accumulate(m, contributions(ws, before), -1);
  accumulate(m, contributions(ws, after), 1);
  return nonZero(m);
}

/** monthIndex re-exported for callers computing LTV windows. */
export { monthIndex };
