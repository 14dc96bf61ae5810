/**
 * MongoDB access shared by every plugin. Each plugin owns one database,
 * `${MONGODB_DB_PREFIX}_${plugin}`, and never touches another's.
 *
 * The code is written for MongoDB 7 semantics and runs on FerretDB v1 (the embedded default
 * and the test backend) alike, so it stays within what both support:
 * - aggregation: $match, $group with $sum/$count only, $project, $sort, $skip, $limit,
 *   $unwind, $count, $unset — no $lookup, $facet, $min/$max/$first, date operators;
 * - no transactions; unique indexes yes, partial/sparse/TTL indexes no.
 * So heavy lifting happens at write time: bucket keys are computed before writing and
 * rollups are kept with `$inc` upserts on deterministic `_id`s, and reads stay simple.
 * FerretDB's SQLite backend pushes only `_id` equality down to SQL; identity keys and
 * rollup cells therefore use deterministic `_id`s, which is also the fastest path on MongoDB.
 * Concurrency rests on atomic single-document conditional writes (a filter on a version or a
 * state, upserts on deterministic `_id`s, unique keys), never on a lock in one process, so any
 * number of replicas may write one database.
 *
 * Every call goes through `dbCall`, which hands it the remaining RPC deadline as `maxTimeMS`
 * (deadline.ts) and translates driver errors (errors.ts).
 */
import { SpanKind, trace } from "@opentelemetry/api";
import { MongoBulkWriteError, MongoClient, type Collection, type CreateIndexesOptions, type Db, type Document, type IndexDescription, type IndexSpecification, type OptionalUnlessRequiredId } from "mongodb";
import { Code, ConnectError } from "@connectrpc/connect";
import { noteDatabaseAnswer } from "./db-liveness.js";
import { dbTimeout } from "./deadline.js";
import { fromMongoError } from "./errors.js";
import { mongoDuration, secondsSince } from "./metrics.js";
import { inSpan } from "./spans.js";

const tracer = trace.getTracer("linquid.mongodb");

/**
 * Opens a client; fails within `timeoutMs` when the server cannot be reached.
 *
 * An RPC learns that the database is down or hung from the database watch (db-watch.ts), within
 * a second; these settings bound what the driver itself waits for, in RPCs and background work
 * alike:
 * - the driver's heartbeat asks the server every second and gives up on an answer after 10 s
 *   (connectTimeoutMS): a hung server is then dropped and the commands in flight on it fail
 *   (the pool is cleared with its in-use connections interrupted), background work included.
 *   Not shorter: a heartbeat that times out fails every command in flight, and a busy machine
 *   (a restarted server taking every process's connections at once) must not do that;
 * - server selection gives up after 2 s; a restarted server is found by the next heartbeat, or
 *   at once when an operation waits for one;
 * - opening a connection (TCP and handshake) gives up after 10 s, for the same reason;
 * - a connection silent for 2 minutes is given up even while the server answers heartbeats.
 *   Commands carry `maxTimeMS` (the RPC's deadline, deadline.ts), which the server enforces;
 *   this only bounds one that a faulty server never ends. It is longer than any single command
 *   runs, a rebuild's deletes and inserts of a large workspace included (those RPCs carry
 *   deadlines of many minutes).
 */
export async function connectMongo(uri: string, timeoutMs = 5000): Promise<MongoClient> {
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 2000,
    connectTimeoutMS: 10_000,
    socketTimeoutMS: 120_000,
    heartbeatFrequencyMS: 1000,
    maxPoolSize: 50,
    appName: "linquid",
  });
  await Promise.race([
    client.connect().then(() => client.db("admin").command({ ping: 1 })),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref()),
  ]);
  return client;
}

/** The database a plugin owns. */
export function pluginDb(client: MongoClient, prefix: string, plugin: string): Db {
  return client.db(`${prefix}_${plugin}`);
}

/**
 * The outcome label of a failed database call: a duplicate key is how conditional inserts and
 * replays learn they lost (not a fault); a stopped or unreachable database is told apart from
 * other errors.
 */
