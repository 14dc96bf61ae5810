/**
 * Calls to the services of this process: the handler is called directly, with nothing
 * serialized and no protocol in between, yet the call behaves as it does over gRPC to another
 * process, so plugins cannot tell the two layouts apart:
 *
 * - the client interceptors, then the server interceptors, run around the handler, each seeing
 *   the request and response a remote call gives them (headers, trace context, context values
 *   of its own side);
 * - the deadline: the handler's context reports what is left of it (`timeoutMs()`), its signal
 *   fires when it passes or the caller gives up, and the caller gets DEADLINE_EXCEEDED (or
 *   CANCELED) at that moment even while the handler still runs;
 * - errors reach the caller as the wire would carry them: code, message, details and metadata
 *   (headers and trailers), never the cause; anything thrown that is not a ConnectError arrives
 *   as INTERNAL "internal error", like a remote server answers it; a method nobody registered
 *   is UNIMPLEMENTED;
 * - server-streaming calls are cancelled (the handler's signal fires, so the host's stream
 *   wrapper closes it) when the caller aborts or the deadline passes.
 *
 * What is not copied: request and response messages are handed over as they are (a remote call
 * would decode fresh copies), so neither side may change a message after passing it on; no
 * service does. This is what the path saves over Connect's createRouterTransport: binary
 * encoding and decoding of both messages, an HTTP request and response in memory, and two
 * aborted controllers (each throwing a DOMException) per call.
 */
