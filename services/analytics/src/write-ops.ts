/**
 * Markers of the writes in flight that change customer totals and rollup cells (`write_ops`),
 * and the lease (`workspace_rebuilds`) that keeps those writes and a RebuildWorkspace apart.
 * Both work across any number of processes; nothing is held in memory.
 *
 * Markers. An ingestion, a registration and a recalculation each insert their marker before
 * their first write of totals or cells and delete it after their last. A marker left behind
 * means its writer died midway: it is `due` for recovery (recovery.ts) once its writer can no
 * longer be running (its deadline, at least `STALE_MS`), and the recovering sweeper leases it
 * by moving `due` conditionally, so one replica recovers it. Recovery finds due markers with one
 * query on the `due` index.
 *
 * Rebuild lease. A rebuild recomputes a workspace's totals and cells from the raw events and
 * replaces them; a write landing between its reads and its replacement would be lost or counted
 * twice. So the two exclude each other with two single-document writes each way: a write
 * inserts its marker, then reads the lease, and backs out when a rebuild holds it (it waits for
 * the rebuild up to REBUILD_WAIT_MS, then answers UNAVAILABLE, "retry shortly"); a rebuild takes
 * the lease, then waits until every marker of its workspace is gone. Whatever the interleaving, one of the two sees the other. A rebuild renews its lease
 * while it runs, so one that crashed blocks writes for `LEASE_MS` at most; markers whose writer
 * is presumed dead (due) are discarded by the rebuild, which recomputes what they would have
 * written.
 *
 * A lease whose time has passed means a rebuild is due: one that crashed or failed midway
 * (it may have dropped rollups and not written them back), or one that recovery requested
 * because a crashed write may have left cells short. The recovery sweeper runs it (recovery.ts),
 * taking the expired lease over; only a rebuild that finished deletes its lease.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { DEFAULT_TIMEOUT_MS, inheritedTimeoutMs, newId, remainingMs, runWithDeadline } from "@linquid/mesh";
import type { AnalyticsRepository, OpDoc, RebuildProgress } from "./repository.js";

/** The least time a marker is left to its writer before recovery may take it over. */
export const STALE_MS = 60_000;
/** How long a rebuild's lease lasts unless renewed (it is renewed every third of that). */
export const LEASE_MS = 30_000;
/** How long a write waits for a rebuild of its workspace before it is refused. */
export const REBUILD_WAIT_MS = 5_000;

const rebuilding = () => new ConnectError("analytics of this workspace are being rebuilt; retry shortly", Code.Unavailable);

export interface RebuildLease {
  /** Throws ABORTED when the lease was lost (not renewed in time and taken over). */
  check(): void;
  /** Records how far the rebuild has got, for GetRebuildProgress (a failure to record is ignored). */
  report(progress: RebuildProgress): Promise<void>;
  /** The rebuild finished: the lease goes, writes resume. */
  release(): Promise<void>;
  /** The rebuild failed midway: the lease expires now, so the rebuild is due again (recovery.ts). */
  abandon(): Promise<void>;
}

export class WriteOps {
  /**
   * `staleMs`: the least time a marker is left to its writer before recovery may take it over
   * (RECOVERY_AFTER_MS; `STALE_MS` by default).
   */
  constructor(
    private readonly repo: AnalyticsRepository,
    private readonly staleMs: number = STALE_MS,
  ) {}

  /**
   * Records a write about to start. While a rebuild of its workspace runs, the write waits for
   * it without a marker (so the rebuild, which waits for markers, can finish) for up to
   * `REBUILD_WAIT_MS`, keeping at least a second of its deadline for itself; a rebuild that
   * outlasts that refuses it with UNAVAILABLE ("retry shortly"), nothing written.
   */
  async begin(op: Omit<OpDoc, "startedAt" | "due">): Promise<void> {
    const waitUntil = Date.now() + Math.min(REBUILD_WAIT_MS, remainingMs() - 1000);
    for (;;) {
      const now = Date.now();
      // Recovery must not take over a writer still within its deadline.
      const due = new Date(now + Math.max(this.staleMs, remainingMs()));
      await this.repo.insertOp({ ...op, startedAt: new Date(now), due });
      if (!(await this.rebuildRunning(op.workspaceId))) return;
      await this.repo.deleteOp(op._id);
      do {
        if (Date.now() + 100 > waitUntil) throw rebuilding();
        await sleep(100);
      } while (await this.rebuildRunning(op.workspaceId));
    }
  }

  /** Records a write done. A write that fails midway leaves its marker to recovery. */
  end(opId: string): Promise<void> {
    return this.repo.deleteOp(opId);
  }

