/**
 * Reading a service's snapshot invalidation channel (AnalyticsService.ListSnapshotInvalidations
 * in the contract): the changes the service made without a call of an `invalidates_cache` route
 * — a recovery or a rebuild repairing a workspace's figures. Asked every `intervalMs` with the
 * previous answer's cursor; each workspace listed gets a new snapshot generation (cache.ts),
 * so repaired figures are served at once. Entries repeat across answers (the cursor overlaps);
 * their ids, remembered for a while, tell. An answer marked incomplete (entries may have been
 * missed, e.g. after a long outage) makes the cache distrust every snapshot for the longest TTL.
 * While the service cannot be reached, the cursor stays and the next answer catches up.
 */
import type { Logger } from "@linquid/mesh";
import type { SnapshotCache } from "./cache.js";

export interface InvalidationPage {
  readonly invalidations: ReadonlyArray<{ readonly id: string; readonly workspaceId: string }>;
  readonly cursor: string;
  readonly complete: boolean;
}

export interface InvalidationFeedOptions {
  /** One call of the channel. */
  readonly list: (cursor: string) => Promise<InvalidationPage>;
  readonly cache: Pick<SnapshotCache, "invalidate" | "distrustAll">;
  readonly logger: Logger;
  /** Default 1 s. */
  readonly intervalMs?: number;
  /** How long an entry's id is remembered (longer than the channel's overlap; default 60 s). */
  readonly rememberMs?: number;
}

export interface InvalidationFeed {
  /** One round now (tests); resolves when it is done. */
  poll(): Promise<void>;
  stop(): Promise<void>;
}

export function startInvalidationFeed(options: InvalidationFeedOptions): InvalidationFeed {
  const rememberMs = options.rememberMs ?? 60_000;
  const seen = new Map<string, number>();
  let cursor = "";
  let warnedAt = 0;
  let running: Promise<void> | undefined;

  const round = async () => {
    let page: InvalidationPage;
    try {
      page = await options.list(cursor);
    } catch (err) {
      if (Date.now() - warnedAt > 60_000) {
        warnedAt = Date.now();
        options.logger.warn("snapshot invalidations cannot be read; retrying", { error: err instanceof Error ? err.message : String(err) });
      }
      return;
    }
    if (!page.complete) options.cache.distrustAll();
    const fresh = new Set<string>();
    const t = Date.now();
    for (const e of page.invalidations) {
      if (seen.has(e.id)) continue;
      seen.set(e.id, t);
      fresh.add(e.workspaceId);
    }
    for (const ws of fresh) await options.cache.invalidate(ws);
    for (const [id, at] of seen) {
      if (t - at <= rememberMs) break; // insertion order: the rest are newer
      seen.delete(id);
    }
    cursor = page.cursor;
  };
  const poll = () => (running ??= round().finally(() => (running = undefined)));
  const timer = setInterval(() => void poll(), options.intervalMs ?? 1000);
  timer.unref();
  void poll();

  return {
    poll,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
