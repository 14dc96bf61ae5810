/**
 * Redis is an accelerator, never a dependency: snapshot caches and rate-limit counters
 * live there, and every caller must keep answering (uncached, with a per-process
 * limiter) while it is down. Commands fail fast instead of queueing while disconnected.
 */
import { SpanKind, trace } from "@opentelemetry/api";
import { Redis } from "ioredis";
import type { Logger } from "./logger.js";
import { redisDuration, secondsSince } from "./metrics.js";
import { inSpan } from "./spans.js";

const tracer = trace.getTracer("linquid.redis");

/** Connects lazily and keeps reconnecting in the background; never throws at start. */
export function createRedis(url: string, logger: Logger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    commandTimeout: 500,
    // Reconnect attempts twice a second at most while it is away, so a Redis that is back is
    // used again within half a second (a refused connection costs nothing).
    retryStrategy: (times) => Math.min(50 + times * 50, 500),
    lazyConnect: false,
    // Commands issued in one turn of the event loop (the rate-limit scripts and snapshot reads of
    // every request under way) go out in one write: a socket write costs more than the commands.
    enableAutoPipelining: true,
  });
  let down = false;
  redis.on("error", (err: Error) => {
    if (!down) logger.warn("redis unavailable; serving without it", { error: err.message });
    down = true;
  });
  redis.on("ready", () => {
    if (down) logger.info("redis reachable again");
    down = false;
  });
  return redis;
}

/** True when commands can be sent now. */
export function redisReady(redis: Redis | undefined): redis is Redis {
  return redis !== undefined && redis.status === "ready";
}

/** Runs one Redis call inside a client span, timed (metrics.ts). Errors propagate; callers decide how to degrade. */
export async function redisCall<T>(operation: string, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  let outcome = "error";
  try {
    const result = await inSpan(tracer, `redis.${operation}`, { kind: SpanKind.CLIENT, attributes: { "db.system": "redis", "db.operation.name": operation } }, fn);
    outcome = "ok";
    return result;
  } finally {
    redisDuration.observe({ command: operation, outcome }, secondsSince(started));
  }
}
