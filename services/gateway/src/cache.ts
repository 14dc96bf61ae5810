/**
 * Snapshot cache of heavy reads (routes with cache_ttl_seconds > 0; CACHE_TTL_SECONDS
 * overrides every route, 0 disables caching).
 *
 * Key: `snap:{ws}:{generation}:{sha256(rpc, method, path variables, known query)}`. The
 * generation is a per-workspace counter (`gen:{ws}`); every successful call of a route with
 * invalidates_cache bumps it before the answer leaves, so a caller always reads its own
 * writes and old snapshots simply age out. Path variables (which may be `ext_<externalId>`)
 * only ever enter a key hashed; the cached value is the answer body itself.
 *
 * Only 200 answers are stored. Redis down → answers are computed (X-Cache: MISS), never an
 * error. A bump that could not be made (Redis away during a write) makes this process skip
 * cache reads for the longest TTL after, so a snapshot from before the outage is never
 * served over a write made during it.
 */
import { createHash } from "node:crypto";
import { redisCall, redisReady, type Logger, type PluginContext } from "@linquid/mesh";
import type { Answer, GatewayRequest, Step } from "./context.js";

type Redis = NonNullable<PluginContext["redis"]>;

export interface CacheOptions {
  readonly redis: Redis | undefined;
  /** CACHE_TTL_SECONDS: overrides every route's TTL when set; 0 disables caching. */
  readonly ttlOverrideSeconds: number | undefined;
  /** The longest TTL any route may use: how long to distrust snapshots after a missed bump. */
  readonly maxTtlSeconds: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

export function generationKey(workspaceId: string): string {
  return `gen:{${workspaceId}}`;
}

/** The snapshot key of a decoded request at a generation. Nothing the caller sent appears unhashed. */
export function snapshotKey(req: GatewayRequest, workspaceId: string, generation: string): string {
  const m = req.route!;
  const vars = [...m.pathVars].sort(([a], [b]) => (a < b ? -1 : 1));
  const what = JSON.stringify([`${m.route.service.typeName}/${m.route.method.name}`, req.method, m.route.template, vars, req.canonicalQuery ?? ""]);
  return `snap:{${workspaceId}}:${generation}:${createHash("sha256").update(what).digest("hex")}`;
}

export function createCachePolicy(options: CacheOptions): Step {
  const now = options.now ?? Date.now;
  const { redis, logger } = options;
  let distrustUntil = 0;
  let warnedAt = 0;
  const failed = (what: string, err: unknown) => {
    if (now() - warnedAt > 60_000) {
      warnedAt = now();
      logger.warn(`snapshot cache: ${what} failed, serving uncached`, { error: err instanceof Error ? err.message : String(err) });
    }
  };

  const bump = async (workspaceId: string): Promise<void> => {
    try {
      if (!redisReady(redis)) throw new Error("redis not ready");
      await redisCall("incr", () => redis.incr(generationKey(workspaceId)));
    } catch (err) {
      distrustUntil = now() + options.maxTtlSeconds * 1000;
      failed("generation bump", err);
    }
  };

  return async (req, next): Promise<Answer> => {
    const route = req.route?.route;
    const ws = req.principal?.workspaceId;
    if (route === undefined || ws === undefined) throw new Error("cache policy ran before routing or auth");

    // A streamed body is never a snapshot.
    if (route.stream !== undefined) return next();

    if (route.policy.invalidatesCache) {
      const answer = await next();
      if (answer.status < 400) await bump(ws);
      return answer;
    }

    const ttl = options.ttlOverrideSeconds ?? route.policy.cacheTtlSeconds;
    if (ttl <= 0) return next();
    req.responseHeaders.set("x-cache", "MISS");
    if (!redisReady(redis)) return next();

    let key: string;
    try {
      const generation = (await redisCall("get", () => redis.get(generationKey(ws)))) ?? "0";
      key = snapshotKey(req, ws, generation);
      if (now() >= distrustUntil) {
        const hit = await redisCall("get", () => redis.get(key));
        if (hit !== null) {
          req.responseHeaders.set("x-cache", "HIT");
          return { status: 200, body: hit };
        }
      }
    } catch (err) {
      failed("read", err);
      return next();
    }
    const answer = await next();
    if (answer.status === 200) {
      await redisCall("set", () => redis.set(key, answer.body, "PX", ttl * 1000)).catch((err: unknown) => failed("write", err));
    }
    return answer;
  };
}
