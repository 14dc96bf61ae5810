import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { WorkspaceSchema, WorkspacesService } from "@linquid/contracts";
import { MongoServerError } from "mongodb";
import { describe, expect, it } from "vitest";
import { DEFAULT_TIMEOUT_MS, dbTimeout, inheritDeadlines, remainingMs, runDetached, runWithDeadline, withRpcDeadlines } from "../../src/deadline.js";
import { fromMongoError } from "../../src/errors.js";

const codeOf = (fn: () => unknown): Code | undefined => {
  try {
    fn();
  } catch (err) {
    return ConnectError.from(err).code;
  }
  return undefined;
};

describe("deadline scope", () => {
  it("gives a database call what is left of the RPC's deadline, and the default cap without one", async () => {
    expect(dbTimeout()).toEqual({ maxTimeMS: DEFAULT_TIMEOUT_MS });
    await runWithDeadline(400, async () => {
      const first = remainingMs();
      expect(first).toBeLessThanOrEqual(400);
      expect(first).toBeGreaterThan(300);
      await new Promise((r) => setTimeout(r, 100));
      expect(dbTimeout().maxTimeMS).toBeLessThanOrEqual(first - 90);
    });
    await runWithDeadline(undefined, async () => expect(remainingMs()).toBe(DEFAULT_TIMEOUT_MS));
  });

  it("refuses to start a call once the deadline has passed (DEADLINE_EXCEEDED)", async () => {
    await runWithDeadline(5, async () => {
      await new Promise((r) => setTimeout(r, 20));
      expect(codeOf(() => dbTimeout())).toBe(Code.DeadlineExceeded);
    });
  });

  it("lets background work started by an RPC escape its deadline", async () => {
    await runWithDeadline(5, async () => {
      const background = runDetached(async () => {
        await new Promise((r) => setTimeout(r, 20));
        return remainingMs();
      });
      expect(await background).toBe(DEFAULT_TIMEOUT_MS);
    });
  });

  it("maps MaxTimeMSExpired (code 50) from the database to DEADLINE_EXCEEDED", () => {
    const err = new MongoServerError({ ok: 0, code: 50, codeName: "MaxTimeMSExpired", errmsg: "operation exceeded time limit" });
    const mapped = fromMongoError(err, "events.find");
    expect(mapped.code).toBe(Code.DeadlineExceeded);
    expect(mapped.cause).toBe(err);
  });
});

describe("RPC deadlines", () => {
  // A handler that answers with the budget it sees, and one that calls it without a timeout of its own.
  function transport() {
    let inner: ReturnType<typeof createRouterTransport>;
    const downstream = () => createClient(WorkspacesService, inheritDeadlines(inner));
    inner = createRouterTransport((router) =>
      withRpcDeadlines(router).service(WorkspacesService, {
        getWorkspace: async (req) => {
          if (req.id === "relay") return { workspace: (await downstream().getWorkspace({ id: "leaf" })).workspace! };
          return { workspace: create(WorkspaceSchema, { id: req.id, name: String(remainingMs()) }) };
        },
      }),
    );
    return inner;
  }

  it("runs every handler in the deadline of its call", async () => {
    const client = createClient(WorkspacesService, transport());
    const bounded = Number((await client.getWorkspace({ id: "leaf" }, { timeoutMs: 2000 })).workspace!.name);
    expect(bounded).toBeLessThanOrEqual(2000);
    expect(bounded).toBeGreaterThan(1000);
    expect(Number((await client.getWorkspace({ id: "leaf" })).workspace!.name)).toBe(DEFAULT_TIMEOUT_MS);
  });

  it("passes what is left of it on to the services the handler calls", async () => {
    const client = createClient(WorkspacesService, transport());
    const relayed = Number((await client.getWorkspace({ id: "relay" }, { timeoutMs: 3000 })).workspace!.name);
    expect(relayed).toBeLessThanOrEqual(3000);
    expect(relayed).toBeGreaterThan(2000);
  });
});
