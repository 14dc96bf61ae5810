/**
 * Single writes of a workspace take a batch path: the tracking calls (TrackClick, TrackLead,
 * TrackSale, TrackEvent: one event each) and the registrations (RegisterCustomer: one customer
 * each) that arrive within `windowMs` of the first waiting one are written together, so
 * concurrent callers share every database round trip of the write path instead of paying each
 * for one item. Each call still answers only once its own item is stored, with its own outcome:
 * another caller's bad item never fails it. A failure of the whole batch (a dependency down, a
 * rebuild that outlasts the wait) fails every call of the batch, as it would have failed each alone.
 *
 * Group commit: at most `inFlight` batches of a workspace run at once. A batch that is due while
 * they run waits for one of them to end, gathering every call that arrives meanwhile, so under
 * load batches grow with the load instead of each call running as a batch of one — the write
 * path's round trips (about fifteen for an event, mostly serialized by the database) are shared
 * by as many calls as arrived during the previous batch. A batch that waits may exceed `max` items.
 *
 * Deadlines: only calls with deadlines of the same order (remaining time within the same power of
 * two, e.g. every call the gateway makes with its 15 s budget) share a batch, and the batch runs
 * under the shortest of them. So no call's item is written after its own deadline passed, and a
 * call that cannot wait — for a rebuild of its workspace, say — is refused as it would be alone,
 * nothing written, without making a call with a longer deadline fail.
 */
import { inheritedTimeoutMs, runWithDeadline } from "@linquid/mesh";

/** How long the first waiting call waits for others (milliseconds). */
export const COALESCE_WINDOW_MS = 2;
/** A batch is sent at once when it reaches this many items (and fewer than COALESCE_IN_FLIGHT run). */
export const COALESCE_MAX = 500;
/** Batches of one workspace running at once; more calls wait for one of them to end. */
export const COALESCE_IN_FLIGHT = 2;

/** Writes a batch of one workspace's items; one outcome per item, in order. */
export type BatchFn<I, O> = (ws: string, items: readonly I[]) => Promise<O[]>;

interface Waiter<I, O> {
  readonly item: I;
  /** Epoch ms of the caller's deadline; undefined = none. */
  readonly deadline: number | undefined;
  resolve(o: O): void;
  reject(err: unknown): void;
}

export class Coalescer<I, O> {
  /** Waiting calls by workspace and deadline class; `due` once their window has passed or they are `max`. */
  private readonly queues = new Map<string, { ws: string; waiters: Array<Waiter<I, O>>; timer: NodeJS.Timeout; due: boolean }>();
  /** Batches running, by workspace. */
  private readonly running = new Map<string, number>();

  constructor(
    private readonly write: BatchFn<I, O>,
    private readonly windowMs = COALESCE_WINDOW_MS,
    private readonly max = COALESCE_MAX,
    private readonly inFlight = COALESCE_IN_FLIGHT,
  ) {}

  /** Writes one item with whatever else of its workspace arrives meanwhile; its own outcome. */
  submit(ws: string, item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      const left = inheritedTimeoutMs();
      const waiter: Waiter<I, O> = { item, deadline: left === undefined ? undefined : Date.now() + left, resolve, reject };
      const key = `${ws}\u0000${left === undefined ? "none" : Math.floor(Math.log2(Math.max(1, left)))}`;
      let q = this.queues.get(key);
      if (q === undefined) {
        q = { ws, waiters: [], timer: setTimeout(() => this.flush(key), this.windowMs), due: false };
        this.queues.set(key, q);
      }
      q.waiters.push(waiter);
      if (q.waiters.length >= this.max) this.flush(key);
    });
  }

  /** Sends a queue's batch, or marks it due when its workspace has `inFlight` batches running. */
  private flush(key: string): void {
    const q = this.queues.get(key);
    if (q === undefined) return;
    clearTimeout(q.timer);
    const busy = this.running.get(q.ws) ?? 0;
    if (busy >= this.inFlight) {
      q.due = true;
      return;
    }
    this.queues.delete(key);
    this.running.set(q.ws, busy + 1);
    const { ws, waiters } = q;
    const deadlines = waiters.map((w) => w.deadline).filter((d): d is number => d !== undefined);
    const timeoutMs = deadlines.length === 0 ? undefined : Math.min(...deadlines) - Date.now();
    runWithDeadline(timeoutMs, () => this.write(ws, waiters.map((w) => w.item)))
      .then(
        (outcomes) => waiters.forEach((w, i) => w.resolve(outcomes[i]!)),
        (err: unknown) => waiters.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        const left = this.running.get(ws)! - 1;
        if (left === 0) this.running.delete(ws);
        else this.running.set(ws, left);
        // The workspace's batch that has waited longest (queues keep insertion order).
        for (const [k, other] of this.queues) {
          if (other.ws === ws && other.due) return this.flush(k);
        }
      });
  }
}
