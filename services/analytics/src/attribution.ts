/**
 * Multi-touch attribution of one customer's revenue to its clicks (pure; the REST contract's
 * "Attribution models").
 *
 * Each sale is credited on its own, to the clicks that came before it (at or before its time;
 * clicks ordered by time, then event `_id`): `first_touch` and `last_touch` give it all to the
 * first or the last of them, `linear` splits it evenly, `position_based` gives 40 % to the first,
 * 40 % to the last and spreads 20 % over the ones between (one click: all; two: half each), and
 * `time_decay` weighs a click by 2^(−age / half-life), its age being the time from the click to
 * the sale. A sale that came before every click of the customer (a click tracked later) is
 * credited to the customer's first click, so the credits always add up to all of its revenue.
 * The amount of each sale is split in integer minor units by the largest remainder (ties to the
 * earlier click), so each sale's parts sum exactly to it and the customer's to its revenue.
 *
 * Because credits are computed from the customer's stored events whenever they are asked for, a
 * late click changes the credits of the sales after it exactly as if it had arrived in time.
 */
import { touchBefore } from "./totals.js";

export const MODELS = ["first_touch", "last_touch", "linear", "position_based", "time_decay"] as const;
export type Model = (typeof MODELS)[number];
export const DEFAULT_HALF_LIFE_DAYS = 7;

export interface ClickTouch {
  readonly at: Date;
  /** The click's event `_id`: orders clicks of the same instant. */
  readonly ref: string;
  readonly linkId: string | null;
  readonly campaignId: string | null;
  readonly source: string | null;
}

export interface SaleTouch {
  readonly at: Date;
  readonly amount: number;
}

export interface Credit {
  linkId: string | null;
  campaignId: string | null;
  source: string | null;
  weight: number;
  revenue: number;
}

/**
 * The weights of a sale's clicks (ordered, non-empty: those at or before it); they sum to 1.
 * time_decay needs no sale time: 2^(−(sale − click) / half-life), normalized, is the same as
 * 2^(−(newest click − click) / half-life), normalized.
 */
export function modelWeights(model: Model, clicks: readonly ClickTouch[], halfLifeMs: number): number[] {
  const n = clicks.length;
  switch (model) {
    case "first_touch":
      return clicks.map((_, i) => (i === 0 ? 1 : 0));
    case "last_touch":
      return clicks.map((_, i) => (i === n - 1 ? 1 : 0));
    case "linear":
      return clicks.map(() => 1 / n);
    case "position_based":
      if (n === 1) return [1];
      if (n === 2) return [0.5, 0.5];
      return clicks.map((_, i) => (i === 0 || i === n - 1 ? 0.4 : 0.2 / (n - 2)));
    case "time_decay": {
      // Relative to the newest click, so that very old clicks underflow to 0, never all of them.
      const newest = clicks[n - 1]!.at.getTime();
      const raw = clicks.map((c) => 2 ** (-(newest - c.at.getTime()) / halfLifeMs));
      const sum = raw.reduce((a, b) => a + b, 0);
      return raw.map((r) => r / sum);
    }
  }
}

/** Splits `amount` in integers proportional to `weights` (summing to 1): largest remainder, ties to the earlier. */
export function splitAmount(amount: number, weights: readonly number[]): number[] {
  const exact = weights.map((w) => amount * w);
  const parts = exact.map((x) => Math.floor(x));
  let left = amount - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) parts[order[k]!.i]! += 1;
  return parts;
}

const groupKey = (c: ClickTouch) => JSON.stringify([c.linkId, c.campaignId, c.source]);

/**
 * A customer's credits under `model`: one per (link, campaign, source) it clicked, in the order
 * of its first click there. Empty without clicks.
 */
export function customerCredits(model: Model, clicksIn: readonly ClickTouch[], sales: readonly SaleTouch[], halfLifeDays = DEFAULT_HALF_LIFE_DAYS): Credit[] {
  if (clicksIn.length === 0) return [];
  const clicks = [...clicksIn].sort((a, b) => (touchBefore(a, b) ? -1 : touchBefore(b, a) ? 1 : 0));
  const halfLifeMs = halfLifeDays * 86_400_000;
  const groups = new Map<string, Credit>();
  for (const c of clicks) if (!groups.has(groupKey(c))) groups.set(groupKey(c), { linkId: c.linkId, campaignId: c.campaignId, source: c.source, weight: 0, revenue: 0 });
  // Per sale: its clicks and their weights. Without sales, as if one followed the last click.
  const saleList: SaleTouch[] = sales.length > 0 ? [...sales] : [{ at: clicks[clicks.length - 1]!.at, amount: 0 }];
  const revenue = saleList.reduce((a, s) => a + s.amount, 0);
  for (const s of saleList) {
    const t = s.at.getTime();
    let before = clicks.filter((c) => c.at.getTime() <= t);
    if (before.length === 0) before = [clicks[0]!];
    const weights = modelWeights(model, before, halfLifeMs);
    const parts = splitAmount(s.amount, weights);
    // Revenue-weighted shares; by sale count when the revenue is 0.
    const share = revenue > 0 ? s.amount / revenue : 1 / saleList.length;
    before.forEach((c, i) => {
      const g = groups.get(groupKey(c))!;
      g.weight += weights[i]! * share;
      g.revenue += parts[i]!;
    });
  }
  return [...groups.values()];
}
