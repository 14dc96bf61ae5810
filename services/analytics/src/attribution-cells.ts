/**
 * The workspace attribution report's rollups (pure): what each sale of a customer credits, per
 * model and dimension, and the cells those credits feed.
 *
 * A sale's credits are those of the per-customer models (attribution.ts: the clicks at or
 * before it, else the customer's first click; integer parts by the largest remainder, so the
 * parts of each sale sum to its amount), grouped by link, campaign or source. `time_decay` uses
 * the default half-life (7 days): the report takes no half-life, so it can be kept at write time.
 * A key is credited by a sale when one of its clicks has a weight above 0 (or a part above 0).
 *
 * Cells (`$inc` upserts on deterministic ids), one document per dimension and key holding every
 * model's figures side by side (`{ linear: { revenue, sales, customers }, … }`): a sale moves one
 * document per key any model credits, not one per model and key — up to five times fewer of the
 * upserts that are most of the write path:
 * - all-time `attribution_cells` (dim, key): revenue, sales, customers;
 * - `attribution_day_cells` (dim, sale day, key): revenue, sales, and the customers whose first
 *   credit to the key fell on that day;
 * - `attribution_return_cells` (dim, sale day, previous day, key): customers who credited the
 *   key on that day and, before it, last on the previous day.
 *
 * Why the return cells: distinct customers do not add up over days, yet a range must count each
 * customer once. For one customer and key, let d1 < d2 < … be the days of its crediting sales and
 * give each day di the point (di, d(i−1)). The customer credited the key within [start, end]
 * exactly when one of its points has di in the range and d(i−1) before `start` (or none): the
 * first such day in the range, and only that one. So a range's distinct customers are the
 * day cells' first-time customers of its days plus the return cells of its days whose previous
 * day is before `start` — a sum of cells, exact for any range of whole days. The point of a day
 * is kept on the first crediting sale of that day (time, then `_id`).
 */
import { modelWeights, splitAmount, MODELS, DEFAULT_HALF_LIFE_DAYS, type ClickTouch, type Model } from "./attribution.js";
import { touchBefore } from "./totals.js";

export const DIMENSIONS = ["link", "campaign", "source"] as const;
export type AttributionDimension = (typeof DIMENSIONS)[number];

/** What a sale credits one key under one model and dimension. */
export interface SaleRow {
  m: Model;
  d: AttributionDimension;
  k: string | null;
  /** Minor units. */
  r: number;
  /** Only on the day's first sale crediting the key: the previous day it was credited by the customer, or null (its first). */
  p?: string | null;
}

export interface SaleTouch {
  readonly ref: string;
  readonly at: Date;
  readonly amount: number;
}

const keyOf = (c: ClickTouch, d: AttributionDimension): string | null => (d === "link" ? c.linkId : d === "campaign" ? c.campaignId : c.source);
export const dayOf = (at: Date): string => at.toISOString().slice(0, 10);

/** Every sale's rows (by sale ref) for a customer's clicks and sales; no rows without clicks. */
export function customerSaleRows(clicksIn: readonly ClickTouch[], salesIn: readonly SaleTouch[]): Map<string, SaleRow[]> {
  const out = new Map<string, SaleRow[]>(salesIn.map((s) => [s.ref, []]));
  if (clicksIn.length === 0) return out;
  const clicks = [...clicksIn].sort((a, b) => (touchBefore(a, b) ? -1 : touchBefore(b, a) ? 1 : 0));
  const sales = [...salesIn].sort((a, b) => (touchBefore(a, b) ? -1 : touchBefore(b, a) ? 1 : 0));
  const halfLifeMs = DEFAULT_HALF_LIFE_DAYS * 86_400_000;
  // Per (model, dim, key): the last day a sale credited it, for the points.
  const lastDay = new Map<string, string>();
  for (const s of sales) {
    const t = s.at.getTime();
    let before = clicks.filter((c) => c.at.getTime() <= t);
    if (before.length === 0) before = [clicks[0]!];
    const rows = out.get(s.ref)!;
    const day = dayOf(s.at);
    for (const m of MODELS) {
      const weights = modelWeights(m, before, halfLifeMs);
      const parts = splitAmount(s.amount, weights);
      for (const d of DIMENSIONS) {
        const byKey = new Map<string | null, SaleRow>();
        before.forEach((c, i) => {
          if (!(weights[i]! > 0 || parts[i]! > 0)) return;
          const k = keyOf(c, d);
          const row = byKey.get(k) ?? { m, d, k, r: 0 };
          row.r += parts[i]!;
          byKey.set(k, row);
        });
        for (const row of byKey.values()) {
          const id = JSON.stringify([m, d, row.k]);
          const last = lastDay.get(id);
          if (last !== day) {
            row.p = last ?? null;
            lastDay.set(id, day);
          }
          rows.push(row);
        }
      }
    }
  }
  return out;
}

