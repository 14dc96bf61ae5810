import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createAuthenticator, credentialsOf, grantedScopes, hashKey, keyOf, type ResolveKeyHash } from "../../src/auth.js";
import type { Principal } from "../../src/context.js";
import { toHttpError } from "../../src/error-map.js";
import { HttpError } from "../../src/http-error.js";

const KEY = "lw_live_" + "A".repeat(43);
const OTHER = "lw_test_" + "b".repeat(43);
const principal: Principal = { workspaceId: "ws_1", keyId: "key_1", scopes: new Set(["links:read"]), entitlements: new Set(), rateLimit: 5 };

function fakeWorkspaces(known: Map<string, Principal>) {
  const calls: string[] = [];
  let down = false;
  const resolve: ResolveKeyHash = async (hash) => {
    calls.push(hash);
    await new Promise((r) => setTimeout(r, 1));
    if (down) throw new ConnectError("connection refused", Code.Unavailable);
    const p = known.get(hash);
    if (p === undefined) throw new ConnectError("unknown or revoked API key", Code.Unauthenticated);
    return p;
  };
  return { resolve, calls, setDown: (d: boolean) => (down = d) };
}

async function status(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return e instanceof HttpError ? `${e.status} ${e.code}` : e;
  }
}

describe("API key extraction", () => {
  it.each([
    [{ "x-api-key": KEY }, KEY],
    [{ authorization: `Bearer ${KEY}` }, KEY],
    [{ authorization: `bearer   ${KEY} ` }, KEY],
    [{ "x-api-key": KEY, authorization: `Bearer ${KEY}` }, KEY],
    [{ "x-api-key": KEY, authorization: `Basic ${OTHER}` }, KEY],
    [{ "x-api-key": KEY, authorization: `Bearer ${OTHER}` }, undefined],
    [{ authorization: `Basic ${KEY}` }, undefined],
    [{ authorization: "Bearer" }, undefined],
    [{ "x-api-key": "  " }, undefined],
    [{}, undefined],
  ])("%j → %s", (headers, key) => {
    expect(keyOf(headers)).toBe(key);
  });
});

describe("conflicting credentials", () => {
  it.each([
    // Two Authorization lines (node:http keeps only the first in `headers`; headersDistinct has both).
    [{ authorization: `Bearer ${KEY}` }, { authorization: [`Bearer ${KEY}`, `Bearer ${OTHER}`] }, "conflict"],
    [{ authorization: `Bearer ${KEY}` }, { authorization: [`Bearer ${KEY}`, `Bearer ${KEY}`] }, "key"],
    // Repeated headers joined with commas, as fetch and proxies send them.
    [{ authorization: `Bearer ${KEY}, Bearer ${OTHER}` }, undefined, "conflict"],
    [{ "x-api-key": `${KEY}, ${OTHER}` }, undefined, "conflict"],
    [{ "x-api-key": `${KEY}, ${KEY}` }, undefined, "key"],
    [{ "x-api-key": KEY }, { "x-api-key": [KEY, OTHER] }, "conflict"],
    [{ "x-api-key": KEY, authorization: `Bearer ${OTHER}` }, undefined, "conflict"],
    [{ "x-api-key": KEY, authorization: `Basic abc, Bearer ${KEY}` }, undefined, "key"],
    [{ authorization: "Basic abc" }, { authorization: ["Basic abc", "Basic def"] }, "none"],
  ])("%j %j → %s", (headers, distinct, kind) => {
    expect(credentialsOf(headers, distinct).kind).toBe(kind);
  });
});

describe("scopes", () => {
  it("links:write grants create, update and delete, not read", () => {
    expect([...grantedScopes(["links:write"])].sort()).toEqual(["links:create", "links:delete", "links:update", "links:write"]);
    expect(grantedScopes(["links:write"]).has("links:read")).toBe(false);
    expect([...grantedScopes(["events:write"])]).toEqual(["events:write"]);
  });
});

