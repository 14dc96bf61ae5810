import { Code, ConnectError } from "@connectrpc/connect";
import { CustomersService, WorkspacesService } from "@linquid/contracts";
import { describe, expect, it } from "vitest";
import { createPeerFailureInterceptor, isSafeMethod } from "../../src/host.js";

/** A Node system error as sockets raise them. */
function sysError(code: string): NodeJS.ErrnoException {
  const e = new Error(code.toLowerCase()) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}
const reset = () => new ConnectError("read ECONNRESET", Code.Aborted, undefined, undefined, sysError("ECONNRESET"));

/** Runs the interceptor around a `next` that answers from `script`, one entry per attempt. */
async function call(method: (typeof CustomersService.methods)[number] | (typeof WorkspacesService.methods)[number], script: Array<() => Promise<unknown>>, signal = new AbortController().signal) {
  let attempts = 0;
  const next = (async () => script[attempts++]!()) as never;
  const req = { method, stream: false, signal } as never;
  try {
    await createPeerFailureInterceptor("customers")(next)(req);
    return { attempts, code: "ok" as const };
  } catch (err) {
    return { attempts, code: Code[ConnectError.from(err).code], message: ConnectError.from(err).rawMessage };
  }
}

const get = CustomersService.methods.find((m) => m.name === "GetCustomer")!;
const create = CustomersService.methods.find((m) => m.name === "CreateCustomer")!;
const authenticate = WorkspacesService.methods.find((m) => m.name === "AuthenticateApiKey")!;

describe("calls to a peer that got no answer", () => {
  it("knows the safe methods from the contract: GET mappings and NO_SIDE_EFFECTS", () => {
    expect(isSafeMethod(get)).toBe(true);
    expect(isSafeMethod(authenticate)).toBe(true);
    expect(isSafeMethod(create)).toBe(false);
  });

  it("sends a safe call whose connection broke once more, and answers what the second attempt gets", async () => {
    expect(await call(get, [async () => Promise.reject(reset()), async () => ({})])).toEqual({ attempts: 2, code: "ok" });
    expect(await call(authenticate, [async () => Promise.reject(reset()), async () => Promise.reject(reset())])).toMatchObject({ attempts: 2, code: "Unavailable", message: "customers service unavailable" });
  });

  it("never sends a call with side effects twice; it answers UNAVAILABLE, not an internal error", async () => {
    expect(await call(create, [async () => Promise.reject(reset()), async () => ({})])).toMatchObject({ attempts: 1, code: "Unavailable" });
  });

  it("does not retry a break that came after a PING window (a hung peer), a refusal, or the caller's own cancel", async () => {
    const slow = async () => {
      await new Promise((r) => setTimeout(r, 1100));
      throw new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled);
    };
    expect(await call(get, [slow, async () => ({})])).toMatchObject({ attempts: 1, code: "Unavailable" });
    const refused = async () => Promise.reject(new ConnectError("connect ECONNREFUSED", Code.Unavailable, undefined, undefined, sysError("ECONNREFUSED")));
    expect(await call(get, [refused, async () => ({})])).toMatchObject({ attempts: 1, code: "Unavailable" });
    const gaveUp = new AbortController();
    gaveUp.abort();
    const cancelled = async () => Promise.reject(new ConnectError("This operation was aborted", Code.Canceled));
    expect(await call(get, [cancelled, async () => ({})], gaveUp.signal)).toMatchObject({ attempts: 1, code: "Canceled" });
  });

  it("passes the peer's own answers through", async () => {
    expect(await call(get, [async () => Promise.reject(new ConnectError("customer not found", Code.NotFound))])).toMatchObject({ attempts: 1, code: "NotFound" });
  });
});
