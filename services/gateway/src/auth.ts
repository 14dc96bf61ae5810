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
import { isUnavailable, unavailable } from "@linquid/mesh";
import type { GatewayRequest, Principal, Step } from "./context.js";
import { HttpError } from "./http-error.js";

/** Resolves a key hash; throws ConnectError Unauthenticated for unknown or revoked keys. */
export type ResolveKeyHash = (keyHash: string) => Promise<Principal>;

export interface Authenticator {
  /** The principal of a plaintext key; throws HttpError 401, or Unavailable (503) when keys cannot be checked. */
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
      // The workspaces service (or its database) cannot answer: 503 like any dependency (error-map.ts).
      if (ce !== undefined && isUnavailable(ce)) throw unavailable("workspaces service", ce);
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

/** The credentials a request carries: none, one key (possibly sent more than once), or several different ones. */
export type Credentials = { readonly kind: "none" } | { readonly kind: "key"; readonly key: string } | { readonly kind: "conflict" };

type Headers = Readonly<Record<string, string | string[] | undefined>>;

/** Every value of a header, each header line apart (node:http keeps only the first Authorization in `headers`). */
function valuesOf(headers: Headers, distinct: Headers | undefined, name: string): string[] {
  const v = distinct?.[name] ?? headers[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * The keys a request carries, from X-API-Key and `Authorization: Bearer` (any other scheme is
 * no key). A header sent twice, or values joined with commas as clients and proxies join
 * repeated headers, count each; a key never holds a comma. The same key sent several ways is
 * one key; different keys conflict (400: which one was meant cannot be told).
 */
export function credentialsOf(headers: Headers, distinct?: Headers): Credentials {
  const keys = new Set<string>();
  for (const v of valuesOf(headers, distinct, "x-api-key")) {
    for (const part of v.split(",")) if (part.trim() !== "") keys.add(part.trim());
  }
  for (const v of valuesOf(headers, distinct, "authorization")) {
    for (const part of v.split(",")) {
      const m = /^[ \t]*Bearer[ \t]+(\S+)[ \t]*$/i.exec(part);
      if (m !== null) keys.add(m[1]!);
    }
  }
  if (keys.size === 0) return { kind: "none" };
  if (keys.size > 1) return { kind: "conflict" };
  return { kind: "key", key: [...keys][0]! };
}

/** The key a request carries, or undefined when it carries none (or several different ones). */
export function keyOf(headers: Headers, distinct?: Headers): string | undefined {
  const c = credentialsOf(headers, distinct);
  return c.kind === "key" ? c.key : undefined;
}

/**
 * Resolves the caller: 401 UNAUTHORIZED without a key, 401 INVALID_API_KEY for a bad one, 400
 * VALIDATION_ERROR for different keys in one request.
 */
export function createAuthPolicy(authenticator: Authenticator): Step {
  return async (req: GatewayRequest, next) => {
    const c = credentialsOf(req.headers, req.headersDistinct);
    if (c.kind === "none") throw new HttpError(401, "UNAUTHORIZED", "missing API key: send it as X-API-Key or Authorization: Bearer");
    if (c.kind === "conflict") {
      throw new HttpError(400, "VALIDATION_ERROR", "conflicting API keys: send one key, as X-API-Key or Authorization: Bearer", [{ field: "authorization", issue: "more than one API key sent" }]);
    }
    req.principal = await authenticator.authenticate(c.key);
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
