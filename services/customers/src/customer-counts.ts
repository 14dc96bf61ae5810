/**
 * The number of live customers per workspace, kept with `$inc` by every write that creates or
 * deletes customers, so an unfiltered count (and the total of an unfiltered page) is one
 * document read instead of a count of the workspace's index entries.
 *
 * `customer_counts`: `_id` = workspace id → `{n, pending, ver, ready, checkAfter, quietVer,
 * quietSince}`. Without transactions the customer write and the counter cannot change together,
 * so a writer announces itself first (`pending += k`, `ver += 1`, creating the document if
 * needed), writes the customers, then settles (`n += created − deleted`, `pending −= k`,
 * `ver += 1`). `n` therefore counts the writes that have settled; a write in flight shows a
 * moment later, as it would in any count taken while it runs.
 *
 * The counter is trusted once `ready`, which a reconciliation sets: it reads the counter, counts
 * the workspace's live customers from the index, and writes that count back only if `ver` did
 * not move meanwhile and nothing was pending — so no write could have fallen between the count
 * and the counter. Until then a count comes from the index (exact, slower). A writer that dies
 * between its two steps leaves `pending` above zero: when `ver` has not moved for two minutes,
 * whatever is pending belongs to writers that are gone, and a reconciliation clears it. Every
 * counter is reconciled again at the first count ten minutes after its last reconciliation, in
 * the background, so a counter off after such a crash is set right within minutes.
 *
 * Customers written to the database behind the service's back (tests, benchmark loads) are
 * counted by the next reconciliation, not before.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { dbCall, insertIfAbsent, runDetached, type Logger } from "@linquid/mesh";
import type { Collection, Db } from "mongodb";
import type { CustomerDoc } from "./customer-doc.js";

export interface CountDoc {
  _id: string;
  n: number;
  pending: number;
  ver: number;
  ready: boolean;
  /** When the next count should reconcile (in the background). */
  checkAfter: Date;
  /** The `ver` a reconciliation saw while writes were pending, and since when. */
  quietVer: number | null;
  quietSince: Date | null;
}

export interface CustomerCountsOptions {
  /** How long a reconciled counter is trusted before a count reconciles it again. */
  recheckMs?: number;
  /** How long `ver` must stand still before pending writes are taken for dead. */
  quietMs?: number;
  /** Least time between two reconciliations of one workspace started by this process. */
  retryMs?: number;
}

export class CustomerCounts {
  readonly counts: Collection<CountDoc>;
  private readonly recheckMs: number;
  private readonly quietMs: number;
  private readonly retryMs: number;
  /** Workspaces this process reconciles now, or tried to lately. */
  private readonly attempts = new Map<string, { running: Promise<void> | undefined; at: number }>();

  constructor(
    db: Db,
    private readonly customers: Collection<CustomerDoc>,
    private readonly logger: Logger | undefined,
    options: CustomerCountsOptions = {},
  ) {
    this.counts = db.collection<CountDoc>("customer_counts");
    this.recheckMs = options.recheckMs ?? 600_000;
    this.quietMs = options.quietMs ?? 120_000;
    this.retryMs = options.retryMs ?? 5_000;
  }

  /** Announces a write that may create or delete up to `k` customers. */
  async begin(workspaceId: string, k: number): Promise<void> {
    if (k === 0) return;
    const upsert = () =>
      dbCall("customer_counts", "updateOne", (o) =>
        this.counts.updateOne(
          { _id: workspaceId },
          { $inc: { pending: k, ver: 1 }, $setOnInsert: { n: 0, ready: false, checkAfter: new Date(0), quietVer: null, quietSince: null } },
          { ...o, upsert: true },
        ),
      );
    try {
      await upsert();
    } catch (err) {
      // Two first writers of a workspace: one upsert inserts, the other may lose on _id; the update goes through on retry.
      if (!(err instanceof ConnectError && err.code === Code.AlreadyExists)) throw err;
      await upsert();
    }
  }

