/**
 * Pushing customers' stats (leads, sales, revenue, first/last seen) to the customers service
 * after their totals change. Each push carries the totals' `version`, which the customers
 * service only lets grow, so pushes from several replicas in any order end at the newest.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CustomersService } from "@linquid/contracts";
import { mapLimit, runDetached, type Logger } from "@linquid/mesh";
import type { TotalsDoc } from "./repository.js";
import type { WorkspaceCurrencies } from "./workspace-currency.js";

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
      const take = [...this.pending].slice(0, 64);
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

  /** Pushes customers' stats now; a failure is logged (the next change pushes again, RecalculateLtv on demand). */
  async push(ws: string, docs: readonly TotalsDoc[]): Promise<void> {
    if (docs.length === 0) return;
    const currency = await this.currencies.of(ws).catch(() => undefined);
    const customers = this.customers();
    await mapLimit(docs, 8, async (d) => {
      try {
        await customers.setCustomerStats({
          workspaceId: ws,
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
        });
      } catch (err) {
        this.logger.warn("could not push customer stats", { workspaceId: ws, customerId: d.customerId, code: Code[ConnectError.from(err).code] });
      }
    });
  }
}
