/**
 * Per-workspace request budgets: a token bucket holding `rateLimit` tokens that refills at
 * `rateLimit` per hour. A request takes one token; none left → 429 RATE_LIMITED with
 * Retry-After (seconds until the next token).
 *
 * The bucket lives in Redis and is updated by ONE Lua script (read, refill, take, write,
 * expire), so concurrent gateways never over-admit; the script reads Redis's own clock, so
 * gateway clocks do not matter. While Redis is unready or a call fails, the same algorithm
 * runs in-process: the API keeps answering and still limits, per process.
 *
 * Headers, on every answer after authentication (errors included):
 * - X-RateLimit-Limit: the budget per hour;
 * - X-RateLimit-Remaining: whole tokens left;
 * - X-RateLimit-Reset: unix seconds at which the bucket is full again.
 * Unlimited workspaces get `X-RateLimit-Limit: unlimited`, `X-RateLimit-Remaining: unlimited`
 * and `X-RateLimit-Reset: <now>` (nothing to wait for).
 */
import { createHash } from "node:crypto";
import { redisCall, redisReady, type Logger, type PluginContext } from "@linquid/mesh";
import type { Principal, Step } from "./context.js";
import { HttpError } from "./http-error.js";

type Redis = NonNullable<PluginContext["redis"]>;

export const HOUR_MS = 3_600_000;

export interface Budget {
  readonly allowed: boolean;
  readonly limit: number;
  /** Whole tokens left after this request. */
  readonly remaining: number;
  /** Unix seconds when the bucket is full again. */
  readonly resetAt: number;
  /** Seconds until one token is available; 0 when allowed. */
  readonly retryAfter: number;
}

export interface Limiter {
  /** Takes `cost` tokens (0 = only look) from the workspace's bucket of `limit` per window. */
  take(workspaceId: string, limit: number, cost: 0 | 1): Promise<Budget>;
}

interface BucketState {
  tokens: number;
  ts: number;
}

/** The algorithm, shared by both limiters (the Lua script below is its transcription). */
export function step(state: BucketState | undefined, limit: number, windowMs: number, nowMs: number, cost: 0 | 1): { state: BucketState; budget: Budget } {
  let tokens = state === undefined ? limit : Math.min(limit, state.tokens + (Math.max(0, nowMs - state.ts) * limit) / windowMs);
  let allowed = tokens >= 1;
  if (cost === 1 && allowed) tokens -= 1;
  if (cost === 0) allowed = true;
  // Multiply before dividing: (1 - tokens) / (limit / window) drifts past whole milliseconds.
  const retryMs = allowed ? 0 : Math.ceil(((1 - tokens) * windowMs) / limit);
  const fullMs = Math.ceil(((limit - tokens) * windowMs) / limit);
  return {
    state: { tokens, ts: nowMs },
    budget: { allowed, limit, remaining: Math.floor(tokens), resetAt: Math.ceil((nowMs + fullMs) / 1000), retryAfter: Math.ceil(retryMs / 1000) },
  };
}

/** In-process buckets: the fallback while Redis is away, and the unit under test for the algorithm. */
export function createLocalLimiter(options: { windowMs?: number; now?: () => number; maxEntries?: number } = {}): Limiter {
  const windowMs = options.windowMs ?? HOUR_MS;
  const now = options.now ?? Date.now;
  const maxEntries = options.maxEntries ?? 100_000;
  const buckets = new Map<string, BucketState>();
  return {
    async take(workspaceId, limit, cost) {
      const r = step(buckets.get(workspaceId), limit, windowMs, now(), cost);
      if (cost === 1) {
        buckets.delete(workspaceId);
        buckets.set(workspaceId, r.state);
        // A forgotten bucket is a full one, the safe side for the caller.
        while (buckets.size > maxEntries) buckets.delete(buckets.keys().next().value!);
      }
      return r.budget;
    },
  };
}

/**
 * KEYS[1] bucket hash; ARGV: limit, window ms, cost (0|1).
 * Returns {allowed, remaining, retry ms, full ms, now ms}. Uses Redis TIME, so every gateway
 * shares one clock; a bucket idle for a whole window expires (it would be full anyway).
 */
