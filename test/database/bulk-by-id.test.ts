/**
 * Bulks of updates that each address one document by `_id` — how the services keep rollups and
 * compare-and-set their documents — against a brute-force model of MongoDB's semantics
 * (mongo-model.ts), on the run's database. The embedded database reads such a bulk with one
 * query, applies its statements in memory and writes the changed documents together
 * (scripts/ferretdb, patches 11 and 12); this checks that the outcome is still that of the
 * statements applied one after another: the same `_id` several times in one bulk, conditional
 * filters that stop matching once an earlier statement moved a version, upserts that collide
 * with an existing `_id` (E11000 at their index), updates MongoDB refuses ($inc of a string,
 * code 14), ordered bulks stopping at their first error and unordered ones going on.
 */
import fc from "fast-check";
import { Int32, MongoBulkWriteError, MongoClient, type AnyBulkWriteOperation, type Db, type Document } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { applyUpdate, canonical, matches, replacementModifies, UpdateError, upsertSeed, type Doc, type Filter, type Update } from "./mongo-model.js";

const DUPLICATE_KEY = 11000;
const IDS = ["a", "b", "c", "d", "e", "f"];

type Op =
  | { kind: "updateOne"; filter: Filter; update: Update; upsert: boolean }
  | { kind: "replaceOne"; filter: Filter; replacement: Doc; upsert: boolean };

interface Outcome {
  matched: number;
  modified: number;
  upserted: number[];
  errors: Array<{ index: number; code: number }>;
  state: string[];
}

const int = (n: number) => new Int32(n);
const idArb = fc.constantFrom(...IDS);
/** `{_id}` alone, or with a version condition that an earlier statement of the bulk may have moved. */
const filterArb: fc.Arbitrary<Filter> = fc.oneof(
  idArb.map((id) => ({ _id: id })),
  fc.tuple(idArb, fc.integer({ min: 0, max: 2 })).map(([id, ver]) => ({ _id: id, ver: int(ver) })),
);
const updateArb: fc.Arbitrary<Update> = fc.oneof(
  fc.integer({ min: -3, max: 3 }).map((n) => ({ $inc: { v: int(n), ver: int(1) } })),
  fc.constantFrom("x", "y").map((s) => ({ $set: { s }, $inc: { ver: int(1) } })),
  fc.integer({ min: 1, max: 3 }).map((n) => ({ $inc: { s: int(n) } })), // refused (14) where `s` is a string
  fc.constantFrom("p", "q").map((tag) => ({ $setOnInsert: { tag }, $inc: { v: int(1) } })),
);
const replacementArb: fc.Arbitrary<Doc> = fc.record({ v: fc.integer({ min: 0, max: 5 }).map(int), ver: fc.integer({ min: 0, max: 3 }).map(int) });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("updateOne" as const), filter: filterArb, update: updateArb, upsert: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("replaceOne" as const), filter: filterArb, replacement: replacementArb, upsert: fc.boolean() }) },
);
const seedArb: fc.Arbitrary<Doc[]> = fc
  .subarray(IDS)
  .chain((ids) => fc.tuple(...ids.map((id) => fc.record({ _id: fc.constant(id), v: fc.integer({ min: 0, max: 3 }).map(int), ver: fc.integer({ min: 0, max: 2 }).map(int), s: fc.constantFrom("x", int(0)) }))))
  .map((docs) => docs as Doc[]);

/** The outcome of running `ops` one after another, as MongoDB does. */
function modelRun(seed: readonly Doc[], ops: readonly Op[], ordered: boolean): Outcome {
  const state = new Map(seed.map((d) => [d["_id"] as string, d]));
  const out: Outcome = { matched: 0, modified: 0, upserted: [], errors: [], state: [] };
  for (const [index, op] of ops.entries()) {
    const id = op.filter["_id"] as string;
    const doc = state.get(id);
    const update = op.kind === "updateOne" ? op.update : op.replacement;
    try {
      if (doc !== undefined && matches(doc, op.filter)) {
        const next = applyUpdate(doc, update, false);
        out.matched++;
        if (op.kind === "replaceOne" ? replacementModifies(doc, op.replacement) : canonical(next) !== canonical(doc)) out.modified++;
        state.set(id, next);
      } else if (op.upsert) {
        if (doc !== undefined) throw new UpdateError(DUPLICATE_KEY, `E11000 on ${id}`);
        const start = op.kind === "updateOne" ? upsertSeed(op.filter) : { _id: id };
        state.set(id, applyUpdate(start, update, true));
        out.upserted.push(index);
      }
    } catch (err) {
      if (!(err instanceof UpdateError)) throw err;
      out.errors.push({ index, code: err.code });
      if (ordered) break;
    }
  }
  out.state = [...state.values()].map(canonical).sort();
  return out;
}

