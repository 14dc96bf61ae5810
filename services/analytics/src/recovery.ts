/**
 * Finishing the writes whose process died midway (write-ops.ts). Every replica sweeps every
 * `SWEEP_EVERY_MS`: one query on the `due` index of `write_ops` finds the markers whose writers
 * can no longer be running, and each is leased (a conditional update) before it is worked on, so
 * one replica recovers it.
 *
 * - ingest: the op's events are folded into the customers that do not have the op in
 *   `recentOps` yet (rollups.ts). A customer that has it got its totals written but maybe not
 *   all its cell `$inc`s: that cannot be told, so the workspace is logged for RebuildWorkspace.
 * - register, recalculate: nothing to redo (a registration that failed is retried by the
 *   customers service; a recalculation is on demand), but a customer that has the op may miss
 *   cell moves: logged the same way.
 */
import type { Logger } from "@linquid/mesh";
import type { AnalyticsRepository, OpDoc } from "./repository.js";
import type { Rollups } from "./rollups.js";
import type { StatsPusher } from "./stats-push.js";
import type { WriteOps } from "./write-ops.js";

export const SWEEP_EVERY_MS = 30_000;

export class Recovery {
  constructor(
    private readonly repo: AnalyticsRepository,
    private readonly ops: WriteOps,
    private readonly rollups: Rollups,
    private readonly stats: StatsPusher,
    private readonly logger: Logger,
  ) {}

  /** One pass: recovers up to `limit` due ops; returns how many this process recovered. */
  async sweep(limit = 100): Promise<number> {
    let recovered = 0;
    for (const due of await this.ops.due(limit)) {
      const op = await this.ops.lease(due);
      if (op === null) continue; // another replica has it
      if (await this.ops.rebuildRunning(op.workspaceId)) {
        await this.ops.giveBack(op); // the rebuild recomputes what the op would have written
        continue;
      }
      await this.recover(op);
      recovered++;
    }
    return recovered;
  }

  private async recover(op: OpDoc): Promise<void> {
    const ws = op.workspaceId;
    if (op.kind === "ingest") {
      const events = (await this.repo.findEvents(op.eventIds)).filter((e) => e.opId === op._id && e.customerId !== null);
      const customerIds = [...new Set(events.map((e) => e.customerId!))];
      await this.warnIfPartial(op, customerIds);
      const changed = await this.rollups.foldInto(ws, op._id, events);
      await this.ops.end(op._id);
      await this.stats.push(ws, changed);
      return;
    }
    await this.warnIfPartial(op, op.customerId === undefined ? [] : [op.customerId]);
    await this.ops.end(op._id);
  }

  private async warnIfPartial(op: OpDoc, customerIds: readonly string[]): Promise<void> {
    const current = await this.repo.findTotals(op.workspaceId, customerIds);
    if (customerIds.some((c) => current.get(c)?.recentOps.includes(op._id))) {
      this.logger.error("an interrupted write may have left rollup cells short; run RebuildWorkspace", { workspaceId: op.workspaceId, opId: op._id, kind: op.kind });
    }
  }
}
