/**
 * Wrapping every handler a router registers, for cross-cutting work the host adds to all of a
 * plugin's methods (the deadline scope, the database watch) without the plugin knowing.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";

/** A handler of any method, as the router sees it. */
export type AnyHandler = (req: unknown, ctx: HandlerContext) => unknown;

/** Returns the handler to register for `method` in place of `impl`. */
export type WrapHandler = (method: DescMethod, impl: AnyHandler) => AnyHandler;

function wrapService<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>, wrap: WrapHandler): Partial<ServiceImpl<S>> {
  const out: Record<string, AnyHandler> = {};
  const methods = impl as unknown as Record<string, AnyHandler | undefined>;
  for (const method of service.methods) {
    const fn = methods[method.localName];
    if (typeof fn === "function") out[method.localName] = wrap(method, fn.bind(impl));
  }
  return out as Partial<ServiceImpl<S>>;
}

/** A router that registers `wrap(method, impl)` for every handler registered through it. */
export function wrapHandlers(router: ConnectRouter, wrap: WrapHandler): ConnectRouter {
  const wrapped: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service, impl, options) {
      router.service(service, wrapService(service, impl, wrap), options);
      return wrapped;
    },
    rpc(method, impl, options) {
      router.rpc(method, wrap(method, impl as AnyHandler) as typeof impl, options);
      return wrapped;
    },
  };
  return wrapped;
}
