/**
 * Server-streaming handlers that stop when their call is cancelled. Connect aborts a call's
 * signal when the client goes away (or returns its stream), but leaves a handler that is an
 * async generator suspended at its `yield` for good: its `finally` blocks never run, and
 * whatever it holds stays held. The host registers every handler through this wrapper, which
 * closes the handler's output (`return()`) when the signal aborts; a generator busy at that
 * moment ends at its next `yield`.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import { wrapHandlers, type AnyHandler } from "./handlers.js";

function closedOnCancel(impl: AnyHandler): AnyHandler {
  return (req, ctx) => {
    const it = (impl(req, ctx) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    const close = () => void it.return?.(undefined)?.catch(() => undefined);
    if (ctx.signal.aborted) close();
    else ctx.signal.addEventListener("abort", close, { once: true });
    return { [Symbol.asyncIterator]: () => it };
  };
}

/** A router whose server-streaming handlers are closed when their call is cancelled. */
export function withStreamCancellation(router: ConnectRouter): ConnectRouter {
  return wrapHandlers(router, (method, impl) => (method.methodKind === "server_streaming" ? closedOnCancel(impl) : impl));
}