describe("authenticator", () => {
  it("refuses malformed keys without asking the workspaces service", async () => {
    const ws = fakeWorkspaces(new Map());
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 2000 });
    for (const bad of ["sk_live_" + "a".repeat(43), "lw_live_short", "lw_prod_" + "a".repeat(43), KEY + "!", "lw_live_" + "a".repeat(300)]) {
      expect(await status(auth.authenticate(bad))).toBe("401 INVALID_API_KEY");
    }
    expect(ws.calls).toEqual([]);
  });

  it("sends only the SHA-256 of the key", async () => {
    const ws = fakeWorkspaces(new Map([[hashKey(KEY), principal]]));
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 2000 });
    expect(await auth.authenticate(KEY)).toBe(principal);
    expect(ws.calls).toEqual([hashKey(KEY)]);
    expect(ws.calls[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(ws.calls.join()).not.toContain(KEY.slice(8));
  });

  it("caches a principal for the TTL, then asks again (a revoked key stops within the TTL)", async () => {
    let t = 0;
    const known = new Map([[hashKey(KEY), principal]]);
    const ws = fakeWorkspaces(known);
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 2000, now: () => t });
    await auth.authenticate(KEY);
    known.delete(hashKey(KEY)); // revoked
    t = 1999;
    expect(await status(auth.authenticate(KEY))).toBe("ok");
    expect(ws.calls).toHaveLength(1);
    t = 2000;
    expect(await status(auth.authenticate(KEY))).toBe("401 INVALID_API_KEY");
    expect(ws.calls).toHaveLength(2);
  });

  it("never trusts a principal longer than 5 s, whatever it is told", async () => {
    let t = 0;
    const known = new Map([[hashKey(KEY), principal]]);
    const ws = fakeWorkspaces(known);
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 60_000, now: () => t });
    await auth.authenticate(KEY);
    t = 5000;
    await auth.authenticate(KEY);
    expect(ws.calls).toHaveLength(2);
  });

  it("remembers unknown keys for at most 1 s", async () => {
    let t = 0;
    const known = new Map<string, Principal>();
    const ws = fakeWorkspaces(known);
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 5000, now: () => t });
    expect(await status(auth.authenticate(KEY))).toBe("401 INVALID_API_KEY");
    expect(await status(auth.authenticate(KEY))).toBe("401 INVALID_API_KEY");
    expect(ws.calls).toHaveLength(1);
    known.set(hashKey(KEY), principal); // the key is created
    t = 1000;
    expect(await status(auth.authenticate(KEY))).toBe("ok");
    expect(ws.calls).toHaveLength(2);
  });

  it("shares one lookup among concurrent requests with one key", async () => {
    const ws = fakeWorkspaces(new Map());
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 0 });
    const results = await Promise.all(Array.from({ length: 50 }, () => status(auth.authenticate(KEY))));
    expect(new Set(results)).toEqual(new Set(["401 INVALID_API_KEY"]));
    expect(ws.calls).toHaveLength(1);
  });

  it("answers 503 while the workspaces service is unreachable, and does not cache that", async () => {
    const ws = fakeWorkspaces(new Map([[hashKey(KEY), principal]]));
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 2000 });
    ws.setDown(true);
    // Unavailable, which the error map answers like any dependency: 503 with Retry-After.
    const err = toHttpError(await auth.authenticate(KEY).catch((e: unknown) => e));
    expect(err).toMatchObject({ status: 503, code: "SERVICE_UNAVAILABLE", headers: { "retry-after": "1" } });
    ws.setDown(false);
    expect(await status(auth.authenticate(KEY))).toBe("ok");
  });

  it("turns other lookup failures into an internal error, not a 401", async () => {
    const auth = createAuthenticator({ resolve: async () => Promise.reject(new ConnectError("bug", Code.Internal)), ttlMs: 2000 });
    const err = await auth.authenticate(KEY).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
  });

  it("keeps the cache bounded", async () => {
    const known = new Map<string, Principal>();
    const keys = Array.from({ length: 20 }, (_, i) => `lw_live_${String(i).padStart(43, "k")}`);
    for (const k of keys) known.set(hashKey(k), principal);
    const ws = fakeWorkspaces(known);
    const auth = createAuthenticator({ resolve: ws.resolve, ttlMs: 5000, maxEntries: 10 });
    for (const k of keys) await auth.authenticate(k);
    await auth.authenticate(keys[19]!); // recent: cached
    expect(ws.calls).toHaveLength(20);
    await auth.authenticate(keys[0]!); // oldest: evicted
    expect(ws.calls).toHaveLength(21);
  });
});
