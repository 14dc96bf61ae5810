import { Code, ConnectError } from "@connectrpc/connect";
import { MongoBulkWriteError, MongoNetworkError, MongoNetworkTimeoutError, MongoServerError, MongoServerSelectionError } from "mongodb";
import { describe, expect, it } from "vitest";
import { fromMongoError, fromPeerError, isBrokenConnection, isLockTimeoutError, isPeerUnreachable, isTlsFailure, isUnavailable, unavailable } from "../../src/errors.js";

/** A Node system error as sockets raise them. */
function sysError(code: string, message = `${code.toLowerCase()}`): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

describe("database errors", () => {
  const network = new MongoNetworkError("connection 3 to 127.0.0.1:27017 closed", { cause: sysError("ECONNRESET") });
  const timeout = new MongoNetworkTimeoutError("connection <monitor> to 127.0.0.1:27017 timed out");
  const selection = new MongoServerSelectionError("connect ECONNREFUSED 127.0.0.1:27017", { type: "Unknown", servers: new Map(), stale: false, compatible: true, heartbeatFrequencyMS: 1000, localThresholdMS: 15, setName: null, maxElectionId: null, maxSetVersion: null, commonWireVersion: 0, logicalSessionTimeoutMinutes: null } as never);

  it.each([
    ["a network error", network],
    ["a network timeout", timeout],
    ["a server selection failure", selection],
    // The driver's bulk writes keep the error that interrupted them as errorResponse.
    ["a bulk write interrupted by a network error", new MongoBulkWriteError(network as never, {} as never)],
    ["a bulk write interrupted by a timeout", new MongoBulkWriteError(timeout as never, {} as never)],
    ["a bulk write that found no server", new MongoBulkWriteError(selection as never, {} as never)],
    ["a server shutting down", new MongoServerError({ ok: 0, code: 91, codeName: "ShutdownInProgress", errmsg: "shutting down" })],
    ["a server interrupted at shutdown", new MongoServerError({ ok: 0, code: 11600, codeName: "InterruptedAtShutdown", errmsg: "interrupted" })],
  ])("maps %s to UNAVAILABLE, the original kept as cause", (_, err) => {
    const mapped = fromMongoError(err, "events.insertMany");
    expect(mapped.code).toBe(Code.Unavailable);
    expect(mapped.rawMessage).toBe("events.insertMany: database unavailable");
    expect(mapped.cause).toBe(err);
  });

  it("maps a lock wait that ran out (LockTimeout, 24: an overloaded database) to UNAVAILABLE, the original kept as cause", () => {
    // What the embedded database answers when SQLite's write lock stays taken past its busy timeout (patch 10).
    const lock = new MongoServerError({ ok: 0, code: 24, codeName: "LockTimeout", errmsg: "Unable to acquire the database's write lock within its busy timeout: database is locked (5) (SQLITE_BUSY)" });
    for (const err of [lock, new MongoBulkWriteError(lock as never, {} as never)]) {
      const mapped = fromMongoError(err, "sale_credits.replaceOne");
      expect(mapped.code).toBe(Code.Unavailable);
      expect(mapped.rawMessage).toBe("sale_credits.replaceOne: database busy");
      expect(mapped.cause).toBe(err);
      expect(isLockTimeoutError(err)).toBe(true);
      expect(isUnavailable(mapped)).toBe(true);
    }
    // The same wait stopped by the command's maxTimeMS: DEADLINE_EXCEEDED, which the gateway also answers with 503.
    const expired = fromMongoError(new MongoServerError({ ok: 0, code: 50, codeName: "MaxTimeMSExpired", errmsg: "operation exceeded time limit" }), "sale_credits.replaceOne");
    expect(expired.code).toBe(Code.DeadlineExceeded);
    expect(isUnavailable(expired)).toBe(true);
    // What the embedded database answered before patch 10: an internal error, 500.
    expect(fromMongoError(new MongoServerError({ ok: 0, code: 1, codeName: "InternalError", errmsg: "database is locked (5) (SQLITE_BUSY)" }), "c.replaceOne").code).toBe(Code.Internal);
  });

  it("keeps the other translations", () => {
    expect(fromMongoError(new MongoServerError({ ok: 0, code: 11000, errmsg: "E11000 duplicate key" }), "c.insertOne").code).toBe(Code.AlreadyExists);
    expect(fromMongoError(new MongoServerError({ ok: 0, code: 50, errmsg: "time limit" }), "c.find").code).toBe(Code.DeadlineExceeded);
    expect(fromMongoError(new MongoServerError({ ok: 0, code: 2, errmsg: "bad value" }), "c.find").code).toBe(Code.Internal);
    // A bulk write's own write error (not a network failure) stays internal.
    const writeErrors = new MongoBulkWriteError({ message: "bad", code: 2, writeErrors: [] } as never, {} as never);
    expect(fromMongoError(writeErrors, "c.bulkWrite").code).toBe(Code.Internal);
    const already = new ConnectError("x", Code.NotFound);
    expect(fromMongoError(already, "c.find")).toBe(already);
  });
});

