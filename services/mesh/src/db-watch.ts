/**
 * Telling a database that stopped answering from one that is busy, within a second, so the
 * RPCs that need it answer Unavailable (503 at the gateway) at once instead of hanging.
 *
 * A query may legitimately run for seconds (its `maxTimeMS` is the RPC's deadline), so silence
 * on a query's connection says nothing, and a socket timeout short enough to answer fast would
 * cut those queries. Instead a dedicated client of its own (one connection, outside the pool
 * the queries share) sends `hello` every `intervalMs`: the server answers it from memory, never
 * queued behind queries or locks. The database is *down* when one goes unanswered for
 * `downAfterMs` or fails (refused, reset), and *up* again at the first answer.
 *
 * While down, every unary handler of a plugin that needs the database fails with Unavailable:
 * those in flight as soon as it is found down, new ones at once (`withDatabaseWatch`). What
 * they had started in the driver finishes or fails in the background, like the work of a
 * caller that hung up; the driver's own timeouts (mongo.ts) bound it.
 *
 * An event loop blocked past `downAfterMs` would make any timer fire before the answer that
 * arrived meanwhile is read; the verdict therefore waits one turn of the loop (setImmediate,
 * after pending I/O), so a busy process does not declare its database down. Nor does a busy
 * machine: a `hello` unanswered while the process's queries keep returning (db-liveness.ts)
 * is a database short of CPU, not a stopped one, so the verdict waits another `downAfterMs`
 * for as long as some call was answered lately (in the second half of the first wait, then
 * during each further one). A stopped or hung database
 * answers nothing, and is found down as before.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import { MongoClient } from "mongodb";
import { databaseAnsweredSince } from "./db-liveness.js";
import { unavailable } from "./errors.js";
import { wrapHandlers } from "./handlers.js";
import type { Logger } from "./logger.js";

export interface DatabaseWatch {
  /** True while the database is found not answering. */
  readonly down: boolean;
  /**
   * Runs `fn`, or fails with Unavailable when the database is down now or is found down before
   * `fn` settles.
   */
  guard<T>(fn: () => T | Promise<T>): Promise<T>;
  stop(): Promise<void>;
}

export interface DatabaseWatchOptions {
  /** How often the database is asked (default 200 ms). */
  readonly intervalMs?: number;
  /** How long an unanswered `hello` takes to count as down (default 500 ms). */
  readonly downAfterMs?: number;
  /** Whether the database answered another call at or after a time (default: any dbCall of this process). */
  readonly answeredSince?: (since: number) => boolean;
  readonly logger?: Logger;
}

/** Starts watching the database at `uri`; never throws (a database down at start is found down). */
export function watchDatabase(uri: string, options: DatabaseWatchOptions = {}): DatabaseWatch {
  const intervalMs = options.intervalMs ?? 200;
  const downAfterMs = options.downAfterMs ?? 500;
  const answeredSince = options.answeredSince ?? databaseAnsweredSince;
  const logger = options.logger;
  const client = new MongoClient(uri, {
    maxPoolSize: 1,
    // Its own verdicts come from the timer below; the driver's timeouts only free the connection.
    serverSelectionTimeoutMS: 2000,
    connectTimeoutMS: 10_000,
    heartbeatFrequencyMS: 500,
    retryReads: false,
    appName: "linquid-watch",
  });

  let down = false;
  let since = Date.now();
  let downError: Error = unavailable("database");
  // The guarded calls in flight, failed at once when the database is found down. (Not a race
  // against one long-pending promise: each race would leave a reaction on it for as long as the
  // database stays up, a leak of one closure and its result per call.)
  const inFlight = new Set<(err: Error) => void>();

  const markDown = (why: string) => {
    if (down || stopped) return;
    down = true;
    since = Date.now();
    logger?.warn("database not answering; answering Unavailable until it does", { reason: why });
    downError = unavailable("database", new Error(why));
    for (const fail of inFlight) fail(downError);
    inFlight.clear();
  };
  const markUp = () => {
    if (!down) return;
    down = false;
    logger?.info("database answering again", { downMs: Date.now() - since });
  };

  let stopped = false;
  let pending: { started: number; timer: NodeJS.Timeout } | undefined;
  const ping = () => {
    if (stopped || pending !== undefined) return;
    const started = Date.now();
    const verdict = (windowStart: number) => {
      // After pending I/O: an answer that arrived while the loop was busy is read first.
      setImmediate(() => {
        if (pending?.started !== started) return;
        if (!answeredSince(windowStart)) return markDown(`no answer to hello within ${Date.now() - started} ms, nor to any call`);
        const next = Date.now();
        pending.timer = setTimeout(() => verdict(next), downAfterMs);
        pending.timer.unref();
      });
    };
    // Evidence from the second half of the first wait only: replies a database sent just
    // before it stopped arrive in the first moments, and must not delay the verdict.
    const timer = setTimeout(() => verdict(started + downAfterMs / 2), downAfterMs);
    timer.unref();
    pending = { started, timer };
    client
      .db("admin")
      .command({ hello: 1 })
      .then(
        () => markUp(),
        (err: unknown) => markDown(err instanceof Error ? err.message : String(err)),
      )
      .finally(() => {
        if (pending?.started === started) {
          clearTimeout(pending.timer);
          pending = undefined;
        }
      });
  };
  const interval = setInterval(ping, intervalMs);
  interval.unref();
  ping();

  return {
    get down() {
      return down;
    },
    guard(fn) {
      if (down) return Promise.reject(downError);
      return new Promise((resolve, reject) => {
        inFlight.add(reject);
        Promise.resolve()
          .then(fn)
          .then(resolve, reject)
          .finally(() => inFlight.delete(reject));
      });
    },
    async stop() {
      stopped = true;
      clearInterval(interval);
      if (pending !== undefined) clearTimeout(pending.timer);
      await client.close().catch(() => undefined);
    },
  };
}

/**
 * A router whose unary handlers run under `watch.guard` (see the module comment). Streaming
 * handlers, whose work runs after they return, are left to the driver's timeouts.
 */
export function withDatabaseWatch(router: ConnectRouter, watch: DatabaseWatch): ConnectRouter {
  return wrapHandlers(router, (method, impl) => (method.methodKind !== "unary" ? impl : (req, ctx) => watch.guard(() => impl(req, ctx) as Promise<unknown>)));
}