export const TOKEN_BUCKET_LUA = `
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1])
local ts = tonumber(s[2])
if tokens == nil or ts == nil then
  tokens = limit
else
  tokens = math.min(limit, tokens + math.max(0, now - ts) * limit / window)
end
local allowed = 0
if tokens >= 1 then allowed = 1 end
if cost == 1 then
  if allowed == 1 then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], window)
else
  allowed = 1
end
local retry = 0
if allowed == 0 then retry = math.ceil((1 - tokens) * window / limit) end
local full = math.ceil((limit - tokens) * window / limit)
return {allowed, math.floor(tokens), retry, full, now}
`;

const SCRIPT_SHA = createHash("sha1").update(TOKEN_BUCKET_LUA).digest("hex");

/** Buckets in Redis; throws when Redis does. */
export function createRedisLimiter(redis: Redis, options: { windowMs?: number } = {}): Limiter {
  const windowMs = options.windowMs ?? HOUR_MS;
  const run = async (key: string, args: string[]): Promise<unknown> => {
    try {
      return await redis.evalsha(SCRIPT_SHA, 1, key, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(TOKEN_BUCKET_LUA, 1, key, ...args);
    }
  };
  return {
    async take(workspaceId, limit, cost) {
      const out = (await redisCall("ratelimit", () => run(`rl:{${workspaceId}}`, [String(limit), String(windowMs), String(cost)]))) as number[];
      const [allowed, remaining, retryMs, fullMs, nowMs] = out.map(Number) as [number, number, number, number, number];
      return { allowed: allowed === 1, limit, remaining, resetAt: Math.ceil((nowMs + fullMs) / 1000), retryAfter: Math.ceil(retryMs / 1000) };
    },
  };
}

/** Redis when it is ready, the in-process limiter otherwise; never fails because of Redis. */
export function createFallbackLimiter(redis: Redis | undefined, logger: Logger, options: { windowMs?: number; now?: () => number } = {}): Limiter {
  const local = createLocalLimiter(options);
  const remote = redis === undefined ? undefined : createRedisLimiter(redis, options);
  let warnedAt = 0;
  return {
    async take(workspaceId, limit, cost) {
      if (remote !== undefined && redisReady(redis)) {
        try {
          return await remote.take(workspaceId, limit, cost);
        } catch (err) {
          if (Date.now() - warnedAt > 60_000) {
            warnedAt = Date.now();
            logger.warn("rate limit: redis call failed, limiting in-process", { error: (err as Error).message });
          }
        }
      }
      return local.take(workspaceId, limit, cost);
    },
  };
}

function setHeaders(headers: Map<string, string>, budget: Budget | "unlimited"): void {
  if (budget === "unlimited") {
    headers.set("x-ratelimit-limit", "unlimited");
    headers.set("x-ratelimit-remaining", "unlimited");
    headers.set("x-ratelimit-reset", String(Math.floor(Date.now() / 1000)));
    return;
  }
  headers.set("x-ratelimit-limit", String(budget.limit));
  headers.set("x-ratelimit-remaining", String(budget.remaining));
  headers.set("x-ratelimit-reset", String(budget.resetAt));
}

async function account(limiter: Limiter, headers: Map<string, string>, principal: Principal, cost: 0 | 1): Promise<Budget | "unlimited"> {
  const budget = principal.rateLimit === null ? "unlimited" : await limiter.take(principal.workspaceId, principal.rateLimit, cost);
  setHeaders(headers, budget);
  return budget;
}

export interface RateLimitPolicies {
  /** Right after auth: answers refused before `enforce` (scope, plan) still show the budget, without spending it. */
  readonly report: Step;
  /** Spends one token, or answers 429 RATE_LIMITED. */
  readonly enforce: Step;
}

export function createRateLimitPolicies(limiter: Limiter): RateLimitPolicies {
  return {
    async report(req, next) {
      try {
        return await next();
      } finally {
        if (req.principal !== undefined && !req.responseHeaders.has("x-ratelimit-limit")) {
          await account(limiter, req.responseHeaders, req.principal, 0).catch(() => undefined);
        }
      }
    },
    async enforce(req, next) {
      if (req.principal === undefined) throw new Error("rate limit ran before auth");
      const budget = await account(limiter, req.responseHeaders, req.principal, 1);
      if (budget !== "unlimited" && !budget.allowed) {
        const retryAfter = Math.max(1, budget.retryAfter);
        throw new HttpError(429, "RATE_LIMITED", `request budget of ${budget.limit} per hour used up; retry in ${retryAfter} s`, undefined, { "retry-after": String(retryAfter) });
      }
      return next();
    },
  };
}
