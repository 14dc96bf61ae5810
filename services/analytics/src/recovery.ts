/**
 * Repairing what a crashed process left midway (write-ops.ts), with no operator. Every replica
 * sweeps every `sweepEveryMs` (30 s, or half of RECOVERY_AFTER_MS when that is shorter):
 *
 * 1. Interrupted writes. One query on the `due` index of `write_ops` finds the markers whose
 *    writers can no longer be running; each is leased (a conditional update) before it is
 *    worked on, so one replica recovers it.
 *    - ingest: the op's events are folded into the customers that do not have the op in
 *      `recentOps` yet (rollups.ts).
 *    - register, recalculate: nothing to redo (a registration that failed is retried by the
 *      customers service; a recalculation is on demand).
 *    A customer that has the op got its totals written but maybe not all of its cell `$inc`s
 *    or member moves, and which of them landed cannot be told: the workspace's rebuild is
 *    requested (durably, before the marker goes) and run in step 2.
 * 2. Due rebuilds: requested ones, and rebuilds that crashed or failed midway (their lease
 *    expired without being released). One query on the `until` index of `workspace_rebuilds`;
 *    the rebuild takes the expired lease over, so one replica runs it, and recomputes every
 *    total, cell and member list of the workspace from its raw events.
 * 3. Every workspace whose figures a fold or a rebuild changed gets an entry in the snapshot
 *    invalidation channel (invalidations.ts), so the gateway stops serving snapshots that
 *    predate the repair; entries older than they are kept are pruned.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@linquid/mesh";
import type { SnapshotInvalidations } from "./invalidations.js";
import type { AnalyticsRepository, OpDoc } from "./repository.js";
import type { Rollups } from "./rollups.js";
import type { StatsPusher } from "./stats-push.js";
import type { WriteOps } from "./write-ops.js";

export const SWEEP_EVERY_MS = 30_000;

export interface SweepResult {
  /** Interrupted writes this process recovered. */
  readonly recovered: number;
  /** Workspaces this process rebuilt. */
  readonly rebuilt: number;
}

export class Recovery {
  constructor(
    private readonly repo: AnalyticsRepository,
    private readonly ops: WriteOps,
    private readonly rollups: Rollups,
    private readonly stats: StatsPusher,
    private readonly logger: Logger,
    private readonly invalidations: Pick<SnapshotInvalidations, "record" | "prune">,
  ) {}

  /** One pass: up to `limit` interrupted writes, then due rebuilds (see the module comment). */
  async sweep(limit = 100): Promise<SweepResult> {
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
    let rebuilt = 0;
    for (const ws of await this.ops.dueRebuilds(limit)) {
      if (await this.rebuild(ws)) rebuilt++;
    }
    await this.invalidations.prune();
    return { recovered, rebuilt };
  }

  private async recover(op: OpDoc): Promise<void> {
    const ws = op.workspaceId;
    const customerIds =
      op.kind === "ingest"
        ? [...new Set((await this.repo.findEvents(op.eventIds)).filter((e) => e.opId === op._id && e.customerId !== null).map((e) => e.customerId!))]
        : [...(op.customerIds ?? []), ...(op.customerId === undefined ? [] : [op.customerId])];
    const current = await this.repo.findTotals(ws, customerIds);
    const partial = customerIds.some((c) => current.get(c)?.recentOps.includes(op._id));
    if (partial) {
      // Requested before the marker goes, so a crash right here still leaves the repair due.
      await this.ops.requestRebuild(ws);
      this.logger.warn("an interrupted write may have left rollup cells short; rebuilding the workspace", { workspaceId: ws, opId: op._id, kind: op.kind });
    }
    if (op.kind === "ingest") {
      const events = (await this.repo.findEvents(op.eventIds)).filter((e) => e.opId === op._id && e.customerId !== null);
      const changed = await this.rollups.foldInto(ws, op._id, events);
      await this.ops.end(op._id);
      if (changed.length > 0) await this.invalidations.record(ws);
      await this.stats.push(ws, changed);
      return;
    }
    await this.ops.end(op._id);
  }

  /** Runs a due rebuild; false when another replica runs it (or a rebuild is live). */
  private async rebuild(ws: string): Promise<boolean> {
    try {
      const r = await this.rollups.rebuild(ws);
      this.logger.info("workspace rebuilt by recovery", { workspaceId: ws, customers: r.customers, events: r.events });
      return true;
    } catch (err) {
      if (ConnectError.from(err).code === Code.Aborted) return false;
      // The lease stays due: the next sweep tries again.
      this.logger.warn("a due rebuild failed; it stays due", { workspaceId: ws, error: (err as Error).message });
      return false;
    }
  }
}
