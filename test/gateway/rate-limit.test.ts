/**
 * End to end: per-workspace request budgets, in Redis (one budget shared by two gateways), and
 * with Redis unreachable.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

describe("rate limits end to end", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh();
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("a workspace with rateLimit 5 gets 429 with Retry-After on the 6th request; headers count down", async () => {
    const { key } = await mesh.workspace({ rateLimit: 5 });
    const seen: Array<[number, string | null, string | null]> = [];
    for (let i = 0; i < 5; i++) {
      const r = await mesh.request(i % 2 === 0 ? "GET" : "POST", i % 2 === 0 ? "/customers" : "/customers", { key, ...(i % 2 === 1 ? { body: { externalId: `rl-${i}` } } : {}) });
      expect(r.status).toBeLessThan(300);
      seen.push([r.status, r.headers.get("x-ratelimit-limit"), r.headers.get("x-ratelimit-remaining")]);
      const reset = Number(r.headers.get("x-ratelimit-reset"));
      expect(reset).toBeGreaterThan(Date.now() / 1000);
      expect(reset).toBeLessThanOrEqual(Date.now() / 1000 + 3601);
    }
    expect(seen.map(([, limit, rem]) => [limit, rem])).toEqual([
      ["5", "4"],
      ["5", "3"],
      ["5", "2"],
      ["5", "1"],
      ["5", "0"],
    ]);
    const sixth = await mesh.request("GET", "/customers", { key });
    expect(sixth).toMatchObject({ status: 429, body: { success: false, error: { code: "RATE_LIMITED" } } });
    const retryAfter = Number(sixth.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(720);
    expect(sixth.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(sixth.headers.get("x-request-id")).toBeTruthy();
    // Another workspace is unaffected.
    const other = await mesh.workspace({ rateLimit: 5 });
    expect((await mesh.request("GET", "/customers", { key: other.key })).headers.get("x-ratelimit-remaining")).toBe("4");
  });

  it("concurrent requests never exceed the budget", async () => {
    const { key } = await mesh.workspace({ rateLimit: 10 });
    const statuses = await Promise.all(Array.from({ length: 30 }, () => mesh.request("GET", "/customers/count", { key }).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(20);
  });

  it("unlimited workspaces are marked unlimited and never refused", async () => {
    const { key } = await mesh.workspace({ rateLimit: "unlimited" });
    for (let i = 0; i < 3; i++) {
      const r = await mesh.request("GET", "/customers/count", { key });
      expect(r.status).toBe(200);
      expect(r.headers.get("x-ratelimit-limit")).toBe("unlimited");
      expect(r.headers.get("x-ratelimit-remaining")).toBe("unlimited");
      expect(Number(r.headers.get("x-ratelimit-reset"))).toBeGreaterThan(0);
    }
  });
});

describe("rate limits with Redis unreachable", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ REDIS_URL: "redis://127.0.0.1:1" });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("the API still answers, uncached, and still limits per process", async () => {
    const { key } = await mesh.workspace({ rateLimit: 4 });
    expect((await mesh.request("POST", "/customers", { key, body: { externalId: "nr-1" } })).status).toBe(201);
    const cohorts = await mesh.request("GET", "/customers/cohorts", { key });
    expect(cohorts.status).toBe(200);
    expect(cohorts.headers.get("x-cache")).toBe("MISS");
    expect((await mesh.request("GET", "/customers/ext_nr-1", { key })).headers.get("x-ratelimit-remaining")).toBe("1");
    expect((await mesh.request("GET", "/customers/count", { key })).status).toBe(200);
    const limited = await mesh.request("GET", "/customers/count", { key });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("rate limits in Redis, shared by two gateways", () => {
  let a: TestMesh;
  let b: TestMesh;
  let redis: Redis;
  beforeAll(async () => {
    a = await startTestMesh();
    // A second gateway (and replicas of the services) on the same databases and the same Redis.
    b = await startTestMesh({ MONGODB_DB_PREFIX: a.config.mongodbDbPrefix });
    redis = new Redis(inject("redisUrl"));
  });
  afterAll(async () => {
    redis?.disconnect();
    await b?.stop();
    await a?.stop();
  });

  it("spends one bucket, the Redis key rl:{workspace}, from either gateway: the budget holds across both", async () => {
    const { id, key } = await a.workspace({ rateLimit: 10 });
    const remaining: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await (i % 2 === 0 ? a : b).request("GET", "/customers/count", { key });
      expect(r.status).toBe(200);
      remaining.push(r.headers.get("x-ratelimit-remaining")!);
    }
    // Each gateway sees what the other spent: one count, not two per-process ones.
    expect(remaining).toEqual(["9", "8", "7", "6", "5", "4"]);
    const bucket = await redis.hgetall(`rl:{${id}}`);
    expect(Number(bucket["tokens"])).toBeCloseTo(4, 1);
    expect(Number(bucket["ts"])).toBeGreaterThan(Date.now() - 60_000);
    expect(await redis.pttl(`rl:{${id}}`)).toBeGreaterThan(0);
    // Concurrently through both: exactly the 4 left are admitted.
    const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).request("GET", "/customers/count", { key }).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    expect(statuses.filter((s) => s === 429)).toHaveLength(16);
    expect(Number(await redis.hget(`rl:{${id}}`, "tokens"))).toBeLessThan(1);
  });
});
