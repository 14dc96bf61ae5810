/**
 * The snapshot-cache invalidation channel of the analytics service (ListSnapshotInvalidations
 * in the contract). The gateway drops a workspace's snapshots after every call of a route with
 * `invalidates_cache`; this records the changes no such call makes — a recovery finishing a
 * write a crashed process left, a rebuild — so the gateway drops those snapshots too.
 *
 * Entries live in `snapshot_invalidations` (one document each, found by the `at` index) for
 * `KEEP_MS`, pruned by the recovery sweeper; any replica records and any replica answers. A
 * cursor is a time in epoch ms: the next call answers entries from `OVERLAP_MS` before the
 * previous answer, so an entry recorded by a replica whose clock is behind, or whose insert was
 * still in flight, is not missed; the reader drops repeats by id.
 */
import { newId, invalidArgument } from "@linquid/mesh";
import type { AnalyticsRepository } from "./repository.js";

/** How long entries are kept: a cursor older than that may have missed some. */
export const KEEP_MS = 10 * 60_000;
/** How far each cursor reaches back before the previous answer. */
export const OVERLAP_MS = 10_000;
/** Entries per answer at most; a full page's cursor is its last entry's time. */
const PAGE = 1000;

export interface InvalidationPage {
  readonly entries: ReadonlyArray<{ readonly id: string; readonly workspaceId: string }>;
  readonly cursor: string;
  readonly complete: boolean;
}

export class SnapshotInvalidations {
  constructor(
    private readonly repo: AnalyticsRepository,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records that `ws`'s snapshots no longer show its analytics. */
  async record(ws: string): Promise<void> {
    await this.repo.insertInvalidation({ _id: newId("inv"), workspaceId: ws, at: new Date(this.now()) });
  }

  /** Entries since `cursor` ("" = all kept). */
  async since(cursor: string): Promise<InvalidationPage> {
    const now = this.now();
    let from = now - KEEP_MS;
    let complete = true;
    if (cursor !== "") {
      const t = /^\d{1,16}$/.test(cursor) ? Number(cursor) : NaN;
      if (!Number.isSafeInteger(t)) throw invalidArgument([{ field: "cursor", issue: "is not a cursor of this service" }]);
      if (t < now - KEEP_MS) complete = false;
      else from = t;
    }
    const docs = await this.repo.invalidationsSince(new Date(from), PAGE);
    const next = docs.length === PAGE ? docs[docs.length - 1]!.at.getTime() : Math.max(from, now - OVERLAP_MS);
    return { entries: docs.map((d) => ({ id: d._id, workspaceId: d.workspaceId })), cursor: String(next), complete };
  }

  /** Drops entries older than KEEP_MS. */
  prune(): Promise<void> {
    return this.repo.deleteInvalidationsBefore(new Date(this.now() - KEEP_MS));
  }
}
