/**
 * Keeping the workspace attribution cells (attribution-cells.ts) at write time.
 *
 * Why per sale, not per customer: a customer's contribution to per-day cells is keyed by its
 * sale days, so a per-customer document holding it would grow with the customer's history. What
 * one sale credits is bounded by the links, campaigns and sources the customer clicked, so each
 * sale keeps its own current credits in `sale_credits` (`_id` = the sale's event `_id`) and
 * moves from version to version by compare-and-set; the winner of each change `$inc`s the cells
 * by new − old. The cells therefore always equal the sum of the stored sale credits, whatever
 * concurrent writers do.
 *
 * Why a per-customer head version as well: a late click changes the credits of other sales of
 * its customer, so every write that adds a click or sale recomputes all of that customer's sales
 * from its stored clicks and sales ("refresh"). Writers of one customer may read different sets
 * of events; the head makes the last one right. A refresh reads the head's version first, then
 * the events and stored credits, writes what changed, and ends by moving the head from the
 * version it read; when that (or any sale's) compare-and-set loses, it starts over. Take the last
 * refresh whose head move won: every other writer's events were stored (and its sale writes
 * done) before that writer's own winning head move, which came before this refresh read the head
 * — so it read them all, and a writer still writing after it would have to win a later head move.
 * Hence, once writes stop, every sale's stored credits are those of all its customer's events:
 * exact under backfill, replays (a replayed event changes nothing) and concurrency.
 *
 * A refresh is idempotent, so recovery may repeat it; a crash between a sale's write and its
 * `$inc`s leaves the op's marker, and recovery then rebuilds the workspace (rollups.ts).
 */
import { newId, pauseBeforeRetry } from "@linquid/mesh";
import type { ClickTouch } from "./attribution.js";
import { accumulateSale, customerSaleRows, dayOf, nonZeroDeltas, sameRows, type AttributionDelta, type SaleTouch } from "./attribution-cells.js";
import type { AnalyticsRepository, AttributionHeadDoc, EventDoc, SaleCreditDoc } from "./repository.js";

const CONTENTION_MS = 15_000;

function touchesOf(events: readonly EventDoc[]): { clicks: ClickTouch[]; sales: SaleTouch[] } {
  const clicks: ClickTouch[] = [];
  const sales: SaleTouch[] = [];
  for (const e of events) {
    if (e.type === "click") clicks.push({ at: e.at, ref: e._id, linkId: e.linkId ?? null, campaignId: e.campaignId ?? null, source: e.source ?? null });
    else if (e.type === "sale") sales.push({ ref: e._id, at: e.at, amount: e.amount ?? 0 });
  }
  return { clicks, sales };
}

/** The credit documents of one customer's sales. */
export function saleCreditDocs(ws: string, customerId: string, events: readonly EventDoc[], version: number): SaleCreditDoc[] {
  const { clicks, sales } = touchesOf(events);
  const rows = customerSaleRows(clicks, sales);
  return sales.filter((s) => rows.get(s.ref)!.length > 0).map((s) => ({ _id: s.ref, workspaceId: ws, customerId, day: dayOf(s.at), v: version, rows: rows.get(s.ref)! }));
}

export class AttributionRollups {
  constructor(private readonly repo: AnalyticsRepository) {}

  /** Recomputes the credits of these customers' sales from their stored clicks and sales and moves the cells by the difference. */
  async refresh(ws: string, customerIds: readonly string[]): Promise<void> {
    const deadline = Date.now() + CONTENTION_MS;
    const token = newId("ref");
    let pending = [...new Set(customerIds)];
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) await pauseBeforeRetry(attempt, deadline, "customer attribution keeps changing; retry");
      // The heads first: see the class comment.
      const heads = await this.repo.findAttributionHeads(ws, pending);
      const events = await this.repo.customersClicksAndSales(ws, pending);
      const byCustomer = new Map<string, EventDoc[]>(pending.map((c) => [c, []]));
      for (const e of events) if (e.customerId !== null) byCustomer.get(e.customerId)?.push(e);
      const stored = new Map((await this.repo.findSaleCredits(events.filter((e) => e.type === "sale").map((e) => e._id))).map((d) => [d._id, d]));
      const deltas = new Map<string, AttributionDelta>();
      // New sales' first credits in one insert (the common case: a sale tracked in time); sales
      // re-credited by a late click one conditional replace each (each must know its outcome).
      const firsts: SaleCreditDoc[] = [];
      const changes: Array<{ doc: SaleCreditDoc; old: SaleCreditDoc }> = [];
      for (const customerId of pending) {
        for (const doc of saleCreditDocs(ws, customerId, byCustomer.get(customerId)!, 1)) {
          const old = stored.get(doc._id);
          if (old === undefined) firsts.push(doc);
          else if (!sameRows(old.rows, doc.rows)) changes.push({ doc: { ...doc, v: old.v + 1 }, old });
        }
      }
      const [taken, replaced] = await Promise.all([
        this.repo.insertSaleCreditsNew(firsts),
        Promise.all(changes.map(({ doc, old }) => this.repo.replaceSaleCredits(doc, old.v))),
      ]);
      const lost = new Set<string>();
      for (const doc of firsts) {
        if (taken.has(doc._id)) lost.add(doc.customerId);
        else accumulateSale(deltas, ws, doc.day, doc.rows, 1);
      }
      changes.forEach(({ doc, old }, i) => {
        if (!replaced[i]) return void lost.add(doc.customerId);
        accumulateSale(deltas, ws, old.day, old.rows, -1);
        accumulateSale(deltas, ws, doc.day, doc.rows, 1);
      });
      await this.repo.applyAttributionDeltas(nonZeroDeltas(deltas));
      const moves = pending.filter((c) => !lost.has(c)).map((customerId) => ({ customerId, expected: heads.get(customerId) ?? 0 }));
      const moved = await this.repo.moveAttributionHeads(ws, moves, token);
      pending = pending.filter((c) => !moved.has(c));
    }
  }

  /** A rebuild's: the cells, credits and heads of every customer from its events, written anew (after the drop). */
  async rebuild(ws: string, eventsOf: ReadonlyMap<string, readonly EventDoc[]>): Promise<void> {
    const deltas = new Map<string, AttributionDelta>();
    const credits: SaleCreditDoc[] = [];
    const heads: AttributionHeadDoc[] = [];
    for (const [customerId, events] of eventsOf) {
      const docs = saleCreditDocs(ws, customerId, events, 1);
      for (const d of docs) accumulateSale(deltas, ws, d.day, d.rows, 1);
      credits.push(...docs);
      heads.push({ _id: `${ws}:${customerId}`, workspaceId: ws, customerId, v: 1 });
    }
    await this.repo.insertSaleCreditsMany(credits);
    await this.repo.insertAttributionHeadsMany(heads);
    await this.repo.applyAttributionDeltas(nonZeroDeltas(deltas));
  }
}
