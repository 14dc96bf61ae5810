/**
 * Write semantics the services depend on, against the run's database (FerretDB, or the MongoDB
 * at MONGODB_URI): single-document read-modify-writes are atomic across processes, batches of
 * any size complete with exact counts and report a failed item at its index, and maxTimeMS
 * stops a query that runs too long while the server keeps answering.
 *
 * Concurrency comes from four client processes (write-client.ts), each with its own
 * connections, started once and driven over stdin.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { MongoBulkWriteError, MongoClient, MongoServerError, type AnyBulkWriteOperation, type Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ClientAnswer, ClientCommand } from "./write-client.js";

const CLIENT = fileURLToPath(new URL("./write-client.ts", import.meta.url));
/** MongoDB's code for a command stopped by its maxTimeMS. */
const MAX_TIME_MS_EXPIRED = 50;
/** MongoDB's code for an update operator applied to a field of the wrong type ($inc on a string). */
const TYPE_MISMATCH = 14;
const DUPLICATE_KEY = 11000;

type Command = ClientCommand extends infer C ? (C extends unknown ? Omit<C, "seq" | "db"> : never) : never;

/** One client process; `run` sends a command and resolves with its answer. */
class ClientProcess {
  private readonly waiting = new Map<number, (a: ClientAnswer) => void>();
  private seq = 0;
  private stderr = "";
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess, ready: () => void) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    child.stderr!.on("data", (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line === "ready") return ready();
      const a = JSON.parse(line) as ClientAnswer;
      this.waiting.get(a.seq)?.(a);
      this.waiting.delete(a.seq);
    });
  }

  static start(url: string): Promise<ClientProcess> {
    const child = spawn(process.execPath, ["--import", "tsx", CLIENT, url], { stdio: ["pipe", "pipe", "pipe"] });
    return new Promise((resolve, reject) => {
      const p: ClientProcess = new ClientProcess(child, () => resolve(p));
      child.once("exit", (code) => reject(new Error(`client process exited (${code}) before it was ready: ${p.stderr}`)));
    });
  }

  run(db: string, cmd: Command): Promise<unknown> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, (a) => (a.ok ? resolve(a.result) : reject(new Error(`client process: ${a.error}`))));
      this.child.stdin!.write(`${JSON.stringify({ ...cmd, seq, db })}\n`);
    });
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Documents keyed by a string `_id`, as the services write them; other fields are `any`, as in
 * the driver's own `Document`, so that update operators type-check on them.
 */
interface Row {
  _id: string;
  [field: string]: any;
}

const dbName = `writes_${process.pid}_${Date.now().toString(36)}`;
let mongo: MongoClient;
let db: Db;
const clients: ClientProcess[] = [];

/** Sends the same command to every client process at once. */
const everyClient = <T>(cmd: Command | ((i: number) => Command)): Promise<T[]> =>
  Promise.all(clients.map((c, i) => c.run(dbName, typeof cmd === "function" ? cmd(i) : cmd) as Promise<T>));

const rows = (name: string) => db.collection<Row>(name);

beforeAll(async () => {
  const url = inject("mongodbUri");
  mongo = await new MongoClient(url).connect();
  db = mongo.db(dbName);
  clients.push(...(await Promise.all([0, 1, 2, 3].map(() => ClientProcess.start(url)))));
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  await db?.dropDatabase().catch(() => undefined);
  await mongo?.close();
});

