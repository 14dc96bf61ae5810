/**
 * A write that cannot take the embedded database's write lock in time answers MongoDB's
 * LockTimeout (code 24), which the services turn into UNAVAILABLE (503 with Retry-After), not
 * an internal error (scripts/ferretdb, patch 10).
 *
 * SQLite has one write lock per database file. This test starts a FerretDB of its own with a
 * busy timeout of 200 ms (10 s by default), takes the write lock of its database file from a
 * second connection (Node's built-in SQLite: `BEGIN IMMEDIATE` on the same file, as another
 * writer's long transaction would hold it), and writes through the driver meanwhile. It is
 * about the embedded database, so it starts one whatever MONGODB_URI says.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Code } from "@connectrpc/connect";
import { MongoClient, MongoServerError, type Collection } from "mongodb";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { fromMongoError, startFerretDb, type EmbeddedServer } from "@linquid/mesh";

/** MongoDB's codes: a lock wait that ran out, a command stopped by its maxTimeMS, and what upstream FerretDB answered. */
const LOCK_TIMEOUT = 24;
const MAX_TIME_MS_EXPIRED = 50;
const INTERNAL_ERROR = 1;
const BUSY_TIMEOUT_MS = 200;

interface Row {
  _id: string;
  credits: number;
}

let dataDir: string;
let server: EmbeddedServer;
let client: MongoClient;
let rows: Collection<Row>;
/** The second connection holding the write lock, while a test holds it. */
let holder: DatabaseSync | undefined;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "linquid-lock-"));
  // startFerretDb keeps the data in <dataDir>/ferretdb; a later --sqlite-url replaces its own.
  const files = join(dataDir, "ferretdb");
  server = await startFerretDb(inject("ferretdbBin"), dataDir, undefined, [
    `--sqlite-url=file:${files}/?_pragma=synchronous(normal)&_pragma=busy_timeout(${BUSY_TIMEOUT_MS})`,
  ]);
  // One connection per operation at a time is enough; no retries, so each answer is the server's first.
  client = await new MongoClient(server.url, { maxPoolSize: 2, retryWrites: false, retryReads: false }).connect();
  rows = client.db("locks").collection<Row>("sale_credits");
  await rows.insertOne({ _id: "seed", credits: 0 });
});

afterEach(() => releaseLock());

afterAll(async () => {
  releaseLock();
  await client?.close();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Takes the database file's write lock from a second connection, as a long write of another writer would. */
function holdLock(): void {
  holder = new DatabaseSync(join(dataDir, "ferretdb", "locks.sqlite"), { timeout: 5000 });
  holder.exec("BEGIN IMMEDIATE");
}

function releaseLock(): void {
  if (holder === undefined) return;
  holder.exec("ROLLBACK");
  holder.close();
  holder = undefined;
}

/** The server error a write answered with while the lock was held. */
async function failureOf(write: () => Promise<unknown>): Promise<MongoServerError> {
  const err = await write().then(() => undefined, (e: unknown) => e);
  expect(err, "the write succeeded while another connection held the write lock").toBeInstanceOf(MongoServerError);
  return err as MongoServerError;
}

describe("a write that cannot take the database's write lock within its busy timeout", () => {
  it.each([
    ["replaceOne", () => rows.replaceOne({ _id: "seed" }, { credits: 1 })],
    ["updateOne with upsert", () => rows.updateOne({ _id: "new" }, { $inc: { credits: 1 } }, { upsert: true })],
    ["deleteOne", () => rows.deleteOne({ _id: "seed" })],
    ["insertOne", () => rows.insertOne({ _id: "other", credits: 1 })],
    ["findOneAndUpdate", () => rows.findOneAndUpdate({ _id: "seed" }, { $inc: { credits: 1 } })],
  ])("%s answers LockTimeout (24), not InternalError, and the services answer UNAVAILABLE", async (_, write) => {
    holdLock();
    const started = performance.now();
    const err = await failureOf(write);
    const waited = performance.now() - started;
    expect(err.code, err.message).not.toBe(INTERNAL_ERROR);
    expect(err.code, err.message).toBe(LOCK_TIMEOUT);
    expect(err.codeName).toBe("LockTimeout");
    expect(err.message).toMatch(/database is locked/);
    // It waited for the lock (the busy timeout) rather than failing at once. SQLite's busy
    // handler sleeps in steps and may give up a step short of the timeout (179 ms of 200 seen).
    expect(waited).toBeGreaterThanOrEqual(BUSY_TIMEOUT_MS / 2);
    expect(fromMongoError(err, "sale_credits.write").code).toBe(Code.Unavailable);
  });

  it("answers MaxTimeMSExpired (50) when the command's maxTimeMS runs out before the busy timeout", async () => {
    holdLock();
    const err = await failureOf(() => rows.replaceOne({ _id: "seed" }, { credits: 2 }, { maxTimeMS: 50 }));
    expect(err.code, err.message).toBe(MAX_TIME_MS_EXPIRED);
    expect(fromMongoError(err, "sale_credits.replaceOne").code).toBe(Code.DeadlineExceeded);
  });

  it("writes again once the lock is released, with nothing of the failed writes applied", async () => {
    holdLock();
    await failureOf(() => rows.updateOne({ _id: "seed" }, { $inc: { credits: 100 } }));
    releaseLock();
    await rows.updateOne({ _id: "seed" }, { $inc: { credits: 1 } });
    expect(await rows.find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: "seed", credits: 1 }]);
  });
});
