/**
 * Deletes expired idempotency records (idempotency-store.ts) in the background, since neither
 * database we run on may use a TTL index for it. Expiry is checked on every read anyway, so the
 * sweeper only bounds the collection's size (about a day of keys), never what a request sees;
 * a pass that fails (the database is away) is simply made again at the next tick.
 *
 * Every replica runs one. Passes of several replicas overlap harmlessly: each delete re-checks
 * the expiry in the same write, and deleting what another replica deleted already costs nothing.
 */
import type { Logger } from "@linquid/mesh";

export interface Sweepable {
  /** Deletes up to `limit` expired records; returns how many. */
  sweep(limit: number): Promise<number>;
}

export interface IdempotencySweeperOptions {
  /** Default 60 s. */
  readonly intervalMs?: number;
  /** Records deleted per database round trip (default 1000). */
  readonly batchSize?: number;
  /** Round trips per pass at most (default 100): a backlog is worked off over several passes. */
  readonly maxBatches?: number;
}

export class IdempotencySweeper {
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly maxBatches: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private failing = false;

  constructor(
    private readonly store: Sweepable,
    private readonly logger: Logger,
    options: IdempotencySweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 60_000;
    this.batchSize = options.batchSize ?? 1000;
    this.maxBatches = options.maxBatches ?? 100;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.pass(), this.intervalMs);
    this.timer.unref();
  }

  /** One pass (joins a pass in progress); returns how many records it deleted. */
  pass(): Promise<number> {
    this.running ??= this.sweepAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async sweepAll(): Promise<number> {
    let total = 0;
    try {
      for (let i = 0; i < this.maxBatches; i++) {
        const n = await this.store.sweep(this.batchSize);
        total += n;
        if (n < this.batchSize) break;
      }
      if (this.failing) this.logger.info("idempotency sweeper is deleting expired keys again");
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.logger.warn("idempotency sweeper pass failed; will try again", { error: err instanceof Error ? err.message : String(err) });
      this.failing = true;
    }
    return total;
  }

  /** Stops the ticks and waits for a pass in progress. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