describe("single-document writes from four processes at once", () => {
  it("4 × 100 concurrent $inc of one document add up to exactly 400", async () => {
    await rows("counter").insertOne({ _id: "c", value: 0 });
    const acked = await everyClient<number>({ op: "inc", coll: "counter", id: "c", n: 100 });
    expect(acked).toEqual([100, 100, 100, 100]);
    expect(await rows("counter").findOne({ _id: "c" })).toEqual({ _id: "c", value: 400 });
  });

  it("findOneAndUpdate $inc and compare-and-set replaceOne lose no update", async () => {
    await rows("cas").insertOne({ _id: "c", value: 0, version: 0 });
    const [seen, retries] = await Promise.all([
      everyClient<Array<number | null>>({ op: "findOneAndInc", coll: "cas", id: "c", n: 50 }),
      everyClient<number>({ op: "casReplace", coll: "cas", id: "c", n: 25 }),
    ]);
    // Each findOneAndUpdate saw the document right after its own increment: all different.
    const values = seen.flat();
    expect(values).toHaveLength(200);
    expect(new Set(values).size, `values returned: ${JSON.stringify(values)}`).toBe(200);
    expect(values.every((v) => typeof v === "number" && v >= 1 && v <= 300)).toBe(true);
    // 200 increments + 100 replacements, each applied once.
    expect(await rows("cas").findOne({ _id: "c" })).toEqual({ _id: "c", value: 300, version: 300 });
    expect(retries.every((r) => r >= 0)).toBe(true);
  });

  it("$inc upserts of new documents create each document once", async () => {
    const acked = await everyClient<number>({ op: "upsertInc", coll: "upserts", keys: 10, n: 100 });
    expect(acked).toEqual([100, 100, 100, 100]);
    const docs = await rows("upserts").find({}).sort({ _id: 1 }).toArray();
    expect(docs).toEqual(Array.from({ length: 10 }, (_, i) => ({ _id: `key-${i}`, value: 40 })).sort((a, b) => (a._id < b._id ? -1 : 1)));
  });

  it("findOneAndDelete, findOneAndUpdate claims and deleteOne hand each document to exactly one process", async () => {
    const jobs = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ _id: `${prefix}-${String(i).padStart(3, "0")}`, state: "ready" }));
    await rows("queue").insertMany(jobs("job", 200));
    await rows("claims").insertMany(jobs("job", 200));
    await rows("doomed").insertMany(jobs("d", 50));

    const [popped, claimed, deleted] = await Promise.all([
      everyClient<Array<string | null>>({ op: "pop", coll: "queue", n: 60 }),
      everyClient<Array<string | null>>((i) => ({ op: "claim", coll: "claims", worker: `w${i}`, n: 60 })),
      everyClient<number>({ op: "deleteEach", coll: "doomed", ids: jobs("d", 50).map((j) => j._id) }),
    ]);
    for (const [what, got] of [["findOneAndDelete", popped], ["findOneAndUpdate", claimed]] as const) {
      const taken = got.flat().filter((id): id is string => id !== null);
      expect(taken, `${what}: every job once`).toHaveLength(200);
      expect(new Set(taken).size, `${what}: no job twice`).toBe(200);
      expect(got.flat().filter((id) => id === null), `${what}: the 40 attempts after the last job find none`).toHaveLength(40);
    }
    expect(await rows("queue").countDocuments({})).toBe(0);
    // Every claim is recorded under the process that got it.
    const byWorker = await rows("claims").aggregate<{ _id: string; n: number }>([{ $group: { _id: "$by", n: { $sum: 1 } } }]).toArray();
    const claimedBy = Object.fromEntries(claimed.map((ids, i) => [`w${i}`, ids.filter((id) => id !== null).length]));
    expect(Object.fromEntries(byWorker.map((g) => [g._id, g.n]))).toEqual(claimedBy);
    expect(deleted.reduce((a, b) => a + b, 0), "deleteOne races: each document deleted once").toBe(50);
    expect(await rows("doomed").countDocuments({})).toBe(0);
  });
});

