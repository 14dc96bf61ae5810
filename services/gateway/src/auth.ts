/**
 * Authentication and scopes. The API key (X-API-Key or Authorization: Bearer) is checked for
 * shape, hashed (SHA-256) and resolved through WorkspacesService.AuthenticateApiKey; only the
 * hash leaves this module, and only the resolved principal travels on.
 *
 * Principals are cached in-process for AUTH_CACHE_TTL_MS (at most 5 s, so a revoked key stops
 * working within seconds); unknown keys are remembered for at most 1 s, and concurrent
 * lookups of one key share one call, so a flood of guesses costs the workspaces service little.
 */
import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal, Step } from "./context.js";
import { HttpError } from "./http-error.js";

/** Resolves a key hash; throws ConnectError Unauthenticated for unknown or revoked keys. */
export type ResolveKeyHash = (keyHash: string) => Promise<Principal>;

export interface Authenticator {
  /** The principal of a plaintext key; throws HttpError 401/503. */
  authenticate(key: string): Promise<Principal>;
}

export interface AuthenticatorOptions {
  readonly resolve: ResolveKeyHash;
  /** How long a resolved principal is trusted (AUTH_CACHE_TTL_MS). 0 = ask every time. */
  readonly ttlMs: number;
  /** How long an unknown key is remembered; capped at 1 s and at ttlMs. */
  readonly negativeTtlMs?: number;
  readonly maxEntries?: number;
  readonly now?: () => number;
}

/** `lw_live_` or `lw_test_` and at least 128 bits of base64url. */
const KEY_SHAPE = /^lw_(?:live|test)_[A-Za-z0-9_-]{22,256}$/;

/** Scopes implied by another. */
const IMPLIED: Readonly<Record<string, readonly string[]>> = {
  "links:write": ["links:create", "links:update", "links:delete"],
};

/** A key's scopes with implications expanded. */
export function grantedScopes(scopes: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const s of scopes) {
    out.add(s);
    for (const i of IMPLIED[s] ?? []) out.add(i);
  }
  return out;
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

const invalidKey = () => new HttpError(401, "INVALID_API_KEY", "invalid API key");

/** Key resolution with a short in-process cache and shared in-flight lookups. */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const now = options.now ?? Date.now;
  const ttl = Math.min(options.ttlMs, 5000);
  const negativeTtl = Math.min(options.negativeTtlMs ?? 1000, 1000, ttl);
  const maxEntries = options.maxEntries ?? 10_000;
  const cache = new Map<string, { principal: Principal | null; expires: number }>();
  const inFlight = new Map<string, Promise<Principal | null>>();

  const remember = (hash: string, principal: Principal | null) => {
    const life = principal === null ? negativeTtl : ttl;
    if (life <= 0) return;
    cache.delete(hash);
    cache.set(hash, { principal, expires: now() + life });
    // Maps iterate in insertion order: the first key is the oldest.
    while (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
  };

  const lookup = async (hash: string): Promise<Principal | null> => {
    try {
      const p = await options.resolve(hash);
      remember(hash, p);
      return p;
    } catch (err) {
      const ce = err instanceof ConnectError ? err : undefined;
      if (ce?.code === Code.Unauthenticated) {
        remember(hash, null);
        return null;
      }
      if (ce !== undefined && (ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded || ce.code === Code.Canceled)) {
        throw new HttpError(503, "SERVICE_UNAVAILABLE", "API keys cannot be checked right now, try again shortly");
      }
      // Anything else is a fault, not the caller's: a generic 500, logged by the pipeline.
      throw new ConnectError("API key lookup failed", Code.Internal, undefined, undefined, err);
    }
  };

  return {
    async authenticate(key) {
      if (!KEY_SHAPE.test(key)) throw invalidKey();
      const hash = hashKey(key);
      const hit = cache.get(hash);
      if (hit !== undefined) {
        if (hit.expires > now()) {
          if (hit.principal === null) throw invalidKey();
          return hit.principal;
        }
        cache.delete(hash);
      }
      let pending = inFlight.get(hash);
      if (pending === undefined) {
        pending = lookup(hash).finally(() => inFlight.delete(hash));
        inFlight.set(hash, pending);
      }
      const principal = await pending;
      if (principal === null) throw invalidKey();
      return principal;
    },
  };
}

/** The key a request carries, or undefined when it carries none. */
export function keyOf(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  const x = headers["x-api-key"];
  if (typeof x === "string" && x.trim() !== "") return x.trim();
  const auth = headers["authorization"];
  if (typeof auth === "string") {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    if (m !== null) return m[1];
  }
  return undefined;
}

/** Resolves the caller: 401 UNAUTHORIZED without a key, 401 INVALID_API_KEY for a bad one. */
export function createAuthPolicy(authenticator: Authenticator): Step {
  return async (req, next) => {
    const key = keyOf(req.headers);
    if (key === undefined) throw new HttpError(401, "UNAUTHORIZED", "missing API key: send it as X-API-Key or Authorization: Bearer");
    req.principal = await authenticator.authenticate(key);
    return next();
  };
}

/** The route's scope must be among the key's: 403 FORBIDDEN otherwise. */
export function createScopePolicy(): Step {
  return async (req, next) => {
    const scope = req.route?.route.policy.scope;
    if (scope === undefined || req.principal === undefined) throw new Error("scope policy ran before routing or auth");
    if (!req.principal.scopes.has(scope)) throw new HttpError(403, "FORBIDDEN", `this API key lacks the ${scope} scope`);
    return next();
  };
}
