/**
 * Snapshot cache of heavy reads (routes with cache_ttl_seconds > 0; CACHE_TTL_SECONDS
 * overrides every route, 0 disables caching).
 *
 * Keys: a per-workspace generation `gen:{ws}`, and one snapshot per request,
 * `snap:{ws}:{sha256(rpc, method, path variables, known query)}`, whose value is the generation
 * it was computed at, a newline, and the answer body. Every successful call of a route with
 * invalidates_cache replaces the workspace's generation with a fresh random one before the
 * answer leaves, so a caller always reads its own writes: a snapshot of another generation is
 * never served, and the next read computes it again. A random value rather than a counter: a
 * Redis that restarts empty would count again from zero and bring back generations that
 * snapshots written around the restart still carry. Path variables (which may be
 * `ext_<externalId>`) only ever enter a key hashed.
 *
 * A read costs one Redis round trip: `MGET gen:{ws} snap:{ws}:{hash}` (both keys carry the
 * workspace's hash tag, so they live in one cluster slot), the generation and the snapshot
 * compared here. A snapshot's value is its generation, its expiry (ms since the epoch) and the
 * answer body, a line each. A snapshot computed at a generation that was replaced meanwhile may still be
 * written over a newer one (its read began before a write, its answer came after); it is then
 * never served, and only costs the next read a miss.
 *
 * Fills are single-flight: while one request of this process computes a snapshot (a key at a
 * generation), the others that miss it wait for that answer instead of each calling the service,
 * so an expiry under load costs one fill per key per process, not one per open connection. A
 * request only joins a fill of the generation it read itself, so it never gets an answer
 * computed before a write it has seen acknowledged.
 *
 * Refresh ahead: waiting for a fill is what an expiry used to cost every open connection (the
 * p99 of a busy key was the fill's duration). So a snapshot records when it expires, and the
 * first read in the last quarter of its life computes the next one (that read is a MISS) while
 * the other reads keep being served the current snapshot, which is still within its TTL — no
 * snapshot is served past its TTL, and a key read steadily never expires. A key nobody read in
 * that quarter expires and is filled as above. Still one fill per key per process per TTL.
 *
 * Only 200 answers are stored. Redis down → answers are computed (X-Cache: MISS), never an
 * error, and not shared (without a generation a fill cannot be told from one that predates a
 * write). A new generation that could not be written (Redis away during a write) is owed to
 * that workspace alone: its snapshots are not read until it is written, which is tried again
 * every 250 ms and at once when Redis is back — so the cache recovers per workspace, as soon as
 * Redis answers, and other gateways stop serving the old snapshots then too. (A snapshot
 * outlives its write by its TTL at most, so a debt older than the longest TTL plus the RPC
 * deadline is dropped.)
 *
 * `invalidate(ws)` does the same for changes made outside the gateway (the analytics service's
 * repairs, announced on its invalidation channel: invalidations.ts); `distrustAll()` stops
 * reading every snapshot for the longest TTL, for when that channel may have missed entries.
 */
import { createHash, randomBytes } from "node:crypto";
import { DEFAULT_TIMEOUT_MS, redisCall, redisReady, type Logger, type PluginContext } from "@linquid/mesh";
import type { Answer, GatewayRequest, Step } from "./context.js";

type Redis = NonNullable<PluginContext["redis"]>;

export interface CacheOptions {
  readonly redis: Redis | undefined;
  /** CACHE_TTL_SECONDS: overrides every route's TTL when set; 0 disables caching. */
  readonly ttlOverrideSeconds: number | undefined;
  /** The longest TTL any route may use: how long a snapshot can outlive a write it missed. */
  readonly maxTtlSeconds: number;
  readonly logger: Logger;
  readonly now?: () => number;
  /** How often owed generations are written again while Redis is away (default 250 ms). */
  readonly retryEveryMs?: number;
}

export interface SnapshotCache {
  /** The pipeline step. */
  readonly policy: Step;
  /** Drops the workspace's snapshots (a new generation); owed until Redis takes it. */
  invalidate(workspaceId: string): Promise<void>;
  /** Reads no snapshot of any workspace for the longest TTL. */
  distrustAll(): void;
  /** Workspaces whose new generation could not be written yet. */
  owed(): readonly string[];
  stop(): void;
}

export function generationKey(workspaceId: string): string {
  return `gen:{${workspaceId}}`;
}

/** The snapshot key of a decoded request. Nothing the caller sent appears unhashed. */
export function snapshotKey(req: GatewayRequest, workspaceId: string): string {
  const m = req.route!;
  const vars = [...m.pathVars].sort(([a], [b]) => (a < b ? -1 : 1));
  const what = JSON.stringify([`${m.route.service.typeName}/${m.route.method.name}`, req.method, m.route.template, vars, req.canonicalQuery ?? ""]);
  return `snap:{${workspaceId}}:${createHash("sha256").update(what).digest("hex")}`;
}

/** The generation a workspace without one is at (never written, or Redis restarted empty). */
const NO_GENERATION = "0";

/** A snapshot's stored value: its generation, when it expires (ms), the answer body, a line each. */
export function snapshotValue(generation: string, expiresAt: number, body: string): string {
  return `${generation}\n${expiresAt}\n${body}`;
}