describe("batches", () => {
  const incUpserts = (n: number, keys: number): AnyBulkWriteOperation<Row>[] =>
    Array.from({ length: n }, (_, i) => ({ updateOne: { filter: { _id: `k${i % keys}` }, update: { $inc: { v: 1 } }, upsert: true } }));

  it("one bulkWrite of 10,000 $inc upserts, ordered and unordered, completes with exact counts", { timeout: 120_000 }, async () => {
    // Both at once, on two collections.
    const [ordered, unordered] = await Promise.all([
      rows("bulk_ordered").bulkWrite(incUpserts(10_000, 7_000), { ordered: true }),
      rows("bulk_unordered").bulkWrite(incUpserts(10_000, 7_000), { ordered: false }),
    ]);
    for (const [name, r] of [["bulk_ordered", ordered], ["bulk_unordered", unordered]] as const) {
      expect({ upserted: r.upsertedCount, matched: r.matchedCount, modified: r.modifiedCount }, name).toEqual({ upserted: 7_000, matched: 3_000, modified: 3_000 });
      const coll = rows(name);
      expect(await coll.countDocuments({}), name).toBe(7_000);
      expect(await coll.countDocuments({ v: 2 }), name).toBe(3_000);
      const [sum] = await coll.aggregate<{ total: number }>([{ $group: { _id: null, total: { $sum: "$v" } } }]).toArray();
      expect(sum?.total, name).toBe(10_000);
    }
  });

  it("an unordered batch reports a bad item at its index and applies the rest; an ordered one stops there", async () => {
    const n = 1_000;
    const bad = 500;
    for (const ordered of [false, true]) {
      const coll = rows(`bad_item_${ordered ? "ordered" : "unordered"}`);
      await coll.insertMany(Array.from({ length: n }, (_, i) => ({ _id: `k${i}`, v: i === bad ? "not a number" : 0 })));
      const ops: AnyBulkWriteOperation<Row>[] = Array.from({ length: n }, (_, i) => ({ updateOne: { filter: { _id: `k${i}` }, update: { $inc: { v: 1 } } } }));
      const err = await coll.bulkWrite(ops, { ordered }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, `ordered: ${ordered}`).toBeInstanceOf(MongoBulkWriteError);
      const e = err as MongoBulkWriteError;
      const writeErrors = (Array.isArray(e.writeErrors) ? e.writeErrors : [e.writeErrors]).map((w) => ({ index: w.index, code: w.code }));
      expect(writeErrors, `ordered: ${ordered}`).toEqual([{ index: bad, code: TYPE_MISMATCH }]);
      const applied = ordered ? bad : n - 1;
      expect({ matched: e.result.matchedCount, modified: e.result.modifiedCount }, `ordered: ${ordered}`).toEqual({ matched: applied, modified: applied });
      expect(await coll.countDocuments({ v: 1 }), `ordered: ${ordered}`).toBe(applied);
      expect(await coll.findOne({ _id: `k${bad}` })).toEqual({ _id: `k${bad}`, v: "not a number" });
      if (ordered) expect(await coll.countDocuments({ v: 0 })).toBe(n - bad - 1);
    }
  });

  it("insertMany of 10,000 documents inserts them all; a duplicate _id fails only its own item when unordered", { timeout: 120_000 }, async () => {
    const docs = (n: number) => Array.from({ length: n }, (_, i) => ({ _id: `d${i}`, i, pad: "x".repeat(64) }));
    const all = await rows("inserted").insertMany(docs(10_000));
    expect(all.insertedCount).toBe(10_000);
    expect(await rows("inserted").countDocuments({})).toBe(10_000);

    for (const ordered of [false, true]) {
      const coll = rows(`dup_${ordered ? "ordered" : "unordered"}`);
      await coll.insertOne({ _id: "d500", i: -1 });
      const err = await coll.insertMany(docs(1_000), { ordered }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, `ordered: ${ordered}`).toBeInstanceOf(MongoBulkWriteError);
      const e = err as MongoBulkWriteError;
      const writeErrors = (Array.isArray(e.writeErrors) ? e.writeErrors : [e.writeErrors]).map((w) => ({ index: w.index, code: w.code }));
      expect(writeErrors, `ordered: ${ordered}`).toEqual([{ index: 500, code: DUPLICATE_KEY }]);
      expect(e.result.insertedCount, `ordered: ${ordered}`).toBe(ordered ? 500 : 999);
      expect(await coll.countDocuments({}), `ordered: ${ordered}`).toBe(ordered ? 501 : 1_000);
      expect(await coll.findOne({ _id: "d500" })).toEqual({ _id: "d500", i: -1 });
    }
  });
});

describe("maxTimeMS", () => {
  const N = 50_000;
  beforeAll(async () => {
    // No index on `k` or `pad`: every query below reads the whole collection.
    const coll = db.collection<{ _id: number; k: number; pad: string; touched?: boolean }>("slow");
    for (let i = 0; i < N; i += 5_000) {
      await coll.insertMany(Array.from({ length: 5_000 }, (_, j) => ({ _id: i + j, k: (i + j) % 100, pad: `${"p".repeat(100)}${i + j}` })));
    }
  }, 120_000);

  it("stops a query too slow for it with MaxTimeMSExpired, and the server still answers", async () => {
    const coll = db.collection<{ _id: number; k: number; pad: string; touched?: boolean }>("slow");
    const attempts: Array<[string, () => Promise<unknown>]> = [
      ["countDocuments", () => coll.countDocuments({ k: 5, pad: { $regex: "9$" } }, { maxTimeMS: 1 })],
      ["find", () => coll.find({ k: 5, pad: { $regex: "9$" } }).maxTimeMS(1).toArray()],
      ["aggregate", () => coll.aggregate([{ $match: { k: 7 } }, { $group: { _id: "$k", n: { $sum: 1 } } }], { maxTimeMS: 1 }).toArray()],
      ["updateMany", () => coll.updateMany({ k: -1 }, { $set: { touched: true } }, { maxTimeMS: 1 })],
      ["deleteMany", () => coll.deleteMany({ k: -1 }, { maxTimeMS: 1 })],
      ["findOneAndUpdate", () => coll.findOneAndUpdate({ k: -1 }, { $set: { touched: true } }, { maxTimeMS: 1 })],
    ];
    for (const [what, attempt] of attempts) {
      const started = performance.now();
      const err = await attempt().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, `${what} with maxTimeMS: 1`).toBeInstanceOf(MongoServerError);
      expect((err as MongoServerError).code, `${what}: ${String(err)}`).toBe(MAX_TIME_MS_EXPIRED);
      expect(performance.now() - started, `${what} gave up soon after its deadline`).toBeLessThan(5_000);
    }
    expect(await db.command({ ping: 1 })).toMatchObject({ ok: 1 });
    expect(await coll.countDocuments({ k: 5 })).toBe(N / 100);
    expect(await coll.countDocuments({ touched: true })).toBe(0);
  });
});
