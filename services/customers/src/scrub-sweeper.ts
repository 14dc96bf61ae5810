/**
 * Finishing a deletion: the analytics service removes its copies of the customer's PII, then
 * the leftover identity keys go and `scrubPending` is cleared. A delete tries this at once;
 * when analytics cannot be reached the delete still succeeds (it is recorded) and this sweeper
 * retries every few seconds until it is done. It looks for pending work after a failure of its
 * own (every `intervalMs`), at start (work a crashed process left) and every `fullScanMs` (work
 * another replica left). The look-up is indexed on MongoDB but a collection scan on FerretDB,
 * hence the long default for the periodic one.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@linquid/mesh";
import type { ScrubRepository } from "./repository.js";

/** Asks the service holding event copies of a customer's PII to remove them. */
export type ScrubAnalytics = (req: { workspaceId: string; customerId: string }, timeoutMs: number) => Promise<void>;

export interface Scrubber {
  /** Finishes a deleted customer's scrub; false (never a throw) when it has to wait for the sweeper. */
  scrub(workspaceId: string, customerId: string): Promise<boolean>;
}

export interface ScrubSweeperOptions {
  intervalMs?: number;
  fullScanMs?: number;
  callTimeoutMs?: number;
  batchSize?: number;
}

export class ScrubSweeper implements Scrubber {
  private readonly intervalMs: number;
  private readonly fullScanMs: number;
  private readonly callTimeoutMs: number;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Work may be pending: a scrub failed here, or nobody looked yet. */
  private dirty = true;
  private lastFullScan = 0;
  /** Whether the last attempt failed, so a long outage is logged once, not every tick. */
  private failing = false;

  constructor(
    private readonly repo: ScrubRepository,
    private readonly analytics: ScrubAnalytics,
    private readonly logger: Logger,
    options: ScrubSweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 3000;
    this.fullScanMs = options.fullScanMs ?? 300_000;
    this.callTimeoutMs = options.callTimeoutMs ?? 3000;
    this.batchSize = options.batchSize ?? 100;
  }

  async scrub(workspaceId: string, customerId: string): Promise<boolean> {
    try {
      await this.analytics({ workspaceId, customerId }, this.callTimeoutMs);
      await this.repo.completeScrub(customerId);
      if (this.failing) this.logger.info("customer scrubs are going through again", { customerId });
      this.failing = false;
      return true;
    } catch (err) {
      this.dirty = true;
      const code = err instanceof ConnectError ? Code[err.code] : err instanceof Error ? err.name : "unknown";
      const fields = { customerId, workspaceId, code, message: err instanceof Error ? err.message : String(err) };
      if (this.failing) this.logger.debug("customer scrub still pending", fields);
      else this.logger.warn("customer scrub pending; will retry", fields);
      this.failing = true;
      return false;
    }
  }

  /** Starts the background retries. */
  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => {
      this.running ??= this.sweep().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** One pass over the pending scrubs (when there may be any); exposed for tests. */
  async sweep(): Promise<void> {
    const now = Date.now();
    if (!this.dirty && now - this.lastFullScan < this.fullScanMs) return;
    this.lastFullScan = now;
    let pending: Array<{ customerId: string; workspaceId: string }>;
    try {
      pending = await this.repo.findScrubPending(this.batchSize);
    } catch (err) {
      this.logger.warn("cannot read pending customer scrubs", { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    let allDone = true;
    for (const p of pending) {
      if (this.stopped) return;
      if (!(await this.scrub(p.workspaceId, p.customerId))) {
        allDone = false;
        break; // analytics is down: the rest would fail the same way
      }
    }
    this.dirty = !allDone || pending.length === this.batchSize;
  }

  /** Stops the retries and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
