import { Code, ConnectError, createClient, createContextKey, createRouterTransport, type ConnectRouter, type HandlerContext, type Interceptor, type Transport } from "@connectrpc/connect";
import { CustomersService, WorkspacesService } from "@linquid/contracts";
import { describe, expect, it } from "vitest";
import { createInProcessTransport } from "../../src/in-process.js";
import { withStreamCancellation } from "../../src/streams.js";
import { invalidArgument, violationsOf } from "../../src/validation.js";

/**
 * The in-process transport against Connect's own in-memory transport, which runs the real
 * protocol (serialization, HTTP semantics, error encoding): every behaviour is checked on both,
 * so the cheap path is held to what a call over the wire does.
 */
type Make = (routes: (router: ConnectRouter) => void, client: Interceptor[], server: Interceptor[]) => Transport;
const transports: Array<[string, Make]> = [
  ["in-process", (routes, client, server) => createInProcessTransport(routes, { clientInterceptors: client, serverInterceptors: server })],
  ["over the Connect protocol", (routes, client, server) => createRouterTransport(routes, { router: { interceptors: server }, transport: { interceptors: client } })],
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errorOf = async (p: Promise<unknown>): Promise<ConnectError> => {
  try {
    await p;
  } catch (err) {
    return err as ConnectError;
  }
  throw new Error("expected the call to fail");
};
const seen = createContextKey<string>("none", { description: "test" });

describe.each(transports)("a call %s", (_name, make) => {
  it("gets the handler's answer as a full message, the request as one too", async () => {
    let got: unknown;
    const t = make((r) => r.service(WorkspacesService, { getWorkspace: (req) => ((got = req), { workspace: { id: req.id, name: "Acme" } }) }), [], []);
    const res = await createClient(WorkspacesService, t).getWorkspace({ id: "ws_1" });
    expect(res.workspace).toMatchObject({ id: "ws_1", name: "Acme", plan: "", currency: "" });
    expect(got).toMatchObject({ $typeName: "linquid.workspaces.v1.GetWorkspaceRequest", id: "ws_1" });
  });

  it("runs client interceptors, then server interceptors, passing headers and trace context; context values stay on their side", async () => {
    const order: string[] = [];
    const client: Interceptor = (next) => async (req) => {
      order.push("client");
      req.header.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
      req.contextValues.set(seen, "client");
      const res = await next(req);
      order.push(`client saw ${res.header.get("x-answered")}`);
      return res;
    };
    const server: Interceptor = (next) => async (req) => {
      order.push(`server saw ${req.header.get("traceparent")?.slice(3, 11)} ${req.contextValues.get(seen)}`);
      return next(req);
    };
    const t = make(
      (r) =>
        r.service(WorkspacesService, {
          getWorkspace: (_req, ctx: HandlerContext) => {
            order.push(`handler saw ${ctx.requestHeader.get("x-request-id")}`);
            ctx.responseHeader.set("x-answered", "yes");
            return {};
          },
        }),
      [client],
      [server],
    );
    await createClient(WorkspacesService, t).getWorkspace({ id: "ws_1" }, { headers: { "x-request-id": "req-1" } });
    expect(order).toEqual(["client", "server saw 0af76519 none", "handler saw req-1", "client saw yes"]);
  });

  it("delivers errors as the wire carries them: code, message, details and metadata, never the cause", async () => {
    const failing = invalidArgument([{ field: "id", issue: "must start with ws_" }]);
    failing.metadata.set("x-why", "because");
    failing.cause = new Error("secret");
    const t = make((r) => r.service(WorkspacesService, { getWorkspace: () => Promise.reject(failing) }), [], []);
    const err = await errorOf(createClient(WorkspacesService, t).getWorkspace({ id: "x" }));
    expect(err).toBeInstanceOf(ConnectError);
    expect(err).not.toBe(failing);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe(failing.rawMessage);
    expect(violationsOf(err)).toEqual([{ field: "id", issue: "must start with ws_" }]);
    expect(err.metadata.get("x-why")).toBe("because");
    expect(err.cause).toBeUndefined();
  });

  it("turns anything else a handler throws into INTERNAL without its message, while server interceptors see the original", async () => {
    let logged: unknown;
    const server: Interceptor = (next) => async (req) => {
      try {
        return await next(req);
      } catch (e) {
        logged = e;
        throw e;
      }
    };
    const t = make((r) => r.service(WorkspacesService, { getWorkspace: () => Promise.reject(new TypeError("x is undefined")) }), [], [server]);
    const err = await errorOf(createClient(WorkspacesService, t).getWorkspace({}));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(logged).toBeInstanceOf(TypeError);
  });

  it("gives the handler the deadline and fails the call with DEADLINE_EXCEEDED when it passes, the handler's signal firing", async () => {
    let left: number | undefined;
    let aborted: Promise<boolean> | undefined;
    const t = make(
      (r) =>
        r.service(WorkspacesService, {
          getWorkspace: async (_req, ctx) => {
            left = ctx.timeoutMs();
            aborted = new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(true)));
            await Promise.race([aborted, sleep(5000)]);
            return {};
          },
        }),
      [],
      [],
    );
    const err = await errorOf(createClient(WorkspacesService, t).getWorkspace({}, { timeoutMs: 300 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(300);
    expect(await aborted).toBe(true);
  });

  it("has no deadline without a timeout, and is CANCELED when the caller aborts", async () => {
    let left: number | undefined = 1;
    let aborted: Promise<boolean> | undefined;
    const t = make(
      (r) =>
        r.service(WorkspacesService, {
          getWorkspace: async (_req, ctx) => {
            left = ctx.timeoutMs();
            aborted = new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(true)));
            await sleep(500);
            return {};
          },
        }),
      [],
      [],
    );
    const caller = new AbortController();
    const call = createClient(WorkspacesService, t).getWorkspace({}, { signal: caller.signal });
    await sleep(30);
    caller.abort();
    expect((await errorOf(call)).code).toBe(Code.Canceled);
    expect(left).toBeUndefined();
    expect(await aborted).toBe(true);
  });

  it("answers UNIMPLEMENTED for a method not registered, and for a service not served", async () => {
    const t = make((r) => r.service(WorkspacesService, { getWorkspace: () => ({}) }), [], []);
    expect((await errorOf(createClient(WorkspacesService, t).createWorkspace({}))).code).toBe(Code.Unimplemented);
    expect((await errorOf(createClient(CustomersService, t).getCustomer({}))).code).toBe(Code.Unimplemented);
  });

  it("streams a server-streaming answer, and delivers an error after the first message as received", async () => {
    const t = make(
      (r) =>
        r.service(CustomersService, {
          async *exportCustomers(req) {
            yield { customers: [{ id: `${req.workspaceId}-1` }] };
            yield { customers: [{ id: `${req.workspaceId}-2` }] };
            throw new ConnectError("database unavailable", Code.Unavailable);
          },
        }),
      [],
      [],
    );
    const ids: string[] = [];
    const err = await errorOf(
      (async () => {
        for await (const m of createClient(CustomersService, t).exportCustomers({ workspaceId: "ws" })) ids.push(...m.customers.map((c) => c.id));
      })(),
    );
    expect(ids).toEqual(["ws-1", "ws-2"]);
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("database unavailable");
  });

  it("stops a streaming handler when the caller aborts", async () => {
    let closed = false;
    const t = make(
      (r) =>
        withStreamCancellation(r).service(CustomersService, {
          async *exportCustomers() {
            try {
              for (let i = 0; ; i++) {
                yield { customers: [{ id: String(i) }] };
                await sleep(5);
              }
            } finally {
              closed = true;
            }
          },
        }),
      [],
      [],
    );
    const caller = new AbortController();
    const it = createClient(CustomersService, t).exportCustomers({}, { signal: caller.signal })[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    caller.abort();
    expect((await errorOf(it.next())).code).toBe(Code.Canceled);
    for (let i = 0; i < 50 && !closed; i++) await sleep(10);
    expect(closed).toBe(true);
  });
});
