/**
 * Follow-ups of a customer write that need the analytics service: the scrub of a deleted
 * customer's PII from its events, and the registration of a created customer's creation time.
 * The write records the follow-up as pending on the customer (`scrubPending`,
 * `registerPending`) and tries it at once; when analytics cannot be reached the write still
 * succeeds, and a sweeper per follow-up retries every few seconds until it is done. A sweeper
 * looks for pending work after a failure of its own (every `intervalMs`), at start (work a
 * crashed process left) and every `fullScanMs` (work another replica left). The look-up is
 * indexed on MongoDB but a collection scan on FerretDB, hence the long default for the
 * periodic one.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@linquid/mesh";

export interface PendingCustomer {
  workspaceId: string;
  customerId: string;
}

/** One kind of follow-up. */
export interface FollowUp {
  /** For logs: "customer scrub". */
  readonly name: string;
  /** Does the work for one customer and records it done; throws when it has to wait. */
  run(customer: PendingCustomer, timeoutMs: number): Promise<void>;
  /** Customers whose follow-up is pending, oldest first. */
  findPending(limit: number): Promise<PendingCustomer[]>;
}

export interface Retrier {
  /** Does a customer's follow-up now; false (never a throw) when it has to wait for the sweeper. */
  attempt(workspaceId: string, customerId: string): Promise<boolean>;
}

export interface RetrySweeperOptions {
  intervalMs?: number;
  fullScanMs?: number;
  callTimeoutMs?: number;
  batchSize?: number;
}

export class RetrySweeper implements Retrier {
  private readonly intervalMs: number;
  private readonly fullScanMs: number;
  private readonly callTimeoutMs: number;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Work may be pending: an attempt failed here, or nobody looked yet. */
  private dirty = true;
  private lastFullScan = 0;
  /** Whether the last attempt failed, so a long outage is logged once, not every tick. */
  private failing = false;

  constructor(
    private readonly followUp: FollowUp,
    private readonly logger: Logger,
    options: RetrySweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 3000;
    this.fullScanMs = options.fullScanMs ?? 300_000;
    this.callTimeoutMs = options.callTimeoutMs ?? 3000;
    this.batchSize = options.batchSize ?? 100;
  }

  async attempt(workspaceId: string, customerId: string): Promise<boolean> {
    const name = this.followUp.name;
    try {
      await this.followUp.run({ workspaceId, customerId }, this.callTimeoutMs);
      if (this.failing) this.logger.info(`${name}s are going through again`, { customerId });
      this.failing = false;
      return true;
    } catch (err) {
      this.dirty = true;
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
      this.running ??= this.sweep().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** One pass over the pending follow-ups (when there may be any); exposed for tests. */
  async sweep(): Promise<void> {
    const now = Date.now();
    if (!this.dirty && now - this.lastFullScan < this.fullScanMs) return;
    this.lastFullScan = now;
    let pending: PendingCustomer[];
    try {
      pending = await this.followUp.findPending(this.batchSize);
    } catch (err) {
      this.logger.warn(`cannot read pending ${this.followUp.name}s`, { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    let allDone = true;
    for (const p of pending) {
      if (this.stopped) return;
      if (!(await this.attempt(p.workspaceId, p.customerId))) {
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
