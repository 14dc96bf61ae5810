/**
 * Retries of the follow-ups a customer write owes the analytics service (follow-ups.ts). The
 * write records a marker (follow-up-markers.ts) and tries the follow-up at once; when analytics
 * cannot be reached the write still succeeds and the marker waits for a sweeper.
 *
 * Every replica runs one sweeper per kind of follow-up. Every `intervalMs` it asks for the
 * markers that are due — one query on the markers' `(kind, due)` index, so its cost follows the
 * pending work, not the number of customers — and leases each one before working on it, so the
 * sweepers of several replicas do not repeat each other's work. A pass stops at the first
 * failure (analytics is down: the rest would fail the same way); a follow-up that failed is due
 * again when its lease (`leaseMs`) runs out.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@linquid/mesh";

export interface FollowUpTarget {
  workspaceId: string;
  customerId: string;
}

/** A marker a sweeper found due; `token` identifies the marker as it was read. */
export interface DueFollowUp extends FollowUpTarget {
  token: string;
  due: Date;
}

/** One kind of follow-up. */
export interface FollowUp {
  /** For logs: "customer scrub". */
  readonly name: string;
  /**
   * Does the work for one customer and removes its marker; throws when it has to wait. A
   * sweeper passes the marker it leased; the write's own attempt passes the customer only.
   */
  run(target: FollowUpTarget | DueFollowUp, timeoutMs: number): Promise<void>;
  /** Markers of this kind that are due, oldest first. */
  findDue(limit: number): Promise<DueFollowUp[]>;
  /** Takes a due marker for `leaseMs`; null when another sweeper (or a new write) got it first. */
  lease(marker: DueFollowUp, leaseMs: number): Promise<DueFollowUp | null>;
}

export interface Retrier {
  /** Does a customer's follow-up now; false (never a throw) when it has to wait for the sweeper. */
  attempt(workspaceId: string, customerId: string): Promise<boolean>;
}

export interface RetrySweeperOptions {
  intervalMs?: number;
  /** How long a leased follow-up is left to its sweeper; a failed one is retried after it. */
  leaseMs?: number;
  callTimeoutMs?: number;
  batchSize?: number;
}

export class RetrySweeper implements Retrier {
  private readonly intervalMs: number;
  private readonly leaseMs: number;
  private readonly callTimeoutMs: number;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Whether the last attempt failed, so a long outage is logged once, not every tick. */
  private failing = false;

  constructor(
    private readonly followUp: FollowUp,
    private readonly logger: Logger,
    options: RetrySweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 3000;
    this.callTimeoutMs = options.callTimeoutMs ?? 3000;
    this.leaseMs = options.leaseMs ?? 2 * this.callTimeoutMs;
    this.batchSize = options.batchSize ?? 100;
  }

  attempt(workspaceId: string, customerId: string): Promise<boolean> {
    return this.tryOne({ workspaceId, customerId });
  }

  private async tryOne(target: FollowUpTarget | DueFollowUp): Promise<boolean> {
    const name = this.followUp.name;
    const { workspaceId, customerId } = target;
    try {
      await this.followUp.run(target, this.callTimeoutMs);
      if (this.failing) this.logger.info(`${name}s are going through again`, { customerId });
      this.failing = false;
      return true;
    } catch (err) {
      const code = err instanceof ConnectError ? Code[err.code] : err instanceof Error ? err.name : "unknown";
      const fields = { customerId, workspaceId, code, message: err instanceof Error ? err.message : String(err) };
      if (this.failing) this.logger.debug(`${name} still pending`, fields);
      else this.logger.warn(`${name} pending; will retry`, fields);
      this.failing = true;
      return false;
    }
  }

  /** Starts the background retries. */
  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => {
      this.running ??= this.sweep()
        .then(() => undefined)
        .finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** One pass over the follow-ups that are due; returns how many were done. Exposed for tests. */
  async sweep(): Promise<number> {
    let due: DueFollowUp[];
    try {
      due = await this.followUp.findDue(this.batchSize);
    } catch (err) {
      this.logger.warn(`cannot read pending ${this.followUp.name}s`, { error: err instanceof Error ? err.message : String(err) });
      return 0;
    }
    let done = 0;
    for (const marker of due) {
      if (this.stopped) break;
      let leased: DueFollowUp | null;
      try {
        leased = await this.followUp.lease(marker, this.leaseMs);
      } catch (err) {
        this.logger.warn(`cannot lease a pending ${this.followUp.name}`, { error: err instanceof Error ? err.message : String(err) });
        break;
      }
      if (leased === null) continue;
      if (!(await this.tryOne(leased))) break; // analytics is down: the rest would fail the same way
      done++;
    }
    return done;
  }

  /** Stops the retries and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