describe("errors of calls to other services", () => {
  // What connect-node raises when the peer's connection breaks under a call, or is refused.
  const reset = new ConnectError("read ECONNRESET", Code.Aborted, undefined, undefined, sysError("ECONNRESET", "read ECONNRESET"));
  const refused = new ConnectError("connect ECONNREFUSED 127.0.0.1:8090", Code.Unavailable, undefined, undefined, sysError("ECONNREFUSED"));
  const goaway = new ConnectError("stream closed", Code.Internal, undefined, undefined, sysError("ERR_HTTP2_GOAWAY_SESSION"));
  const ping = new ConnectError("PING timed out", Code.Unavailable);
  // An answer of the service itself carries no Node error.
  const answered = new ConnectError("customer not found", Code.NotFound);
  const internal = new ConnectError("boom", Code.Internal);

  it("turns a call that got no answer into UNAVAILABLE, whatever connect-node called it", () => {
    for (const err of [reset, refused, goaway, ping]) {
      expect(isPeerUnreachable(err)).toBe(true);
      const mapped = fromPeerError(err, "analytics") as ConnectError;
      expect(mapped.code).toBe(Code.Unavailable);
      expect(mapped.rawMessage).toBe("analytics service unavailable");
      expect(mapped.cause).toBe(err);
    }
  });

  it("tells a stream cancelled by its connection's end (the peer died) from the caller giving up", () => {
    const cancelled = new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled);
    expect((fromPeerError(cancelled, "analytics") as ConnectError).code).toBe(Code.Unavailable);
    expect(isBrokenConnection(cancelled)).toBe(true);
    expect(fromPeerError(cancelled, "analytics", true)).toBe(cancelled);
    expect(isBrokenConnection(cancelled, true)).toBe(false);
  });

  it("passes the service's own answers through, deadlines included", () => {
    const deadline = new ConnectError("deadline", Code.DeadlineExceeded, undefined, undefined, sysError("ETIMEDOUT"));
    for (const err of [answered, internal, deadline]) {
      expect(isPeerUnreachable(err)).toBe(false);
      expect(fromPeerError(err, "analytics")).toBe(err);
    }
  });

  it("tells a broken connection (worth one retry on a fresh one) from a refused one", () => {
    expect(isBrokenConnection(reset)).toBe(true);
    expect(isBrokenConnection(goaway)).toBe(true);
    expect(isBrokenConnection(refused)).toBe(false);
    expect(isBrokenConnection(ping)).toBe(false);
    expect(isBrokenConnection(answered)).toBe(false);
  });

  it("turns a peer without a trusted TLS connection into UNAVAILABLE naming why, never retried", () => {
    // What connect-node raises when the peer's certificate is not from TLS_CA, or it speaks no TLS.
    const untrusted = new ConnectError("self-signed certificate in certificate chain", Code.Internal, undefined, undefined, sysError("SELF_SIGNED_CERT_IN_CHAIN"));
    const plaintextPeer = new ConnectError("wrong version number", Code.Internal, undefined, undefined, sysError("ERR_SSL_WRONG_VERSION_NUMBER"));
    for (const err of [untrusted, plaintextPeer]) {
      expect(isTlsFailure(err)).toBe(true);
      const mapped = fromPeerError(err, "workspaces") as ConnectError;
      expect(mapped.code).toBe(Code.Unavailable);
      expect(mapped.rawMessage).toBe(`workspaces service unavailable: no trusted TLS connection (${err.rawMessage})`);
      expect(isBrokenConnection(err)).toBe(false);
    }
    expect(isTlsFailure(reset)).toBe(false);
  });

  it("has one notion of unavailable", () => {
    expect(isUnavailable(unavailable("database"))).toBe(true);
    expect(isUnavailable(new ConnectError("late", Code.DeadlineExceeded))).toBe(true);
    expect(isUnavailable(answered)).toBe(false);
    expect(unavailable("workspaces service").rawMessage).toBe("workspaces service unavailable");
  });
});
