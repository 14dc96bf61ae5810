import { createLogger, createRedis, newId } from "@linquid/mesh";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createCachePolicy, createSnapshotCache, generationKey } from "../../src/cache.js";
import type { Answer, GatewayRequest, Principal } from "../../src/context.js";
import { REST_SERVICES } from "../../src/index.js";
import { startInvalidationFeed } from "../../src/invalidations.js";
import { bucketKey, createFallbackLimiter, createRedisLimiter, HOUR_MS } from "../../src/rate-limit.js";
import { buildRoutes, createRouteTable } from "../../src/route-table.js";
import { decodeRequest } from "../../src/transcoder.js";

const logger = createLogger("test", "error");
let redis: ReturnType<typeof createRedis>;
beforeAll(async () => {
  redis = createRedis(inject("redisUrl"), logger);
  await new Promise<void>((resolve) => (redis.status === "ready" ? resolve() : redis.once("ready", () => resolve())));
});
afterAll(() => redis.disconnect());

describe("token bucket in Redis", () => {
  it("admits exactly `limit` of many concurrent requests (one atomic script)", async () => {
    const limiter = createRedisLimiter(redis);
    const ws = newId("ws");
    const results = await Promise.all(Array.from({ length: 60 }, () => limiter.take(ws, 10, 1)));
    expect(results.filter((r) => r.allowed)).toHaveLength(10);
    const refused = results.find((r) => !r.allowed)!;
    expect(refused.retryAfter).toBe(360);
    expect(refused.resetAt).toBeGreaterThan(Date.now() / 1000 + 3500);
    expect(results.map((r) => r.remaining).sort((a, b) => a - b)[0]).toBe(0);
    // The bucket expires once it would be full anyway.
    const ttl = await redis.pttl(`rl:{${ws}}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(HOUR_MS);
  });

  it("matches the in-process algorithm and refills with time", async () => {
    const limiter = createRedisLimiter(redis, { windowMs: 1000 });
    const ws = newId("ws");
    expect((await limiter.take(ws, 2, 1)).remaining).toBe(1);
    expect((await limiter.take(ws, 2, 1)).remaining).toBe(0);
    expect((await limiter.take(ws, 2, 1)).allowed).toBe(false);
    expect((await limiter.take(ws, 2, 0)).allowed).toBe(true); // a look is always allowed
    await new Promise((r) => setTimeout(r, 600));
    expect((await limiter.take(ws, 2, 1)).allowed).toBe(true);
  });

  it("survives a SCRIPT FLUSH (reloads the script)", async () => {
    const limiter = createRedisLimiter(redis);
    await limiter.take(newId("ws"), 3, 1);
    await redis.script("FLUSH");
    expect((await limiter.take(newId("ws"), 3, 1)).allowed).toBe(true);
  });

  it("holds the budget across an outage: the fallback continues from the last Redis answer, and Redis resumes from the fallback's count, restarted empty or not", async () => {
    let ready = true;
    const flaky = new Proxy(redis, { get: (t, p) => (p === "status" ? (ready ? "ready" : "reconnecting") : Reflect.get(t, p)) });
    const limiter = createFallbackLimiter(flaky, logger);
    const admitted = async (n: number, ws: string) => (await Promise.all(Array.from({ length: n }, () => limiter.take(ws, 10, 1)))).filter((b) => b.allowed).length;

    // Redis restarted empty during the outage.
    const ws = newId("ws");
    expect(await admitted(4, ws)).toBe(4);
    expect(Number(await redis.hget(bucketKey(ws), "tokens"))).toBeCloseTo(6, 1);
    ready = false;
    expect(await admitted(10, ws)).toBe(6); // from what Redis left, not a full bucket
    await redis.del(bucketKey(ws));
    ready = true;
    expect(await admitted(10, ws)).toBe(0); // an empty Redis would have started full
    expect(Number(await redis.hget(bucketKey(ws), "tokens"))).toBeLessThan(1);

    // Redis kept its bucket (a partition): what was spent meanwhile still counts.
    const ws2 = newId("ws");
    expect(await admitted(3, ws2)).toBe(3);
    ready = false;
    expect(await admitted(5, ws2)).toBe(5);
    ready = true;
    expect(await admitted(10, ws2)).toBe(2);
  });

  it("shares one budget among gateways through Redis", async () => {
    const gateways = [createFallbackLimiter(redis, logger), createFallbackLimiter(redis, logger)];
    const ws = newId("ws");
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => gateways[i % 2]!.take(ws, 10, 1)));
    expect(results.filter((r) => r.allowed)).toHaveLength(10);
    expect(await redis.exists(bucketKey(ws))).toBe(1);
  });

  it("falls back in-process when Redis is unreachable", async () => {
    const down = createRedis("redis://127.0.0.1:1", logger);
    try {
      const limiter = createFallbackLimiter(down, logger);
      expect((await limiter.take("ws", 1, 1)).allowed).toBe(true);
      expect((await limiter.take("ws", 1, 1)).allowed).toBe(false);
    } finally {
      down.disconnect();
    }
  });
});

describe("snapshot cache in Redis", () => {
  const table = createRouteTable(buildRoutes(REST_SERVICES));
  const principal = (ws: string): Principal => ({ workspaceId: ws, keyId: "k", scopes: new Set(), entitlements: new Set(), rateLimit: null });
  function request(ws: string, method: string, path: string, query = ""): GatewayRequest {
    const m = table.match(method, path, new URLSearchParams(query));
    if (m.kind !== "found") throw new Error("no route");
    const req: GatewayRequest = { method, path, query: new URLSearchParams(query), headers: {}, readBody: async () => Buffer.alloc(0), responseHeaders: new Map(), route: m.match, principal: principal(ws) };
    req.canonicalQuery = decodeRequest(m.match, req.query, undefined, ws).canonicalQuery;
    return req;
  }
  let computed = 0;
  const compute = (status = 200) => async (): Promise<Answer> => ({ status, body: JSON.stringify({ success: status === 200, n: ++computed }) });

  it("serves a snapshot on the second read, and a fresh one after a write of the workspace", async () => {
    const cache = createCachePolicy({ redis, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const ws = newId("ws");
    const r1 = request(ws, "GET", "/customers/ext_alice%40example.com/journey");
    const a1 = await cache(r1, compute());
    expect(r1.responseHeaders.get("x-cache")).toBe("MISS");
    const r2 = request(ws, "GET", "/customers/ext_alice%40example.com/journey");
    const a2 = await cache(r2, compute());
    expect(r2.responseHeaders.get("x-cache")).toBe("HIT");
    expect(a2).toEqual(a1);
    // Another query, another snapshot; equivalent queries share one.
    const r3 = request(ws, "GET", "/customers/ext_alice%40example.com/journey", "limit=5");
    await cache(r3, compute());
    expect(r3.responseHeaders.get("x-cache")).toBe("MISS");
    const r4 = request(ws, "GET", "/customers/ext_alice%40example.com/journey", "limit=05&ignored=1");
    await cache(r4, compute());
    expect(r4.responseHeaders.get("x-cache")).toBe("HIT");
    // Another workspace never sees it.
    const other = request(newId("ws"), "GET", "/customers/ext_alice%40example.com/journey");
    await cache(other, compute());
    expect(other.responseHeaders.get("x-cache")).toBe("MISS");

    // A write bumps the generation before answering.
    const before = await redis.get(generationKey(ws));
    await cache(request(ws, "POST", "/track/lead"), compute());
    const after = await redis.get(generationKey(ws));
    // A fresh random generation, never a count a restarted Redis could reach again.
    expect(after).toMatch(/^[0-9a-f]{16}$/);
    expect(after).not.toBe(before);
    const r5 = request(ws, "GET", "/customers/ext_alice%40example.com/journey");
    const a5 = await cache(r5, compute());
    expect(r5.responseHeaders.get("x-cache")).toBe("MISS");
    expect(a5).not.toEqual(a1);
    // A failed write bumps nothing.
    await cache(request(ws, "POST", "/track/lead"), compute(400));
    expect(await redis.get(generationKey(ws))).toBe(after);
  });

  it("never writes the external id (or any path text) into Redis keys, and caches only 200s", async () => {
    const cache = createCachePolicy({ redis, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const ws = newId("ws");
    await cache(request(ws, "GET", "/customers/ext_bob-secret/attribution"), compute());
    await cache(request(ws, "GET", "/customers/ext_carol-secret/attribution"), compute(404));
    const keys = await redis.keys(`*${ws}*`);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(new RegExp(`^snap:\\{${ws}\\}:[0-9a-f]{64}$`));
    // The value: the generation it was computed at (none written yet: "0"), its expiry, then the body.
    expect(await redis.get(keys[0]!)).toMatch(/^0\n\d{13}\n\{"success":true/);
    expect(keys.join()).not.toMatch(/secret|bob|carol|attribution/);
    const ttl = await redis.pttl(keys[0]!);
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
  });

  it("reads a snapshot in one Redis round trip, fills a miss with one more, and serves nothing of an older generation", async () => {
    // A client that records every command sent through it.
    const sent: string[][] = [];
    const commands = new Set(redis.getBuiltinCommands());
    const counting = new Proxy(redis, {
      get(target, p, receiver) {
        const v = Reflect.get(target, p, receiver);
        if (typeof p !== "string" || !commands.has(p) || typeof v !== "function") return v;
        return (...args: unknown[]) => {
          sent.push([p, ...args.filter((a) => typeof a === "string" && a.includes("{"))] as string[]);
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const cache = createSnapshotCache({ redis: counting, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const ws = newId("ws");
    const read = async () => {
      sent.length = 0;
      const r = request(ws, "GET", "/customers/cohorts");
      const a = await cache.policy(r, compute());
      return { cache: r.responseHeaders.get("x-cache"), body: a.body, sent: sent.map((c) => c[0]) };
    };
    const miss = await read();
    expect(miss).toMatchObject({ cache: "MISS", sent: ["mget", "set"] });
    const [mget] = sent;
    expect(mget).toEqual(["mget", generationKey(ws), expect.stringMatching(new RegExp(`^snap:\\{${ws}\\}:`))]);
    const hit = await read();
    expect(hit).toEqual({ cache: "HIT", body: miss.body, sent: ["mget"] });
    // A write: a new generation; the snapshot of the old one is not served, and is replaced.
    await cache.policy(request(ws, "POST", "/track/sale"), compute());
    const after = await read();
    expect(after.cache).toBe("MISS");
    expect(after.body).not.toBe(miss.body);
    expect(after.sent).toEqual(["mget", "set"]);
    expect(await redis.keys(`snap:{${ws}}:*`)).toHaveLength(1);
    expect(await read()).toEqual({ cache: "HIT", body: after.body, sent: ["mget"] });
    cache.stop();
  });

  it("fills a missing snapshot once per process: concurrent misses wait for one computation and share its answer or its error", async () => {
    // Counts answered reads, so the fill is released only once every request has read its miss.
    let reads = 0;
    const counting = new Proxy(redis, {
      get(target, p, receiver) {
        const v = Reflect.get(target, p, receiver);
        return p === "mget" ? (...args: unknown[]) => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args).finally(() => reads++) : v;
      },
    });
    const cache = createSnapshotCache({ redis: counting, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const ws = newId("ws");
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = async (): Promise<Answer> => {
      const n = ++calls;
      await gate;
      return { status: 200, body: JSON.stringify({ success: true, n }) };
    };
    const reqs = Array.from({ length: 32 }, () => request(ws, "GET", "/customers/cohorts"));
    const answers = Promise.all(reqs.map((r) => cache.policy(r, slow)));
    // Another snapshot of the workspace is filled on its own.
    const other = cache.policy(request(ws, "GET", "/customers/cohorts", "group_by=month"), slow);
    for (let i = 0; i < 200 && (reads < 33 || calls < 2); i++) await new Promise((r) => setTimeout(r, 5));
    release();
    const bodies = new Set((await answers).map((a) => a.body));
    expect(calls).toBe(2);
    expect(bodies).toEqual(new Set([JSON.stringify({ success: true, n: 1 })]));
    expect((await other).body).toBe(JSON.stringify({ success: true, n: 2 }));
    expect(reqs.map((r) => r.responseHeaders.get("x-cache"))).toEqual(reqs.map(() => "MISS"));
    const next = request(ws, "GET", "/customers/cohorts");
    await cache.policy(next, slow);
    expect(next.responseHeaders.get("x-cache")).toBe("HIT");
    expect(calls).toBe(2);

    // A failed fill fails its waiters with it, and the next read computes again.
    const ws2 = newId("ws");
    let failing = 0;
    const boom = async (): Promise<Answer> => {
      failing++;
      await new Promise((r) => setTimeout(r, 20));
      throw new Error("service down");
    };
    const failed = await Promise.allSettled(Array.from({ length: 8 }, () => cache.policy(request(ws2, "GET", "/customers/cohorts"), boom)));
    expect(failed.every((f) => f.status === "rejected" && (f.reason as Error).message === "service down")).toBe(true);
    expect(failing).toBe(1);
    await cache.policy(request(ws2, "GET", "/customers/cohorts"), compute());
    const r2 = request(ws2, "GET", "/customers/cohorts");
    await cache.policy(r2, compute());
    expect(r2.responseHeaders.get("x-cache")).toBe("HIT");
    cache.stop();
  });

  it("refreshes a snapshot in its last quarter: one read computes the next while the others are served the current one, never past its TTL", async () => {
    let t = Date.now();
    const cache = createSnapshotCache({ redis, ttlOverrideSeconds: 40, maxTtlSeconds: 40, logger, now: () => t });
    const ws = newId("ws");
    let calls = 0;
    let release: () => void = () => undefined;
    const answer = async (): Promise<Answer> => {
      const n = ++calls;
      if (n > 1) await new Promise<void>((r) => (release = r));
      return { status: 200, body: JSON.stringify({ success: true, n }) };
    };
    const read = async () => {
      const r = request(ws, "GET", "/customers/cohorts");
      const a = await cache.policy(r, answer);
      return [r.responseHeaders.get("x-cache"), JSON.parse(a.body).n as number];
    };
    expect(await read()).toEqual(["MISS", 1]);
    // Three quarters of its life: still served, nothing computed.
    t += 29_000;
    expect(await read()).toEqual(["HIT", 1]);
    expect(calls).toBe(1);
    // In its last quarter: the first read computes the next snapshot, the reads meanwhile are
    // served the current one at once.
    t += 2_000;
    const refreshing = read();
    for (let i = 0; i < 200 && calls < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(calls).toBe(2);
    expect(await Promise.all([read(), read(), read()])).toEqual([["HIT", 1], ["HIT", 1], ["HIT", 1]]);
    release();
    expect(await refreshing).toEqual(["MISS", 2]);
    expect(await read()).toEqual(["HIT", 2]);
    expect(calls).toBe(2);
    // The new snapshot lives a whole TTL from its fill.
    t += 29_000;
    expect(await read()).toEqual(["HIT", 2]);
    expect(calls).toBe(2);
    cache.stop();
  });

  it("never hands a read an answer computed before a write the reader saw acknowledged", async () => {
    const cache = createSnapshotCache({ redis, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const ws = newId("ws");
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const before = cache.policy(request(ws, "GET", "/customers/cohorts"), async () => {
      calls++;
      await gate;
      return { status: 200, body: '{"before":true}' };
    });
    for (let i = 0; i < 100 && calls < 1; i++) await new Promise((r) => setTimeout(r, 5));
    await cache.policy(request(ws, "POST", "/track/lead"), compute()); // acknowledged: a new generation
    const afterReq = request(ws, "GET", "/customers/cohorts");
    const after = cache.policy(afterReq, async () => ({ status: 200, body: '{"after":true}' }));
    expect((await after).body).toBe('{"after":true}');
    release();
    expect((await before).body).toBe('{"before":true}');
    // The late fill of the old generation may overwrite the snapshot, but is never served.
    const again = request(ws, "GET", "/customers/cohorts");
    const a = await cache.policy(again, async () => ({ status: 200, body: '{"after":true}' }));
    expect(a.body).toBe('{"after":true}');
    cache.stop();
  });

  it("CACHE_TTL_SECONDS overrides the TTL; 0 disables caching", async () => {
    const ws = newId("ws");
    const off = createCachePolicy({ redis, ttlOverrideSeconds: 0, maxTtlSeconds: 0, logger });
    for (let i = 0; i < 2; i++) {
      const r = request(ws, "GET", "/customers/cohorts");
      await off(r, compute());
      expect(r.responseHeaders.has("x-cache")).toBe(false);
    }
    const short = createCachePolicy({ redis, ttlOverrideSeconds: 2, maxTtlSeconds: 2, logger });
    await short(request(ws, "GET", "/customers/ltv-cohorts"), compute());
    const [key] = await redis.keys(`snap:{${ws}}:*`);
    expect(await redis.pttl(key!)).toBeLessThanOrEqual(2000);
  });

  it("answers uncached, never failing, when Redis is down", async () => {
    const down = createRedis("redis://127.0.0.1:1", logger);
    try {
      const cache = createCachePolicy({ redis: down, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
      const r = request(newId("ws"), "GET", "/customers/cohorts");
      expect((await cache(r, compute())).status).toBe(200);
      expect(r.responseHeaders.get("x-cache")).toBe("MISS");
      expect((await cache(request("ws", "POST", "/track/click"), compute())).status).toBe(200);
    } finally {
      down.disconnect();
    }
  });

  it("recovers per workspace as soon as Redis answers: only a workspace written while Redis was away skips its snapshots, until its new generation lands", async () => {
    let ready = true;
    const flaky = new Proxy(redis, { get: (t, p) => (p === "status" ? (ready ? "ready" : "reconnecting") : Reflect.get(t, p)) });
    // retryEveryMs: long, so this test sees the debt paid by a read; the timer is checked below.
    const cache = createSnapshotCache({ redis: flaky, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger, retryEveryMs: 60_000 });
    const [a, b] = [newId("ws"), newId("ws")];
    for (const ws of [a, b]) await cache.policy(request(ws, "GET", "/customers/cohorts"), compute());
    ready = false;
    await cache.policy(request(a, "POST", "/track/click"), compute()); // its new generation cannot be written
    expect(cache.owed()).toEqual([a]);
    ready = true;
    // Another workspace reads its snapshots at once: no process-wide distrust.
    const rb = request(b, "GET", "/customers/cohorts");
    await cache.policy(rb, compute());
    expect(rb.responseHeaders.get("x-cache")).toBe("HIT");
    // The written one pays its debt first, so the snapshot from before its write is never served...
    const ra = request(a, "GET", "/customers/cohorts");
    await cache.policy(ra, compute());
    expect(ra.responseHeaders.get("x-cache")).toBe("MISS");
    expect(cache.owed()).toEqual([]);
    // ...and caches again right away.
    const ra2 = request(a, "GET", "/customers/cohorts");
    await cache.policy(ra2, compute());
    expect(ra2.responseHeaders.get("x-cache")).toBe("HIT");
    cache.stop();

    // A debt is also paid in the background as soon as Redis is back, so other gateways stop
    // serving the old snapshot even if this one never reads that workspace again.
    const eager = createSnapshotCache({ redis: flaky, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger, retryEveryMs: 50 });
    const other = createCachePolicy({ redis, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const c = newId("ws");
    await other(request(c, "GET", "/customers/cohorts"), compute());
    ready = false;
    await eager.policy(request(c, "POST", "/track/sale"), compute());
    ready = true;
    for (let i = 0; i < 40 && eager.owed().length > 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(eager.owed()).toEqual([]);
    const rc = request(c, "GET", "/customers/cohorts");
    await other(rc, compute());
    expect(rc.responseHeaders.get("x-cache")).toBe("MISS");
    eager.stop();
  });

  it("drops the snapshots of workspaces listed on an invalidation channel, each entry once, and distrusts all when entries may be missing", async () => {
    const cache = createSnapshotCache({ redis, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger });
    const [a, b] = [newId("ws"), newId("ws")];
    for (const ws of [a, b]) await cache.policy(request(ws, "GET", "/customers/ltv-cohorts"), compute());
    const pages: Array<{ invalidations: Array<{ id: string; workspaceId: string }>; cursor: string; complete: boolean }> = [
      { invalidations: [{ id: "inv_1", workspaceId: a }], cursor: "1", complete: true },
      { invalidations: [{ id: "inv_1", workspaceId: a }], cursor: "2", complete: true }, // a repeat
    ];
    const cursors: string[] = [];
    const feed = startInvalidationFeed({ list: async (cursor) => (cursors.push(cursor), pages.shift() ?? { invalidations: [], cursor, complete: true }), cache, logger, intervalMs: 60_000 });
    await feed.poll();
    const genA = await redis.get(generationKey(a));
    expect(genA).not.toBeNull();
    expect(await redis.get(generationKey(b))).toBeNull();
    await feed.poll();
    expect(await redis.get(generationKey(a))).toBe(genA); // the repeat changed nothing
    expect(cursors).toEqual(["", "1"]);
    const rb = request(b, "GET", "/customers/ltv-cohorts");
    await cache.policy(rb, compute());
    expect(rb.responseHeaders.get("x-cache")).toBe("HIT");
    pages.push({ invalidations: [], cursor: "3", complete: false });
    await feed.poll();
    const rb2 = request(b, "GET", "/customers/ltv-cohorts");
    await cache.policy(rb2, compute());
    expect(rb2.responseHeaders.get("x-cache")).toBe("MISS");
    await feed.stop();
    cache.stop();
  });
});