  /**
   * `begin`, then `fn` and `end` under a budget of the write's own instead of its caller's
   * deadline: half the time before its marker is due (the longer of `staleMs` and the caller's
   * remaining time), at most the 15 s of any call without a deadline. Why: every database call
   * carries its deadline, so a caller that gives up — a deadline passing under overload — would
   * stop the write midway and leave its marker to recovery, which rebuilds the workspace when
   * cells may be short and refuses its writes meanwhile. A write past its marker finishes
   * instead; its caller still gets its deadline error. The budget ends before the marker is due,
   * so recovery never takes over a writer that is still running.
   */
  async run<T>(op: Omit<OpDoc, "startedAt" | "due">, fn: () => Promise<T>): Promise<T> {
    await this.begin(op);
    const budgetMs = Math.min(DEFAULT_TIMEOUT_MS, Math.floor(Math.max(this.staleMs, inheritedTimeoutMs() ?? 0) / 2));
    return runWithDeadline(budgetMs, async () => {
      const out = await fn();
      await this.end(op._id);
      return out;
    });
  }

  /** True while a rebuild of `ws` holds an unexpired lease. */
  async rebuildRunning(ws: string): Promise<boolean> {
    const lease = await this.repo.findRebuildLease(ws);
    return lease !== null && lease.until.getTime() > Date.now();
  }

  /** Markers due for recovery, oldest first. */
  due(limit: number): Promise<OpDoc[]> {
    return this.repo.dueOps(new Date(), limit);
  }

  /** Takes a due marker for recovery (for `staleMs`); null when another process took it first. */
  async lease(op: OpDoc): Promise<OpDoc | null> {
    const due = new Date(Date.now() + this.staleMs);
    return (await this.repo.moveOpDue(op, due)) ? { ...op, due } : null;
  }

  /** Gives a leased marker back at once (due now), e.g. to a rebuild that will discard it. */
  async giveBack(op: OpDoc): Promise<void> {
    await this.repo.moveOpDue(op, new Date());
  }

  /**
   * Asks for a rebuild of `ws`, durably: an expired lease, which the recovery sweeper finds and
   * runs. Nothing changes when a lease exists already (a rebuild runs, or is due).
   */
  async requestRebuild(ws: string): Promise<void> {
    await this.repo.insertRebuildLease({ _id: ws, token: newId("rq"), until: new Date(0) });
  }

  /** Workspaces whose rebuild is due (expired leases), the longest overdue first. */
  async dueRebuilds(limit: number): Promise<string[]> {
    return (await this.repo.dueRebuilds(new Date(), limit)).map((l) => l._id);
  }

  /**
   * Takes the rebuild lease of `ws` and waits until no write of the workspace is in flight;
   * ABORTED when another rebuild holds it. The lease is renewed until released.
   */
  async holdRebuild(ws: string): Promise<RebuildLease> {
    const token = newId("rb");
    const until = () => new Date(Date.now() + LEASE_MS);
    const progress: RebuildProgress = { phase: "waiting for writes in flight", eventsDone: 0, eventsTotal: 0 };
    for (let taken = false; !taken; ) {
      if (await this.repo.insertRebuildLease({ _id: ws, token, until: until(), progress })) break;
      const cur = await this.repo.findRebuildLease(ws);
      if (cur === null) continue;
      if (cur.until.getTime() > Date.now()) throw new ConnectError("a rebuild of this workspace is already running", Code.Aborted);
      taken = await this.repo.replaceRebuildLease(ws, cur.token, { token, until: until(), progress });
    }
    let lost = false;
    const renewal = setInterval(() => {
      this.repo.renewRebuildLease(ws, token, until()).then(
        (held) => (lost ||= !held),
        () => undefined, // the next renewal tries again; the lease outlives two misses
      );
    }, LEASE_MS / 3);
    renewal.unref();
    const lease: RebuildLease = {
      check() {
        if (lost) throw new ConnectError("the rebuild lost its lease (renewals failed); run it again", Code.Aborted);
      },
      report: (p) => this.repo.setRebuildProgress(ws, token, p).catch(() => undefined),
      release: async () => {
        clearInterval(renewal);
        await this.repo.deleteRebuildLease(ws, token);
      },
      abandon: async () => {
        clearInterval(renewal);
        await this.repo.expireRebuildLease(ws, token, new Date());
      },
    };
    try {
      await this.drain(ws);
    } catch (err) {
      await lease.abandon();
      throw err;
    }
    return lease;
  }

  /** Waits until no marker of `ws` belongs to a live writer; discards the markers of dead ones. */
  private async drain(ws: string): Promise<void> {
    for (;;) {
      const ops = await this.repo.workspaceOps(ws);
      if (ops.length === 0) return;
      const now = Date.now();
      const inFlight = ops.filter((op) => op.due.getTime() > now);
      for (const op of ops) if (op.due.getTime() <= now) await this.repo.deleteOpIfDue(op);
      if (inFlight.length > 0) await sleep(50);
    }
  }
}