/** A stored snapshot's body and expiry when it was computed at `generation`, else undefined. */
export function parseSnapshot(value: string | null | undefined, generation: string): { body: string; expiresAt: number } | undefined {
  if (value === null || value === undefined) return undefined;
  const nl = generation.length;
  if (!(value.length > nl && value.charCodeAt(nl) === 10 && value.startsWith(generation))) return undefined;
  const nl2 = value.indexOf("\n", nl + 1);
  const expiresAt = nl2 < 0 ? NaN : Number(value.slice(nl + 1, nl2));
  // A value without an expiry line (another format) is not served.
  return Number.isInteger(expiresAt) ? { body: value.slice(nl2 + 1), expiresAt } : undefined;
}

/** The share of a snapshot's life, at its end, in which a read computes the next one (refresh ahead). */
const REFRESH_AHEAD_SHARE = 0.25;

/** Most workspaces remembered as owing a generation; beyond that, every snapshot is distrusted instead. */
const MAX_OWED = 100_000;

export function createSnapshotCache(options: CacheOptions): SnapshotCache {
  const now = options.now ?? Date.now;
  const { redis, logger } = options;
  // A debt older than this cannot matter: every snapshot it protected against has expired.
  const debtLifeMs = options.maxTtlSeconds * 1000 + DEFAULT_TIMEOUT_MS;
  const owed = new Map<string, number>();
  let distrustUntil = 0;
  let warnedAt = 0;
  const failed = (what: string, err: unknown) => {
    if (now() - warnedAt > 60_000) {
      warnedAt = now();
      logger.warn(`snapshot cache: ${what} failed, serving uncached`, { error: err instanceof Error ? err.message : String(err) });
    }
  };
  const distrustAll = () => {
    distrustUntil = now() + options.maxTtlSeconds * 1000;
  };

  /** Writes a new generation for `ws`; on failure the workspace owes it. True when written. */
  const bump = async (ws: string): Promise<boolean> => {
    try {
      if (!redisReady(redis)) throw new Error("redis not ready");
      await redisCall("set", () => redis.set(generationKey(ws), randomBytes(8).toString("hex")));
      owed.delete(ws);
      return true;
    } catch (err) {
      if (!owed.has(ws)) owed.set(ws, now());
      if (owed.size > MAX_OWED) {
        owed.clear();
        distrustAll();
      }
      failed("generation bump", err);
      return false;
    }
  };

  let paying: Promise<void> | undefined;
  const payDebts = () => {
    if (owed.size === 0 || !redisReady(redis)) return;
    paying ??= (async () => {
      const oldest = now() - debtLifeMs;
      for (const [ws, since] of [...owed]) {
        if (since < oldest) owed.delete(ws);
        else if (!(await bump(ws))) break;
      }
    })().finally(() => (paying = undefined));
  };
  const timer = setInterval(payDebts, options.retryEveryMs ?? 250);
  timer.unref();
  redis?.on("ready", payDebts);

  // Fills in flight in this process, by generation and key: the requests that miss a snapshot
  // being computed share its answer (or its error).
  const fills = new Map<string, Promise<Answer>>();
  const fill = (id: string, compute: () => Promise<Answer>): Promise<Answer> => {
    let pending = fills.get(id);
    if (pending === undefined) {
      pending = compute().finally(() => fills.delete(id));
      fills.set(id, pending);
    }
    return pending;
  };

  const policy: Step = async (req, next): Promise<Answer> => {
    const route = req.route?.route;
    const ws = req.principal?.workspaceId;
    if (route === undefined || ws === undefined) throw new Error("cache policy ran before routing or auth");

    if (route.policy.invalidatesCache) {
      const answer = await next();
      if (answer.status < 400) await bump(ws);
      return answer;
    }

    const ttl = options.ttlOverrideSeconds ?? route.policy.cacheTtlSeconds;
    if (ttl <= 0) return next();
    req.responseHeaders.set("x-cache", "MISS");
    if (!redisReady(redis)) return next();
    // Snapshots of a workspace that owes a generation may predate one of its writes.
    if (owed.has(ws) && !(await bump(ws))) return next();

    const key = snapshotKey(req, ws);
    let generation: string;
    let fillId: string;
    try {
      const [gen, value] = await redisCall("mget", () => redis.mget(generationKey(ws), key));
      generation = gen ?? NO_GENERATION;
      fillId = `${generation}:${key}`;
      const snapshot = now() >= distrustUntil ? parseSnapshot(value, generation) : undefined;
      // Served unless it is in its last quarter and nobody in this process is refreshing it yet.
      if (snapshot !== undefined && (now() < snapshot.expiresAt - ttl * 1000 * REFRESH_AHEAD_SHARE || fills.has(fillId))) {
        req.responseHeaders.set("x-cache", "HIT");
        return { status: 200, body: snapshot.body };
      }
    } catch (err) {
      failed("read", err);
      return next();
    }
    return fill(fillId, async () => {
      const answer = await next();
      if (answer.status === 200) {
        const value = snapshotValue(generation, now() + ttl * 1000, answer.body);
        await redisCall("set", () => redis.set(key, value, "PX", ttl * 1000)).catch((err: unknown) => failed("write", err));
      }
      return answer;
    });
  };

  return {
    policy,
    invalidate: async (ws) => void (await bump(ws)),
    distrustAll,
    owed: () => [...owed.keys()],
    stop() {
      clearInterval(timer);
      redis?.off("ready", payDebts);
    },
  };
}

/** The cache's pipeline step alone (see createSnapshotCache). */
export function createCachePolicy(options: CacheOptions): Step {
  return createSnapshotCache(options).policy;
}
