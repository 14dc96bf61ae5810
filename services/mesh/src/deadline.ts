/**
 * The time budget of the RPC being served, carried to everything done on its behalf.
 *
 * The host runs every unary handler inside a deadline scope taken from the Connect handler
 * context (`ctx.timeoutMs()`, set by the caller's deadline). Database calls read it through
 * `dbCall` (mongo.ts), which sends what is left as `maxTimeMS`, so the database stops working
 * on a query nobody waits for any more; calls to other services made from the handler inherit
 * it as their timeout (host.ts). Work outside any RPC (sweepers, start-up) and RPCs without a
 * deadline get `DEFAULT_TIMEOUT_MS` per call.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Code, ConnectError, type ConnectRouter, type Transport } from "@connectrpc/connect";
import { wrapHandlers } from "./handlers.js";

/** Budget of one database call when no RPC deadline applies: the gateway's own RPC deadline. */
export const DEFAULT_TIMEOUT_MS = 15_000;

interface Scope {
  /** Epoch milliseconds; undefined when the RPC has no deadline. */
  readonly deadline: number | undefined;
}

const scopes = new AsyncLocalStorage<Scope>();

/** Runs `fn` with a deadline `timeoutMs` from now (undefined: none) for everything it calls. */
export function runWithDeadline<T>(timeoutMs: number | undefined, fn: () => T): T {
  return scopes.run({ deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs }, fn);
}

/**
 * Runs `fn` outside the current RPC's deadline: for background work an RPC starts but does not
 * wait for (it would otherwise inherit a deadline that passes while it runs).
 */
export function runDetached<T>(fn: () => T): T {
  return scopes.exit(fn);
}

/** Milliseconds left of the current RPC's deadline; undefined outside an RPC or without one. */
export function inheritedTimeoutMs(): number | undefined {
  const deadline = scopes.getStore()?.deadline;
  return deadline === undefined ? undefined : deadline - Date.now();
}

/**
 * The budget of the next call: what is left of the RPC's deadline, or `DEFAULT_TIMEOUT_MS`.
 * Throws DEADLINE_EXCEEDED when nothing is left, so no call starts that cannot finish.
 */
export function remainingMs(): number {
  const left = inheritedTimeoutMs();
  if (left === undefined) return DEFAULT_TIMEOUT_MS;
  if (left <= 0) throw new ConnectError("deadline exceeded before the call", Code.DeadlineExceeded);
  return Math.ceil(left);
}

/** The options every database command carries: `{ maxTimeMS }` from `remainingMs()`. */
export function dbTimeout(): { maxTimeMS: number } {
  return { maxTimeMS: remainingMs() };
}

/**
 * A router that registers every handler inside a deadline scope (see the file comment); the
 * host hands it to the plugins, so no handler has to pass its context down by hand.
 * Streaming handlers return iterables that run after the call returns: they are left as they are.
 */
export function withRpcDeadlines(router: ConnectRouter): ConnectRouter {
  return wrapHandlers(router, (method, impl) =>
    method.methodKind !== "unary" ? impl : (req, ctx) => runWithDeadline(ctx.timeoutMs(), () => impl(req, ctx)),
  );
}

/**
 * A transport whose calls without a timeout of their own get what is left of the deadline of
 * the RPC being served, so a downstream service stops when its caller's caller stopped waiting.
 */
export function inheritDeadlines(transport: Transport): Transport {
  const timeout = (own: number | undefined): number | undefined => {
    if (own !== undefined) return own;
    const left = inheritedTimeoutMs();
    // At least 1 ms: a spent deadline still makes the call fail with DEADLINE_EXCEEDED.
    return left === undefined ? undefined : Math.max(1, Math.floor(left));
  };
  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) => transport.unary(method, signal, timeout(timeoutMs), header, input, contextValues),
    stream: (method, signal, timeoutMs, header, input, contextValues) => transport.stream(method, signal, timeout(timeoutMs), header, input, contextValues),
  };
}