const OUTCOME_OF_CODE: Partial<Record<Code, string>> = {
  [Code.AlreadyExists]: "duplicate",
  [Code.DeadlineExceeded]: "timeout",
  [Code.Unavailable]: "unavailable",
};

/** The options `dbCall` hands to each driver call: the remaining deadline as `maxTimeMS`. */
export type DbOptions = { readonly maxTimeMS: number };

/**
 * Runs one database call inside a client span named after the collection and operation. `fn`
 * gets the options to pass to the driver call (`maxTimeMS`: what is left of the RPC's
 * deadline, see deadline.ts); driver errors become ConnectErrors (errors.ts), a command the
 * server stopped at its `maxTimeMS` DEADLINE_EXCEEDED.
 */
export async function dbCall<T>(collection: string, operation: string, fn: (options: DbOptions) => Promise<T>): Promise<T> {
  const attributes = { "db.system": "mongodb", "db.collection.name": collection, "db.operation.name": operation };
  const started = performance.now();
  let outcome = "ok";
  try {
    const options = dbTimeout();
    const result = await inSpan(tracer, `mongodb.${operation} ${collection}`, { kind: SpanKind.CLIENT, attributes }, () => fn(options));
    noteDatabaseAnswer();
    return result;
  } catch (err) {
    const ce = fromMongoError(err, `${collection}.${operation}`);
    outcome = OUTCOME_OF_CODE[ce.code] ?? "error";
    throw ce;
  } finally {
    // Timed here rather than by the driver's command monitoring: with monitoring on, the driver
    // decodes every cursor reply a second time for its event (measured: +0.6 ms of CPU per
    // 100-document find on the embedded database, about 20%).
    mongoDuration.observe({ collection, operation, outcome }, secondsSince(started));
  }
}

/**
 * The documents of a cursor one at a time (a scan too large to hold), as dbCall would run it:
 * `open` gets the options to pass (`maxTimeMS` bounds the whole cursor), errors are translated.
 */
export async function* dbStream<T>(collection: string, operation: string, open: (options: DbOptions) => AsyncIterable<T>): AsyncGenerator<T> {
  try {
    for await (const doc of open(dbTimeout())) yield doc;
  } catch (err) {
    throw fromMongoError(err, `${collection}.${operation}`);
  }
}

/**
 * Creates indexes one at a time. FerretDB v1 drops the connection when one createIndexes
 * command names several indexes that all exist already (a restart on existing data), while
 * one index per command is fine on both backends and idempotent. (`createIndex`, because the
 * driver's `createIndexes` does not pass `maxTimeMS` on.)
 */
export async function ensureIndexes<T extends Document>(collection: Collection<T>, indexes: readonly IndexDescription[]): Promise<void> {
  for (const { key, ...options } of indexes) {
    await dbCall(collection.collectionName, "createIndexes", (o) => collection.createIndex(key as IndexSpecification, { ...options, ...o } as CreateIndexesOptions));
  }
}

/**
 * Inserts documents that may exist already, in one unordered insertMany however many there
 * are (the driver splits what exceeds a command's limits): the unique `_id` decides, with no
 * read first. Returns the `_id`s that were already stored, which were left as they were.
 */
export async function insertManyNew<T extends Document & { _id: string }>(collection: Collection<T>, docs: readonly T[]): Promise<Set<string>> {
  const existing = new Set<string>();
  if (docs.length === 0) return existing;
  await dbCall(collection.collectionName, "insertMany", async (o) => {
    try {
      await collection.insertMany(docs as OptionalUnlessRequiredId<T>[], { ordered: false, ...o });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      for (const we of errors) {
        if (we.code !== 11000) throw err;
        existing.add(docs[we.index]!._id);
      }
    }
  });
  return existing;
}

/** Inserts one document unless its `_id` (or another unique key) exists: true when inserted. */
export async function insertIfAbsent<T extends Document>(collection: Collection<T>, doc: OptionalUnlessRequiredId<T>): Promise<boolean> {
  try {
    await dbCall(collection.collectionName, "insertOne", (o) => collection.insertOne(doc, o));
    return true;
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.AlreadyExists) return false;
    throw err;
  }
}