  /** Settles a write announced with `begin(…, k)` that changed the number of live customers by `delta`. */
  async settle(workspaceId: string, k: number, delta: number): Promise<void> {
    if (k === 0) return;
    await dbCall("customer_counts", "updateOne", (o) => this.counts.updateOne({ _id: workspaceId }, { $inc: { n: delta, pending: -k, ver: 1 } }, o));
  }

  /** Live customers of a workspace: the counter when trusted, else counted from the index. */
  async count(workspaceId: string): Promise<number> {
    const doc = await dbCall("customer_counts", "findOne", (o) => this.counts.findOne({ _id: workspaceId }, o));
    if (doc === null || !doc.ready || doc.checkAfter.getTime() <= Date.now()) this.reconcileSoon(workspaceId);
    if (doc !== null && doc.ready) return doc.n;
    return this.countFromIndex(workspaceId);
  }

  private countFromIndex(workspaceId: string): Promise<number> {
    return dbCall("customers", "countDocuments", (o) => this.customers.countDocuments({ workspaceId, deletedAt: null }, o));
  }

  /** Starts a reconciliation in the background unless one runs, or ran moments ago, in this process. */
  private reconcileSoon(workspaceId: string): void {
    const now = Date.now();
    const last = this.attempts.get(workspaceId);
    if (last !== undefined && (last.running !== undefined || now - last.at < this.retryMs)) return;
    const entry: { running: Promise<void> | undefined; at: number } = { running: undefined, at: now };
    this.attempts.set(workspaceId, entry);
    // Outside the caller's deadline: the count it answers does not wait for this.
    entry.running = runDetached(() =>
      this.reconcile(workspaceId)
        .then(() => undefined)
        .catch((err: unknown) => this.logger?.warn("customer count reconciliation failed", { workspaceId, error: err instanceof Error ? err.message : String(err) }))
        .finally(() => {
          entry.running = undefined;
          entry.at = Date.now();
          if (this.attempts.size > 10_000) this.attempts.clear();
        }),
    );
  }

  /**
   * Sets the counter from the index when no write can have slipped between the two; returns
   * whether it did. Exposed for tests.
   */
  async reconcile(workspaceId: string): Promise<boolean> {
    let doc: CountDoc | null = await dbCall("customer_counts", "findOne", (o) => this.counts.findOne({ _id: workspaceId }, o));
    if (doc === null) {
      const fresh: CountDoc = { _id: workspaceId, n: 0, pending: 0, ver: 0, ready: false, checkAfter: new Date(0), quietVer: null, quietSince: null };
      if (!(await insertIfAbsent(this.counts, fresh))) return false; // a writer made it meanwhile: next time
      doc = fresh;
    }
    const now = Date.now();
    let clearPending = false;
    if (doc.pending !== 0) {
      if (doc.quietVer === doc.ver && doc.quietSince !== null && now - doc.quietSince.getTime() >= this.quietMs) {
        clearPending = true;
      } else {
        if (doc.quietVer !== doc.ver) {
          await dbCall("customer_counts", "updateOne", (o) => this.counts.updateOne({ _id: workspaceId, ver: doc.ver }, { $set: { quietVer: doc.ver, quietSince: new Date(now) } }, o));
        }
        return false;
      }
    }
    const n = await this.countFromIndex(workspaceId);
    const set: Partial<CountDoc> = { n, ready: true, checkAfter: new Date(Date.now() + this.recheckMs), quietVer: null, quietSince: null };
    if (clearPending) set.pending = 0;
    const res = await dbCall("customer_counts", "updateOne", (o) => this.counts.updateOne({ _id: workspaceId, ver: doc.ver, pending: doc.pending }, { $set: set }, o));
    if (res.matchedCount > 0 && doc.ready && doc.n !== n && !clearPending) {
      this.logger?.warn("customer count corrected", { workspaceId, counter: doc.n, counted: n });
    }
    return res.matchedCount > 0;
  }
}