const asBulk = (ops: readonly Op[]): AnyBulkWriteOperation<Document>[] =>
  ops.map((op) =>
    op.kind === "updateOne"
      ? { updateOne: { filter: op.filter, update: op.update, upsert: op.upsert } }
      : { replaceOne: { filter: op.filter, replacement: op.replacement, upsert: op.upsert } },
  );

let mongo: MongoClient;
let db: Db;
let run = 0;

/** Runs the bulk on a fresh collection holding `seed`; the outcome as the server reports it. */
async function serverRun(seed: readonly Doc[], ops: readonly Op[], ordered: boolean): Promise<Outcome> {
  const coll = db.collection<Document>(`bulk_${run++}`);
  if (seed.length > 0) await coll.insertMany(seed.map((d) => ({ ...d })));
  const result = await coll.bulkWrite(asBulk(ops), { ordered }).then(
    (r) => ({ r, errors: [] as Array<{ index: number; code: number }> }),
    (e: unknown) => {
      if (!(e instanceof MongoBulkWriteError)) throw e;
      const list = Array.isArray(e.writeErrors) ? e.writeErrors : [e.writeErrors];
      return { r: e.result, errors: list.map((w) => ({ index: w.index, code: w.code })) };
    },
  );
  const docs = await coll.find({}, { promoteValues: false }).toArray();
  await coll.drop();
  return {
    matched: result.r.matchedCount,
    modified: result.r.modifiedCount,
    upserted: Object.keys(result.r.upsertedIds).map(Number).sort((a, b) => a - b),
    errors: result.errors.sort((a, b) => a.index - b.index),
    state: docs.map((d) => canonical(d as Doc)).sort(),
  };
}

beforeAll(async () => {
  mongo = await new MongoClient(inject("mongodbUri")).connect();
  db = mongo.db(`bulk_by_id_${process.pid}_${Date.now().toString(36)}`);
});

afterAll(async () => {
  await db?.dropDatabase().catch(() => undefined);
  await mongo?.close();
});

describe("a bulk of updates by _id", () => {
  it("ends as its statements applied one after another: counts, upserted indexes, write errors and documents", { timeout: 300_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(seedArb, fc.array(opArb, { minLength: 2, maxLength: 24 }), fc.boolean(), async (seed, ops, ordered) => {
        expect(await serverRun(seed, ops, ordered)).toEqual(modelRun(seed, ops, ordered));
      }),
      { numRuns: 150 },
    );
  });

  it("applies the same _id's statements in order within one bulk, over more statements than one chunk", async () => {
    // 2,500 statements on 10 documents: every chunk of 1,000 reads the documents the previous one wrote.
    const coll = db.collection<{ _id: string; n: Int32 }>("bulk_repeated");
    const ops: AnyBulkWriteOperation<{ _id: string; n: Int32 }>[] = Array.from({ length: 2_500 }, (_, i) => ({
      updateOne: { filter: { _id: `k${i % 10}`, n: int(Math.floor(i / 10)) }, update: { $inc: { n: int(1) } }, upsert: i < 10 },
    }));
    const r = await coll.bulkWrite(ops, { ordered: true });
    expect({ matched: r.matchedCount, modified: r.modifiedCount, upserted: r.upsertedCount }).toEqual({ matched: 2_490, modified: 2_490, upserted: 10 });
    expect(await coll.countDocuments({ n: int(250) })).toBe(10);
  });
});
