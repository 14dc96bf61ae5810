import { createLogger } from "@linquid/mesh";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Answer, GatewayRequest, Principal } from "../../src/context.js";
import { HttpError } from "../../src/http-error.js";
import { createFallbackLimiter, createLocalLimiter, createRateLimitPolicies, HOUR_MS } from "../../src/rate-limit.js";

const T0 = Date.UTC(2026, 3, 1, 12);

describe("token bucket (in-process)", () => {
  it("admits `limit` requests at once, then refuses with Retry-After until a token refills", async () => {
    let t = T0;
    const limiter = createLocalLimiter({ now: () => t });
    const remaining: number[] = [];
    for (let i = 0; i < 5; i++) {
      const b = await limiter.take("ws", 5, 1);
      expect(b.allowed).toBe(true);
      remaining.push(b.remaining);
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);
    const refused = await limiter.take("ws", 5, 1);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfter: 720 });
    // Full again an hour after the burst started.
    expect(refused.resetAt).toBe(Math.ceil((T0 + HOUR_MS) / 1000));
    t = T0 + 719_000;
    expect((await limiter.take("ws", 5, 1)).allowed).toBe(false);
    t = T0 + 720_000;
    expect((await limiter.take("ws", 5, 1)).allowed).toBe(true);
  });

  it("keeps workspaces apart", async () => {
    const limiter = createLocalLimiter({ now: () => T0 });
    for (let i = 0; i < 3; i++) await limiter.take("a", 3, 1);
    expect((await limiter.take("a", 3, 1)).allowed).toBe(false);
    expect((await limiter.take("b", 3, 1)).allowed).toBe(true);
  });

  it("looking (cost 0) spends nothing", async () => {
    const limiter = createLocalLimiter({ now: () => T0 });
    await limiter.take("ws", 2, 1);
    for (let i = 0; i < 10; i++) expect(await limiter.take("ws", 2, 0)).toMatchObject({ allowed: true, remaining: 1 });
    expect((await limiter.take("ws", 2, 1)).remaining).toBe(0);
  });

  it("never admits more than limit + refill over any span (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 50 }), fc.array(fc.integer({ min: 0, max: 600_000 }), { minLength: 1, maxLength: 200 }), async (limit, gaps) => {
        let t = T0;
        const limiter = createLocalLimiter({ now: () => t });
        let admitted = 0;
        for (const g of gaps) {
          t += g;
          if ((await limiter.take("ws", limit, 1)).allowed) admitted++;
        }
        expect(admitted).toBeLessThanOrEqual(limit + Math.floor(((t - T0) * limit) / HOUR_MS));
        // And a request after a whole idle window always passes.
        t += HOUR_MS;
        expect((await limiter.take("ws", limit, 1)).remaining).toBe(limit - 1);
      }),
      { numRuns: 200, seed: 3 },
    );
  });

  it("falls back to the in-process bucket without Redis", async () => {
    const limiter = createFallbackLimiter(undefined, createLogger("t", "error"));
    expect((await limiter.take("ws", 1, 1)).allowed).toBe(true);
    expect((await limiter.take("ws", 1, 1)).allowed).toBe(false);
  });
});

describe("rate-limit policies", () => {
  const principal = (rateLimit: number | null): Principal => ({ workspaceId: "ws_rl", keyId: "k", scopes: new Set(), entitlements: new Set(), rateLimit });
  const request = (p: Principal): GatewayRequest => ({
    method: "GET",
    path: "/customers",
    query: new URLSearchParams(),
    headers: {},
    readBody: async () => Buffer.alloc(0),
    responseHeaders: new Map(),
    principal: p,
  });
  const ok = async (): Promise<Answer> => ({ status: 200, body: "{}" });

  it("sets the budget headers and answers 429 with Retry-After when spent", async () => {
    const { enforce } = createRateLimitPolicies(createLocalLimiter({ now: () => T0 }));
    const p = principal(2);
    const r1 = request(p);
    await enforce(r1, ok);
    expect(Object.fromEntries(r1.responseHeaders)).toEqual({ "x-ratelimit-limit": "2", "x-ratelimit-remaining": "1", "x-ratelimit-reset": String(Math.ceil((T0 + HOUR_MS / 2) / 1000)) });
    await enforce(request(p), ok);
    const r3 = request(p);
    const err = await enforce(r3, ok).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({ status: 429, code: "RATE_LIMITED", headers: { "retry-after": "1800" } });
    expect(r3.responseHeaders.get("x-ratelimit-remaining")).toBe("0");
  });

  it("marks unlimited workspaces as such and never refuses them", async () => {
    const { enforce } = createRateLimitPolicies(createLocalLimiter());
    for (let i = 0; i < 20; i++) {
      const r = request(principal(null));
      await enforce(r, ok);
      expect(r.responseHeaders.get("x-ratelimit-limit")).toBe("unlimited");
      expect(r.responseHeaders.get("x-ratelimit-remaining")).toBe("unlimited");
      expect(Number(r.responseHeaders.get("x-ratelimit-reset"))).toBeGreaterThan(1_700_000_000);
    }
  });

  it("report shows the budget on answers refused before enforcement, spending nothing", async () => {
    const { report, enforce } = createRateLimitPolicies(createLocalLimiter({ now: () => T0 }));
    const p = principal(3);
    const r = request(p);
    await expect(report(r, async () => Promise.reject(new HttpError(403, "FORBIDDEN", "no")))).rejects.toBeInstanceOf(HttpError);
    expect(r.responseHeaders.get("x-ratelimit-remaining")).toBe("3");
    const r2 = request(p);
    await report(r2, () => enforce(r2, ok));
    expect(r2.responseHeaders.get("x-ratelimit-remaining")).toBe("2");
  });
});
