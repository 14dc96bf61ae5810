/**
 * Per-workspace request budgets: a token bucket holding `rateLimit` tokens that refills at
 * `rateLimit` per hour. A request takes one token; none left → 429 RATE_LIMITED with
 * Retry-After (seconds until the next token).
 *
 * The bucket lives in Redis and is updated by ONE Lua script (read, refill, take, write,
 * expire), so concurrent gateways never over-admit; the script reads Redis's own clock, so
 * gateway clocks do not matter.
 *
 * Across a Redis outage the budget holds within a stated bound:
 * - Each gateway keeps, per workspace, what the last Redis answer left (its mirror). While
 *   Redis is unready or a call fails, the same algorithm runs in-process from that mirror, not
 *   from a full bucket, so the API keeps answering and keeps limiting.
 * - When Redis answers again, the first call for a workspace that spent tokens in-process
 *   passes its own count as a cap: the shared bucket resumes from no more than that, whether
 *   Redis kept its data (a partition) or restarted empty (which would otherwise start full).
 * Bound: one gateway never admits more across an outage than the budget allows without one
 * (what was left, plus the normal refill). With N gateways, each spends its own copy while
 * Redis is away: at most N × (what was left when the outage began + the refill during it);
 * afterwards the shared bucket holds no more than the smallest of their remainders. A gateway
 * that never saw a workspace's bucket (started during the outage, or forgot it among more than
 * 100,000 workspaces) starts that workspace full. docs/failure-modes.md measures it.
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
export interface LocalLimiter extends Limiter {
  /** Tokens the workspace's bucket holds now (refilled); undefined when it has none yet. */
  tokens(workspaceId: string, limit: number): number | undefined;
  /** Sets the workspace's bucket to `tokens` as of now (a mirror of the shared bucket). */
  seed(workspaceId: string, tokens: number): void;
}

export function createLocalLimiter(options: { windowMs?: number; now?: () => number; maxEntries?: number } = {}): LocalLimiter {
  const windowMs = options.windowMs ?? HOUR_MS;
  const now = options.now ?? Date.now;
  const maxEntries = options.maxEntries ?? 100_000;
  const buckets = new Map<string, BucketState>();
  const put = (workspaceId: string, state: BucketState) => {
    buckets.delete(workspaceId);
    buckets.set(workspaceId, state);
    // A forgotten bucket is a full one, the safe side for the caller.
    while (buckets.size > maxEntries) buckets.delete(buckets.keys().next().value!);
  };
  return {
    async take(workspaceId, limit, cost) {
      const r = step(buckets.get(workspaceId), limit, windowMs, now(), cost);
      if (cost === 1) put(workspaceId, r.state);
      return r.budget;
    },
    tokens(workspaceId, limit) {
      const state = buckets.get(workspaceId);
      return state === undefined ? undefined : step(state, limit, windowMs, now(), 0).state.tokens;
    },
    seed(workspaceId, tokens) {
      put(workspaceId, { tokens, ts: now() });
    },
  };
}

/**
 * KEYS[1] bucket hash; ARGV: limit, window ms, cost (0|1), and optionally a cap: what the
 * caller counted as left while it could not reach Redis (the bucket resumes from no more).
 * Returns {allowed, remaining, retry ms, full ms, now ms, tokens left (exact, as text)}. Uses
 * Redis TIME, so every gateway shares one clock; a bucket idle for a whole window expires (it
 * would be full anyway).
 */
export const TOKEN_BUCKET_LUA = `
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
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
if cap ~= nil then tokens = math.max(0, math.min(tokens, cap)) end
local allowed = 0
if tokens >= 1 then allowed = 1 end
if cost == 1 or cap ~= nil then
  if cost == 1 and allowed == 1 then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], window)
end
if cost == 0 then allowed = 1 end
local retry = 0
if allowed == 0 then retry = math.ceil((1 - tokens) * window / limit) end
local full = math.ceil((limit - tokens) * window / limit)
return {allowed, math.floor(tokens), retry, full, now, tostring(tokens)}
`;

const SCRIPT_SHA = createHash("sha1").update(TOKEN_BUCKET_LUA).digest("hex");

/** The key of a workspace's bucket in Redis. */
export function bucketKey(workspaceId: string): string {
  return `rl:{${workspaceId}}`;
}

/** A Redis limiter that also tells the exact tokens left and accepts a cap (see TOKEN_BUCKET_LUA). */
export interface RedisLimiter extends Limiter {
  takeCapped(workspaceId: string, limit: number, cost: 0 | 1, cap: number | undefined): Promise<{ budget: Budget; tokens: number }>;
}

/** Buckets in Redis; throws when Redis does. */
export function createRedisLimiter(redis: Redis, options: { windowMs?: number } = {}): RedisLimiter {
  const windowMs = options.windowMs ?? HOUR_MS;
  const run = async (key: string, args: string[]): Promise<unknown> => {
    try {
      return await redis.evalsha(SCRIPT_SHA, 1, key, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(TOKEN_BUCKET_LUA, 1, key, ...args);
    }
  };
  const takeCapped: RedisLimiter["takeCapped"] = async (workspaceId, limit, cost, cap) => {
    const args = [String(limit), String(windowMs), String(cost), ...(cap === undefined ? [] : [String(cap)])];
    const out = (await redisCall("ratelimit", () => run(bucketKey(workspaceId), args))) as unknown[];
    const [allowed, remaining, retryMs, fullMs, nowMs] = out.slice(0, 5).map(Number) as [number, number, number, number, number];
    return {
      budget: { allowed: allowed === 1, limit, remaining, resetAt: Math.ceil((nowMs + fullMs) / 1000), retryAfter: Math.ceil(retryMs / 1000) },
      tokens: Number(out[5]),
    };
  };
  return {
    takeCapped,
    async take(workspaceId, limit, cost) {
      return (await takeCapped(workspaceId, limit, cost, undefined)).budget;
    },
  };
}

/**
 * Redis when it answers, the in-process buckets otherwise, never failing because of Redis; the
 * in-process bucket of a workspace mirrors its last Redis answer, and what it spent while Redis
 * was away caps the shared bucket when Redis is back (see the module comment for the bound).
 */
export function createFallbackLimiter(redis: Redis | undefined, logger: Logger, options: { windowMs?: number; now?: () => number; maxEntries?: number } = {}): Limiter {
  const local = createLocalLimiter(options);
  const remote = redis === undefined ? undefined : createRedisLimiter(redis, options);
  // Workspaces that spent in-process since their last Redis answer (insertion-ordered, bounded).
  const spentAlone = new Set<string>();
  const maxEntries = options.maxEntries ?? 100_000;
  let warnedAt = 0;
  return {
    async take(workspaceId, limit, cost) {
      if (remote !== undefined && redisReady(redis)) {
        try {
          const cap = spentAlone.has(workspaceId) ? local.tokens(workspaceId, limit) : undefined;
          const r = await remote.takeCapped(workspaceId, limit, cost, cap);
          spentAlone.delete(workspaceId);
          local.seed(workspaceId, r.tokens);
          return r.budget;
        } catch (err) {
          if (Date.now() - warnedAt > 60_000) {
            warnedAt = Date.now();
            logger.warn("rate limit: redis call failed, limiting in-process", { error: (err as Error).message });
          }
        }
      }
      const budget = await local.take(workspaceId, limit, cost);
      if (cost === 1 && remote !== undefined) {
        spentAlone.delete(workspaceId);
        spentAlone.add(workspaceId);
        while (spentAlone.size > maxEntries) spentAlone.delete(spentAlone.values().next().value!);
      }
      return budget;
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