export type AttributionCollection = "attribution_cells" | "attribution_day_cells" | "attribution_return_cells";

/** A cell's figures under one model. */
export interface ModelFigures {
  revenue?: number;
  sales?: number;
  customers?: number;
}

export interface AttributionDelta {
  collection: AttributionCollection;
  id: string;
  fields: Record<string, string | null>;
  /** `$inc` paths "<model>.<figure>" (model names are fixed identifiers, never user input). */
  inc: Record<string, number>;
}

const enc = (k: string | null) => (k === null ? "n" : `k:${k}`);
export const allTimeCellId = (ws: string, d: string, k: string | null) => `${ws}|${d}|${enc(k)}`;
export const dayCellId = (ws: string, d: string, day: string, k: string | null) => `${ws}|${d}|${day}|${enc(k)}`;
export const returnCellId = (ws: string, d: string, day: string, prev: string, k: string | null) => `${ws}|${d}|${day}|${prev}|${enc(k)}`;

/** Adds `sign` × the cells of one sale's rows (sale day `day`) into `into`. */
export function accumulateSale(into: Map<string, AttributionDelta>, ws: string, day: string, rows: readonly SaleRow[], sign: 1 | -1): void {
  const add = (collection: AttributionCollection, id: string, fields: AttributionDelta["fields"], model: string, figures: Required<ModelFigures> | Pick<ModelFigures, "customers">) => {
    let d = into.get(id);
    if (d === undefined) {
      d = { collection, id, fields, inc: {} };
      into.set(id, d);
    }
    for (const [k, v] of Object.entries(figures)) {
      const path = `${model}.${k}`;
      d.inc[path] = (d.inc[path] ?? 0) + sign * v;
    }
  };
  for (const row of rows) {
    const base = { workspaceId: ws, dim: row.d, key: row.k };
    const first = row.p === null ? 1 : 0;
    add("attribution_cells", allTimeCellId(ws, row.d, row.k), base, row.m, { revenue: row.r, sales: 1, customers: first });
    add("attribution_day_cells", dayCellId(ws, row.d, day, row.k), { ...base, day }, row.m, { revenue: row.r, sales: 1, customers: first });
    if (typeof row.p === "string") add("attribution_return_cells", returnCellId(ws, row.d, day, row.p, row.k), { ...base, day, prev: row.p }, row.m, { customers: 1 });
  }
}

/** The deltas that change something, each without its zero increments. */
export function nonZeroDeltas(m: Map<string, AttributionDelta>): AttributionDelta[] {
  const out: AttributionDelta[] = [];
  for (const d of m.values()) {
    const inc = Object.fromEntries(Object.entries(d.inc).filter(([, v]) => v !== 0));
    if (Object.keys(inc).length > 0) out.push({ ...d, inc });
  }
  return out;
}

/** Whether two row lists are the same (order included: both come from customerSaleRows). */
export function sameRows(a: readonly SaleRow[], b: readonly SaleRow[]): boolean {
  return a.length === b.length && a.every((r, i) => r.m === b[i]!.m && r.d === b[i]!.d && r.k === b[i]!.k && r.r === b[i]!.r && r.p === b[i]!.p);
}