import { create, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createServiceImplSpec,
  type ConnectRouter,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";

type Handler = (req: unknown, ctx: HandlerContext) => unknown;
type AnyFn = (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>;


interface Registered {
  readonly method: DescMethod;
  readonly impl: Handler;
  /** The URL a request of this method carries (interceptors may read it). */
  readonly url: string;
}

export interface InProcessOptions {
  /** Run around every call on the caller's side, first to last. */
  readonly clientInterceptors?: readonly Interceptor[];
  /** Run around every handler on the service's side, first to last. */
  readonly serverInterceptors?: readonly Interceptor[];
}

const PROTOCOL = "in-process";

/** The handlers `routes` registers, by method (unimplemented methods answer UNIMPLEMENTED, as Connect's router does). */
function collect(routes: (router: ConnectRouter) => void): Map<DescMethod, Registered> {
  const handlers = new Map<DescMethod, Registered>();
  const add = (method: DescMethod, impl: Handler) => handlers.set(method, { method, impl, url: `https://${PROTOCOL}/${method.parent.typeName}/${method.name}` });
  const noOptions = (options: object | undefined) => {
    // Per-service handler options (interceptors, limits) would make this path differ from the server's.
    if (options !== undefined && Object.keys(options).length > 0) throw new Error("in-process calls take no per-service handler options");
  };
  const router: ConnectRouter = {
    handlers: [],
    service(service, impl, options) {
      noOptions(options);
      const spec = createServiceImplSpec(service, impl);
      for (const m of Object.values(spec.methods)) add(m.method, m.impl as Handler);
      return router;
    },
    rpc(method, impl, options) {
      noOptions(options);
      add(method, impl as Handler);
      return router;
    },
  };
  routes(router);
  return handlers;
}

const applyInterceptors = (next: AnyFn, interceptors: readonly Interceptor[]): AnyFn => interceptors.reduceRight((fn, i) => i(fn as never) as unknown as AnyFn, next);

/**
 * One call: its signal, which fires (with a ConnectError as reason) when the caller's signal
 * does or the deadline passes, and the headers and trailers of the service's answer. Nothing is
 * aborted when the call simply ends: an aborted controller costs an exception, and nothing here
 * holds resources that need it.
 */
class Call {
  private readonly controller = new AbortController();
  readonly deadline: number | undefined;
  /** The answer's headers and trailers, once the handler's context exists. */
  header: Headers | undefined;
  trailer: Headers | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onCallerAbort: (() => void) | undefined;

  constructor(
    private readonly caller: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ) {
    if (caller !== undefined) {
      this.onCallerAbort = () => this.abort(ConnectError.from(caller.reason, Code.Canceled));
      if (caller.aborted) this.onCallerAbort();
      else caller.addEventListener("abort", this.onCallerAbort);
    }
    // As Connect's transports read it: no timeout, or one of 0 or less, is no deadline.
    if (timeoutMs !== undefined && timeoutMs > 0 && !this.signal.aborted) {
      this.deadline = Date.now() + timeoutMs;
      this.timer = setTimeout(() => this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private abort(reason: ConnectError): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    this.done();
  }

  /** Stops watching the deadline and the caller's signal. */
  done(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.onCallerAbort !== undefined) this.caller!.removeEventListener("abort", this.onCallerAbort);
  }

  /** `work`, or the signal's reason as soon as it fires. */
  race<T>(work: Promise<T>): Promise<T> {
    const signal = this.signal;
    if (signal.aborted) {
      work.catch(() => undefined);
      return Promise.reject(signal.reason as Error);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener("abort", onAbort, { once: true });
      work.then(
        (v) => {
          signal.removeEventListener("abort", onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(e as Error);
        },
      );
    });
  }

  /**
   * An error of the service's side as the caller of a remote call receives it: a fresh
   * ConnectError with the code, message, details and metadata (the answer's headers and
   * trailers, and the error's own metadata unless it came from another call), no cause. The
   * call's own deadline or cancellation passes as it is (it never crossed the wire).
   */
  received(err: unknown): ConnectError {
    if (this.signal.aborted && err === this.signal.reason) return err as ConnectError;
    const ce = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal);
    const metadata = new Headers(this.header);
    this.trailer?.forEach((v, k) => metadata.set(k, v));
    if (!ce.isWireError) ce.metadata.forEach((v, k) => metadata.set(k, v));
    const out = new ConnectError(ce.rawMessage, ce.code, metadata);
    out.details = ce.details;
    out.isWireError = true;
    return out;
  }
}

function handlerContext(r: Registered, req: UnaryRequest | StreamRequest, call: Call): HandlerContext {
  const deadline = call.deadline;
  const responseHeader = new Headers();
  const responseTrailer = new Headers();
  call.header = responseHeader;
  call.trailer = responseTrailer;
  return {
    method: r.method,
    service: r.method.parent,
    signal: req.signal,
    timeoutMs: deadline === undefined ? () => undefined : () => deadline - Date.now(),
    requestMethod: req.requestMethod,
    requestHeader: req.header,
    responseHeader,
    responseTrailer,
    protocolName: PROTOCOL,
    values: req.contextValues,
    url: req.url,
  };
}

async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  return first.value;
}

async function* normalized(schema: DescMessage, messages: AsyncIterable<unknown>): AsyncGenerator<unknown> {
  for await (const m of messages) yield create(schema, m as never);
}

/** The response stream as the caller reads it: cut by the call's signal, errors as received. */
function callerStream(messages: AsyncIterable<unknown>, call: Call): AsyncIterable<unknown> {
  return {
    [Symbol.asyncIterator]() {
      const it = messages[Symbol.asyncIterator]();
      return {
        async next() {
          try {
            const r = await call.race(it.next());
            if (r.done === true) call.done();
            return r;
          } catch (err) {
            call.done();
            throw call.received(err);
          }
        },
      };
    },
  };
}

/**
 * A transport to the handlers `routes` registers, for the services of this process (see the
 * module comment). `routes` is called once, when the transport is made.
 */
export function createInProcessTransport(routes: (router: ConnectRouter) => void, options: InProcessOptions = {}): Transport {
  const handlers = collect(routes);
  const clientInterceptors = options.clientInterceptors ?? [];
  const serverInterceptors = options.serverInterceptors ?? [];

  const find = (method: DescMethod): Registered => {
    const r = handlers.get(method);
    if (r !== undefined) return r;
    // A descriptor of the same method loaded twice is still the same method.
    for (const candidate of handlers.values()) if (candidate.method.parent.typeName === method.parent.typeName && candidate.method.name === method.name) return candidate;
    throw new ConnectError(`${method.parent.typeName}/${method.name} is not served by this process`, Code.Unimplemented);
  };

  /** The service's side: the server interceptors around the handler. */
  const serve = (r: Registered, call: Call): AnyFn =>
    applyInterceptors(async (req) => {
      const ctx = handlerContext(r, req, call);
      if (!req.stream) {
        const message = create(r.method.output, (await r.impl(req.message, ctx)) as never);
        return { stream: false, service: r.method.parent, method: r.method, header: ctx.responseHeader, trailer: ctx.responseTrailer, message } as UnaryResponse;
      }
      const output = r.impl(await single(req.message), ctx) as AsyncIterable<unknown>;
      return { stream: true, service: r.method.parent, method: r.method, header: ctx.responseHeader, trailer: ctx.responseTrailer, message: normalized(r.method.output, output) } as StreamResponse;
    }, serverInterceptors);

  /**
   * The caller's side: the client interceptors around the service's side, which they see as
   * they would see a remote service — errors as received, cut off at the deadline or when the
   * caller gives up; the service gets context values of its own.
   */
  const dial = (method: DescMethod, call: Call): AnyFn =>
    applyInterceptors(async (req) => {
      try {
        const res = await call.race(serve(find(method), call)({ ...req, contextValues: createContextValues() }));
        return res.stream ? ({ ...res, message: callerStream(res.message, call) } as StreamResponse) : res;
      } catch (err) {
        throw call.received(err);
      }
    }, clientInterceptors);

  const request = (method: DescMethod, call: Call, header: ConstructorParameters<typeof Headers>[0], contextValues: ContextValues | undefined) => ({
    service: method.parent,
    requestMethod: "POST",
    url: handlers.get(method)?.url ?? `https://${PROTOCOL}/${method.parent.typeName}/${method.name}`,
    signal: call.signal,
    header: new Headers(header),
    contextValues: contextValues ?? createContextValues(),
  });

  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const call = new Call(signal, timeoutMs);
      try {
        const req = { ...request(method, call, header, contextValues), stream: false, method, message: create(method.input, input) } as UnaryRequest;
        return (await dial(method, call)(req)) as never;
      } catch (err) {
        // As Connect's own transports do with what an interceptor throws.
        throw ConnectError.from(err);
      } finally {
        call.done();
      }
    },

    async stream(method, signal, timeoutMs, header, input, contextValues) {
      const call = new Call(signal, timeoutMs);
      try {
        if (method.methodKind !== "server_streaming") throw new ConnectError(`${method.parent.typeName}/${method.name}: only server-streaming methods are served in process`, Code.Unimplemented);
        const req = { ...request(method, call, header, contextValues), stream: true, method, message: normalized(method.input, input) } as StreamRequest;
        return (await dial(method, call)(req)) as never;
      } catch (err) {
        call.done();
        throw ConnectError.from(err);
      }
    },
  };
}
