/**
 * Pushing customers' stats (leads, sales, revenue, first/last seen) to the customers service
 * after their totals change. Each push carries the totals' `version`, which the customers
 * service only lets grow, so pushes from several replicas in any order end at the newest.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CustomersService } from "@linquid/contracts";
import { runDetached, type Logger } from "@linquid/mesh";
import type { TotalsDoc } from "./repository.js";
import type { WorkspaceCurrencies } from "./workspace-currency.js";

/** Items per SetCustomersStats call (the customers service's limit). */
const MAX_STATS_ITEMS = 1000;

export class StatsPusher {
  private readonly pending = new Map<string, { ws: string; doc: TotalsDoc }>();
  private draining: Promise<void> | undefined;

  constructor(
    private readonly customers: () => Client<typeof CustomersService>,
    private readonly currencies: WorkspaceCurrencies,
    private readonly logger: Logger,
  ) {}

  /** Queues pushes, sent in the background; a newer version of a queued customer replaces the older one. */
  enqueue(ws: string, docs: readonly TotalsDoc[]): void {
    for (const doc of docs) {
      const key = `${ws}:${doc.customerId}`;
      const queued = this.pending.get(key);
      if (queued === undefined || queued.doc.version < doc.version) this.pending.set(key, { ws, doc });
    }
    // The drain outlives the RPC that queued it, so it must not run under that RPC's deadline.
    if (this.pending.size > 0) this.draining ??= runDetached(() => this.drain()).finally(() => (this.draining = undefined));
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0) {
      const take = [...this.pending].slice(0, MAX_STATS_ITEMS);
      for (const [key] of take) this.pending.delete(key);
      const byWs = new Map<string, TotalsDoc[]>();
      for (const [, { ws, doc }] of take) byWs.set(ws, [...(byWs.get(ws) ?? []), doc]);
      for (const [ws, docs] of byWs) await this.push(ws, docs);
    }
  }

  /** Waits until every queued push was sent. */
  async flush(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
  }

  /** Pushes customers' stats now, in one call per 1,000; a failure is logged (the next change pushes again, RecalculateLtv on demand). */
  async push(ws: string, docs: readonly TotalsDoc[]): Promise<void> {
    if (docs.length === 0) return;
    const currency = await this.currencies.of(ws).catch(() => undefined);
    const customers = this.customers();
    // Newest version per customer: the call takes each customer once.
    const newest = new Map<string, TotalsDoc>();
    for (const d of docs) if ((newest.get(d.customerId)?.version ?? -1) < d.version) newest.set(d.customerId, d);
    const items = [...newest.values()].map((d) => ({
      customerId: d.customerId,
      version: BigInt(d.version),
      stats: {
        leads: BigInt(d.leads),
        sales: BigInt(d.sales),
        revenue: BigInt(d.revenue),
        ...(currency !== undefined ? { currency } : {}),
        ...(d.firstTouch !== null ? { firstSeenAt: timestampFromDate(d.firstTouch.at) } : {}),
        ...(d.lastTouch !== null ? { lastSeenAt: timestampFromDate(d.lastTouch.at) } : {}),
      },
    }));
    for (let i = 0; i < items.length; i += MAX_STATS_ITEMS) {
      const part = items.slice(i, i + MAX_STATS_ITEMS);
      try {
        await customers.setCustomersStats({ workspaceId: ws, items: part });
      } catch (err) {
        this.logger.warn("could not push customer stats", { workspaceId: ws, customers: part.length, code: Code[ConnectError.from(err).code] });
      }
    }
  }
}
