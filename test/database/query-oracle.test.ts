/**
 * The database answers queries and applies updates as MongoDB does: generated collections and
 * the query/update shapes the services use, checked against a brute-force evaluation of
 * MongoDB's rules (mongo-model.ts).
 *
 * On the embedded database it starts two FerretDB processes of its own from the build under
 * test: one as the product runs it, one with `--test-disable-pushdown`, so that a condition
 * pushed down to SQLite that loses or adds documents shows up as a difference between them.
 * With MONGODB_URI set the same checks run against that MongoDB instead.
 *
 * The collections mix types inside one field (int32/long/double, strings, dates, null, missing)
 * and put arrays into indexed fields in a minority of documents: `{f: v}` matches an array
 * containing v, a range matches an array with an element in range, `{f: null}` matches missing
 * and null. Sorts only use fields that hold no array in the collection at hand and always end
 * with `_id`, so every answer has exactly one right order.
 *
 * A failure prints the query or operation, every server's answer and the model's. Replay one
 * with ORACLE_SEED (and ORACLE_PATH) from the message; ORACLE_RUNS_FACTOR=10 tries ten times as
 * many inputs (and allows ten times as long) when hunting.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Double, Int32, Long, MongoClient, type Collection, type Db, type Document } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startFerretDb, type EmbeddedServer } from "@linquid/mesh";
import {
  applyUpdate,
  canonical,
  clone,
  compareStrings,
  count,
  find,
  matches,
  replacementModifies,
  show,
  sortDocs,
  upsertSeed,
  type Doc,
  type Filter,
  type Sort,
  type Update,
  type Value,
} from "./mongo-model.js";

// ---------------------------------------------------------------------------------------------
// Generators: values, documents, filters, updates.

const WORKSPACES = ["w1", "w2", "w3"];
/** Short strings whose UTF-8 byte order differs from JavaScript's UTF-16 order ("😀" vs "\uFFFD", "ｚ"). */
const STRINGS = ["", "DE", "FR", "US", "de", "é", "Ω", "😀", "\uFFFD", "ｚ"];
const EXTERNAL_IDS = ["x1", "x2", "x3", "x4", "x5"];
const ID_PREFIXES = ["", "a", "B", "é", "😀", "\uFFFD", "ｚ"];
const TAGS = ["a", "b", "c", "d"];
/** Texts with characters JSON escapes (quotes, backslashes, <, >, &, U+2028) and astral ones. */
const TEXTS = ["a.b", "A.B", 'x"y', "back\\slash", "<b>&c", "é😀x", "u\u2028v", "plain text", "ab", "Ab 42"];
const T0 = Date.UTC(2026, 0, 1);

/** Dates on a coarse grid (ties are common), a few before 1970. */
const dateArb = fc.oneof(
  { weight: 9, arbitrary: fc.integer({ min: 0, max: 30 }).map((k) => new Date(T0 + k * 60_000)) },
  { weight: 1, arbitrary: fc.constantFrom(-86_400_000, 0).map((ms) => new Date(ms)) },
);
/** int32, double (integral ones too: 2.0 equals int32 2) and long. */
const numberArb: fc.Arbitrary<Int32 | Double | Long> = fc.oneof(
  fc.integer({ min: -3, max: 3 }).map((v) => new Int32(v)),
  fc.constantFrom(-1.5, 0.5, 2, 2.5, 3).map((v) => new Double(v)),
  fc.integer({ min: -2, max: 4 }).map((v) => Long.fromNumber(v)),
);
const stringArb = fc.constantFrom(...STRINGS, "2", "10", "a");
/** What `n` holds: mostly numbers, sometimes a string, a date or null. */
const scalarArb: fc.Arbitrary<Value> = fc.oneof(
  { weight: 6, arbitrary: numberArb },
  { weight: 2, arbitrary: stringArb },
  { weight: 1, arbitrary: dateArb },
  { weight: 1, arbitrary: fc.constant(null) },
);
const miscArb: fc.Arbitrary<Value> = fc.oneof(
  scalarArb,
  fc.boolean(),
  fc.record({ a: numberArb }),
  fc.array(fc.oneof(scalarArb, fc.boolean()), { maxLength: 3 }),
);
const countryArb: fc.Arbitrary<Value> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...STRINGS) },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.array(fc.oneof(fc.constantFrom(...STRINGS), fc.constant(null)), { maxLength: 3 }) },
);

interface GenDoc {
  idPrefix: string;
  workspaceId: string;
  createdAt: Date;
  externalId?: string | null;
  country?: Value;
  n?: Value;
  tags?: string[];
  misc?: Value;
  text?: Value;
}

const queryDocArb: fc.Arbitrary<GenDoc> = fc.record(
  {
    idPrefix: fc.constantFrom(...ID_PREFIXES),
    workspaceId: fc.constantFrom(...WORKSPACES),
    createdAt: dateArb,
    externalId: fc.oneof(fc.constantFrom(...EXTERNAL_IDS), fc.constant(null)),
    country: countryArb,
    n: fc.oneof({ weight: 8, arbitrary: scalarArb }, { weight: 2, arbitrary: fc.array(scalarArb, { maxLength: 3 }) }),
    tags: fc.array(fc.constantFrom(...TAGS), { maxLength: 3 }),
    misc: miscArb,
    text: fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom(...TEXTS) },
      { weight: 3, arbitrary: fc.array(fc.oneof(fc.constantFrom(...TEXTS), numberArb), { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.oneof(numberArb, fc.constant(null)) },
    ),
  },
  { requiredKeys: ["idPrefix", "workspaceId", "createdAt"] },
);

/**
 * A collection: unique string `_id`s; in about half of the collections `country` and `n` hold
 * arrays in some documents, in the others never (so that they can be sort keys there).
 */
const collectionArb = fc
  .record({
    docs: fc.array(queryDocArb, { minLength: 1, maxLength: 200, size: "max" }),
    arraysInCountry: fc.boolean(),
    arraysInN: fc.boolean(),
  })
  .map(({ docs, arraysInCountry, arraysInN }) =>
    docs.map(({ idPrefix, ...d }, i): Doc => {
      const doc: Doc = { _id: `${idPrefix}${i}`, ...(d as Doc) };
      for (const [f, keep] of [["country", arraysInCountry], ["n", arraysInN]] as const) {
        const v = doc[f];
        if (!keep && Array.isArray(v)) {
          if (v.length === 0) delete doc[f];
          else doc[f] = v[0]!;
        }
      }
      return doc;
    }),
  );

/** One field's condition, built from values of the field's own pool and of other types. */
function conditionArb(eqValues: fc.Arbitrary<Value>, rangeValues: fc.Arbitrary<Value>): fc.Arbitrary<unknown> {
  const rangeOp = fc.constantFrom("$gt", "$gte", "$lt", "$lte");
  return fc.oneof(
    { weight: 4, arbitrary: eqValues },
    { weight: 2, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: eqValues.map((v) => ({ $eq: v })) },
    { weight: 1, arbitrary: fc.oneof(eqValues, fc.constant(null)).map((v) => ({ $ne: v })) },
    { weight: 2, arbitrary: fc.array(fc.oneof({ weight: 4, arbitrary: eqValues }, { weight: 1, arbitrary: fc.constant(null) }), { minLength: 1, maxLength: 3 }).map((vs) => ({ $in: vs })) },
    { weight: 1, arbitrary: fc.array(eqValues, { minLength: 1, maxLength: 2 }).map((vs) => ({ $nin: vs })) },
    { weight: 3, arbitrary: fc.tuple(rangeOp, rangeValues).map(([op, v]) => ({ [op]: v })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom("$gt", "$gte"), rangeValues, fc.constantFrom("$lt", "$lte"), rangeValues)
        .map(([lo, a, hi, b]) => ({ [lo]: a, [hi]: b })),
    },
    { weight: 1, arbitrary: rangeValues.map((v) => ({ $not: { $gte: v } })) },
    { weight: 1, arbitrary: fc.boolean().map((b) => ({ $exists: b })) },
  );
}

/**
 * `$regex` conditions: mostly a literal — a piece of a text with every ASCII punctuation
 * character escaped, as the customers search writes it — and sometimes a pattern that is not
 * one (anchors, a class) or the "i" option.
 */
const regexConditionArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom(...TEXTS), fc.nat(), fc.nat())
      .map(([t, a, b]) => {
        const chars = Array.from(t);
        const from = a % (chars.length + 1);
        return chars.slice(from, from + (b % (chars.length + 1 - from)) + 1).join("").replace(/[!-\/:-@\[-\^`{-~]/g, "\\$&");
      })
      .chain((pattern) => fc.constantFrom({ $regex: pattern }, { $regex: pattern, $options: "" }, { $regex: pattern, $options: "i" })),
  },
  { weight: 1, arbitrary: fc.constantFrom("^a", "b$", "\\d", "^A", "x\\\"").map((pattern) => ({ $regex: pattern })) },
);

const idValueArb = fc.tuple(fc.constantFrom(...ID_PREFIXES), fc.integer({ min: 0, max: 60 })).map(([p, i]) => `${p}${i}`);
const fieldConditionArb: fc.Arbitrary<[string, unknown]> = fc.oneof(
  conditionArb(fc.constantFrom(...WORKSPACES), fc.constantFrom(...WORKSPACES, "w", "w2a", "x")).map((c) => ["workspaceId", c] as [string, unknown]),
  conditionArb(fc.constantFrom(...EXTERNAL_IDS), fc.constantFrom(...EXTERNAL_IDS, "x", "y")).map((c) => ["externalId", c] as [string, unknown]),
  conditionArb(fc.constantFrom(...STRINGS), fc.oneof(fc.constantFrom(...STRINGS), numberArb)).map((c) => ["country", c] as [string, unknown]),
  conditionArb(scalarArb.filter((v) => v !== null), scalarArb.filter((v) => v !== null)).map((c) => ["n", c] as [string, unknown]),
  conditionArb(dateArb, fc.oneof({ weight: 5, arbitrary: dateArb }, { weight: 1, arbitrary: numberArb })).map((c) => ["createdAt", c] as [string, unknown]),
  regexConditionArb.map((c) => ["text", c] as [string, unknown]),
  regexConditionArb.map((c) => ["country", c] as [string, unknown]),
  conditionArb(idValueArb, fc.oneof(fc.constantFrom(...ID_PREFIXES), idValueArb)).map((c) => ["_id", c] as [string, unknown]),
  conditionArb(fc.constantFrom(...TAGS), fc.constantFrom(...TAGS)).map((c) => ["tags", c] as [string, unknown]),
  conditionArb(miscArb.filter((v) => !Array.isArray(v) && v !== null), fc.oneof(scalarArb, fc.boolean(), fc.record({ a: numberArb })).filter((v) => v !== null)).map(
    (c) => ["misc", c] as [string, unknown],
  ),
);

/** Conditions joined in one document; a field named twice goes into `$and`. */
function conjunction(conds: ReadonlyArray<[string, unknown]>): Filter {
  const filter: Filter = {};
  const extra: Filter[] = [];
  for (const [f, c] of conds) {
    if (f in filter) extra.push({ [f]: c });
    else filter[f] = c;
  }
  if (extra.length > 0) filter["$and"] = extra;
  return filter;
}

const conjunctionArb = fc.array(fieldConditionArb, { maxLength: 3 }).map(conjunction);
const filterArb: fc.Arbitrary<Filter> = fc.oneof(
  { weight: 6, arbitrary: conjunctionArb },
  { weight: 1, arbitrary: fc.tuple(conjunctionArb, conjunctionArb).map(([a, b]) => ({ $or: [a, b] })) },
  { weight: 1, arbitrary: fc.tuple(conjunctionArb, conjunctionArb).map(([a, b]) => ({ $and: [a, b] })) },
);

/** Sorts on the keys of the services' indexes, both directions, always ending with `_id`. */
const SORTS: Sort[] = [
  [["createdAt", -1], ["_id", -1]],
  [["createdAt", 1], ["_id", 1]],
  [["createdAt", -1], ["_id", 1]],
  [["workspaceId", 1], ["createdAt", -1], ["_id", -1]],
  [["workspaceId", -1], ["createdAt", 1], ["_id", 1]],
  [["workspaceId", 1], ["externalId", 1], ["_id", 1]],
  [["externalId", -1], ["_id", -1]],
  [["workspaceId", 1], ["country", 1], ["_id", 1]],
  [["country", -1], ["_id", -1]],
  [["n", 1], ["_id", 1]],
  [["n", -1], ["_id", -1]],
  [["_id", 1]],
  [["_id", -1]],
];

interface Query {
  filter: Filter;
  sort?: Sort;
  skip?: number;
  limit?: number;
}

const queryArb: fc.Arbitrary<Query> = fc.record(
  {
    filter: filterArb,
    sort: fc.constantFrom(...SORTS),
    skip: fc.integer({ min: 0, max: 60 }),
    limit: fc.integer({ min: 1, max: 40 }),
  },
  { requiredKeys: ["filter"] },
);

/** The indexes the services create on collections of this shape. */
const INDEXES = [
  { workspaceId: 1, createdAt: -1, _id: -1 },
  { workspaceId: 1, externalId: 1 },
  { workspaceId: 1, country: 1 },
  { createdAt: 1 },
  { n: 1 },
] as const;

// ---------------------------------------------------------------------------------------------
// Servers under test.

interface Target {
  readonly name: string;
  readonly client: MongoClient;
  readonly db: Db;
}

const dbName = `oracle_${process.pid}_${Date.now().toString(36)}`;
const targets: Target[] = [];
const servers: EmbeddedServer[] = [];
let dataDir: string | undefined;

beforeAll(async () => {
  const external = process.env["MONGODB_URI"];
  const endpoints: Array<{ name: string; url: string }> = [];
  if (external !== undefined && external !== "") {
    endpoints.push({ name: "MongoDB", url: inject("mongodbUri") });
  } else {
    dataDir = mkdtempSync(join(tmpdir(), "linquid-oracle-"));
    const [plain, noPushdown] = await Promise.all([
      startFerretDb(inject("ferretdbBin"), join(dataDir, "pushdown")),
      startFerretDb(inject("ferretdbBin"), join(dataDir, "no-pushdown"), undefined, ["--test-disable-pushdown"]),
    ]);
    servers.push(plain, noPushdown);
    endpoints.push({ name: "FerretDB", url: plain.url }, { name: "FerretDB --test-disable-pushdown", url: noPushdown.url });
  }
  for (const { name, url } of endpoints) {
    const client = await new MongoClient(url, { maxPoolSize: 4 }).connect();
    targets.push({ name, client, db: client.db(dbName) });
  }
});

afterAll(async () => {
  for (const t of targets) {
    await t.db.dropDatabase().catch(() => undefined);
    await t.client.close();
  }
  for (const s of servers) await s.stop();
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});

let collections = 0;

/**
 * A new collection with the services' indexes and `docs`. A new one each time: the database
 * may keep per-collection state about its fields (which ones ever held an array) that an
 * emptied collection would carry over.
 */
async function freshCollection(t: Target, prefix: string, docs: readonly Doc[]): Promise<Collection<Document>> {
  const coll = t.db.collection(`${prefix}${++collections}`);
  for (const key of INDEXES) await coll.createIndex({ ...key });
  if (docs.length > 0) await coll.insertMany(docs.map((d) => clone(d)));
  return coll;
}

const FACTOR = Number(process.env["ORACLE_RUNS_FACTOR"] ?? "") || 1;
const TEST_TIMEOUT_MS = 120_000 * FACTOR;

/** Runs fast-check with a time budget; fails when fewer than `minRuns` inputs were tried. */
async function check<T>(arb: fc.Arbitrary<T>, predicate: (v: T) => Promise<void>, numRuns: number, minRuns: number): Promise<void> {
  let runs = 0;
  const seed = process.env["ORACLE_SEED"];
  const path = process.env["ORACLE_PATH"];
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      runs++;
      await predicate(v);
    }),
    {
      numRuns: numRuns * FACTOR,
      interruptAfterTimeLimit: 45_000 * FACTOR,
      markInterruptAsFailure: false,
      ...(seed !== undefined && seed !== "" ? { seed: Number(seed) } : {}),
      ...(path !== undefined && path !== "" ? { path } : {}),
    },
  );
  expect(runs, "inputs tried within the time budget").toBeGreaterThanOrEqual(minRuns * FACTOR);
}

const ids = (docs: readonly Doc[]): string[] => docs.map((d) => show(d["_id"]));
const byId = (a: Doc, b: Doc): number => compareStrings(canonical({ _id: a["_id"]! }), canonical({ _id: b["_id"]! }));

function describeQuery(q: Query, agg = false): string {
  const parts = [`filter ${show(q.filter)}`];
  if (q.sort !== undefined) parts.push(`sort ${show(Object.fromEntries(q.sort))}`);
  if (q.skip !== undefined) parts.push(`skip ${q.skip}`);
  if (q.limit !== undefined) parts.push(`limit ${q.limit}`);
  return `${agg ? "aggregate" : "find"} ${parts.join(", ")}`;
}

/** The documents whose membership differs between answers, in full. */
function differing(docs: readonly Doc[], answers: ReadonlyArray<readonly Doc[]>): string {
  const sets = answers.map((a) => new Set(a.map((d) => canonical({ _id: d["_id"]! }))));
  const out = docs.filter((d) => {
    const k = canonical({ _id: d["_id"]! });
    return sets.some((s) => s.has(k)) && !sets.every((s) => s.has(k));
  });
  return out.length === 0 ? "" : `\ndocuments in some answers only:\n${out.slice(0, 20).map((d) => `  ${show(d)}`).join("\n")}`;
}

// ---------------------------------------------------------------------------------------------

/** The fields a filter names, at any depth of `$and`/`$or`. */
function fieldsOf(filter: Filter): string[] {
  return Object.entries(filter).flatMap(([k, v]) => (k.startsWith("$") ? (v as Filter[]).flatMap(fieldsOf) : [k]));
}

/** What the generated queries exercised. */
interface Seen {
  queries: number;
  /** Answers with documents. */
  nonEmpty: number;
  /** Answers with a document that holds an array in a field the filter names. */
  arrayMatches: number;
}

/**
 * Runs a query as find, aggregate and countDocuments on every target and compares each answer
 * with the model's for that target's documents; returns what differs, or null. Sort keys on
 * fields holding an array in the collection are dropped (the sort still ends with `_id`); a
 * query left without a sort is compared as a set, without skip and limit (count keeps them).
 */
async function checkQuery(colls: ReadonlyArray<Collection<Document>>, models: ReadonlyArray<readonly Doc[]>, raw: Query, seen: Seen): Promise<string | null> {
  const arrayFields = new Set(models.flatMap((docs) => docs.flatMap((d) => Object.keys(d).filter((k) => Array.isArray(d[k])))));
  const sort = raw.sort?.filter(([f]) => !arrayFields.has(f));
  const q: Query = sort !== undefined && sort.length > 0 ? { ...raw, sort } : { filter: raw.filter };
  const docs = models[0]!;
  const matched = docs.filter((d) => matches(d, raw.filter));
  const named = fieldsOf(raw.filter);
  seen.queries++;
  if (matched.length > 0) seen.nonEmpty++;
  if (matched.some((d) => named.some((f) => Array.isArray(d[f])))) seen.arrayMatches++;

  const sortDoc = q.sort === undefined ? undefined : Object.fromEntries(q.sort);
  const pipeline = [
    { $match: q.filter },
    ...(sortDoc === undefined ? [] : [{ $sort: sortDoc }]),
    ...(q.skip === undefined ? [] : [{ $skip: q.skip }]),
    ...(q.limit === undefined ? [] : [{ $limit: q.limit }]),
  ];
  const order = (a: Doc[]): Doc[] => (q.sort === undefined ? [...a].sort(byId) : a);
  const answers = await Promise.all(
    colls.map(async (c) => {
      const options = { promoteValues: false, ...(sortDoc === undefined ? {} : { sort: sortDoc }), ...(q.skip === undefined ? {} : { skip: q.skip }), ...(q.limit === undefined ? {} : { limit: q.limit }) };
      const found = (await c.find(q.filter, options).toArray()) as Doc[];
      const aggregated = await c.aggregate<Doc>(pipeline, { promoteValues: false }).toArray();
      const counted = await c.countDocuments(raw.filter, { ...(raw.skip === undefined ? {} : { skip: raw.skip }), ...(raw.limit === undefined ? {} : { limit: raw.limit }) });
      return { found: order(found), aggregated: order(aggregated), counted };
    }),
  );
  const wants = models.map((m) => order(find(m, q)));
  for (const [what, pick] of [["find", (a: (typeof answers)[number]) => a.found], ["aggregate", (a: (typeof answers)[number]) => a.aggregated]] as const) {
    const key = (a: readonly Doc[]): string => a.map(canonical).join("\n");
    if (answers.every((a, i) => key(pick(a)) === key(wants[i]!))) continue;
    return (
      `${describeQuery(q, what === "aggregate")}\n` +
      `model (${wants[0]!.length}): ${ids(wants[0]!).join(" ")}\n` +
      targets.map((t, i) => `${t.name} (${pick(answers[i]!).length}): ${ids(pick(answers[i]!)).join(" ")}`).join("\n") +
      differing(docs, [wants[0]!, ...answers.map(pick)])
    );
  }
  const counts = models.map((m) => count(m, raw.filter, raw.skip ?? 0, raw.limit));
  if (answers.some((a, i) => a.counted !== counts[i])) {
    return (
      `countDocuments filter ${show(raw.filter)}, skip ${raw.skip ?? 0}, limit ${raw.limit ?? "none"}\n` +
      `model: ${counts[0]} (${ids(matched).join(" ")})\n` +
      targets.map((t, i) => `${t.name}: ${answers[i]!.counted}`).join("\n")
    );
  }
  return null;
}

const expectCoverage = (seen: Seen): void => {
  expect(seen.nonEmpty / seen.queries, `queries with matches: ${JSON.stringify(seen)}`).toBeGreaterThan(0.3);
  expect(seen.arrayMatches / seen.queries, `queries matching array values: ${JSON.stringify(seen)}`).toBeGreaterThan(0.05);
};

describe("query oracle: find, aggregate and countDocuments", () => {
  it("answer as MongoDB's rules say, with and without pushdown", { timeout: TEST_TIMEOUT_MS }, async () => {
    const seen: Seen = { queries: 0, nonEmpty: 0, arrayMatches: 0 };
    await check(
      fc.record({ docs: collectionArb, queries: fc.array(queryArb, { minLength: 4, maxLength: 8 }) }),
      async ({ docs, queries }) => {
        // Half of the documents first, queried; then the rest (arrays may arrive only now), queried again.
        const half = Math.ceil(docs.length / 2);
        const colls = await Promise.all(targets.map((t) => freshCollection(t, "q", docs.slice(0, half))));
        for (const [i, q] of queries.entries()) {
          if (i === Math.floor(queries.length / 2) && half < docs.length) await Promise.all(colls.map((c) => c.insertMany(docs.slice(half).map((d) => clone(d)))));
          const present = i < Math.floor(queries.length / 2) ? docs.slice(0, half) : docs;
          const wrong = await checkQuery(colls, targets.map(() => present), q, seen);
          if (wrong !== null) throw new Error(`${wrong}\n(after inserting ${present.length} of the ${docs.length} documents)`);
        }
        await Promise.all(colls.map((c) => c.drop()));
      },
      30,
      10,
    );
    expectCoverage(seen);
  });
});

// ---------------------------------------------------------------------------------------------
// Updates: the write shapes of the services, applied one after another; after each one the
// whole collection must be what the model says, and so must the acknowledgement.

const updateDocArb = fc.record(
  {
    idPrefix: fc.constantFrom(...ID_PREFIXES),
    workspaceId: fc.constantFrom(...WORKSPACES),
    createdAt: dateArb,
    externalId: fc.oneof(fc.constantFrom(...EXTERNAL_IDS), fc.constant(null)),
    country: countryArb,
    cnt: numberArb,
    n: scalarArb,
    tags: fc.array(fc.constantFrom(...TAGS), { maxLength: 3 }),
  },
  { requiredKeys: ["idPrefix", "workspaceId", "createdAt"] },
);

const nonZeroNumberArb: fc.Arbitrary<Int32 | Double | Long> = fc.oneof(
  fc.constantFrom(-1, 1, 2, 3).map((v) => new Int32(v)),
  fc.constantFrom(-1.5, 0.5, 2).map((v) => new Double(v)),
  fc.constantFrom(-1, 1, 5).map((v) => Long.fromNumber(v)),
);

/** An update document: each field written by one operator, at least one field. */
const updateArb: fc.Arbitrary<Update> = fc
  .record(
    {
      cnt: nonZeroNumberArb.map((v) => ["$inc", v] as const),
      country: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...STRINGS).map((v) => ["$set", v] as const) },
        { weight: 1, arbitrary: fc.array(fc.constantFrom(...STRINGS), { maxLength: 2 }).map((v) => ["$set", v] as const) },
        { weight: 1, arbitrary: fc.constant(["$unset", ""] as const) },
      ),
      externalId: fc.oneof(fc.constantFrom(...EXTERNAL_IDS), fc.constant(null)).map((v) => ["$set", v] as const),
      label: stringArb.map((v) => ["$set", v] as const),
      tags: fc.oneof(
        fc.constantFrom(...TAGS).map((v) => ["$addToSet", v] as const),
        fc.array(fc.constantFrom(...TAGS, "e"), { minLength: 1, maxLength: 3 }).map((vs) => ["$addToSet", { $each: vs }] as const),
      ),
      createdAt: fc.tuple(fc.constantFrom("$set", "$setOnInsert"), dateArb),
      n: fc.oneof(
        { weight: 4, arbitrary: scalarArb.map((v) => ["$set", v] as const) },
        { weight: 1, arbitrary: fc.array(scalarArb, { minLength: 1, maxLength: 2 }).map((v) => ["$set", v] as const) },
      ),
    },
    { requiredKeys: [] },
  )
  .filter((r) => Object.keys(r).length > 0)
  .map((r) => {
    const update: Record<string, Record<string, unknown>> = {};
    for (const [field, [op, v]] of Object.entries(r) as Array<[string, readonly [string, unknown]]>) (update[op] ??= {})[field] = v;
    return update;
  });

const replacementArb: fc.Arbitrary<Doc> = fc.record(
  {
    workspaceId: fc.constantFrom(...WORKSPACES),
    createdAt: dateArb,
    externalId: fc.oneof(fc.constantFrom(...EXTERNAL_IDS), fc.constant(null)),
    country: fc.constantFrom(...STRINGS),
    cnt: numberArb,
    label: stringArb,
  },
  { requiredKeys: ["workspaceId", "createdAt"] },
) as fc.Arbitrary<Doc>;

/** The filters the services write with: by `_id`, by identity keys, compare-and-set, and any query condition. */
const writeFilterArb: fc.Arbitrary<Filter> = fc.oneof(
  { weight: 4, arbitrary: idValueArb.map((id) => ({ _id: id })) },
  { weight: 1, arbitrary: fc.array(idValueArb, { minLength: 1, maxLength: 4 }).map((ids) => ({ _id: { $in: ids } })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...WORKSPACES), fc.constantFrom(...EXTERNAL_IDS)).map(([w, x]) => ({ workspaceId: w, externalId: x })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...WORKSPACES), fc.constantFrom(...STRINGS)).map(([w, c]) => ({ workspaceId: w, country: c })) },
  { weight: 1, arbitrary: fc.constantFrom(...WORKSPACES).map((w) => ({ workspaceId: w })) },
  { weight: 1, arbitrary: fc.tuple(idValueArb, numberArb).map(([id, v]) => ({ _id: id, cnt: { $not: { $gte: v } } })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...WORKSPACES), fc.constantFrom(...EXTERNAL_IDS)).map(([w, x]) => ({ workspaceId: w, externalId: { $ne: x } })) },
  { weight: 2, arbitrary: fc.array(fieldConditionArb, { minLength: 1, maxLength: 2 }).map(conjunction) },
);

/** Whether an upsert with this filter has a well-defined new document (equalities on `_id` or on identity keys). */
function upsertable(filter: Filter): boolean {
  const keys = Object.keys(filter).sort().join(",");
  const plain = Object.values(filter).every((v) => typeof v === "string");
  return plain && (keys === "_id" || keys === "externalId,workspaceId" || keys === "country,workspaceId");
}

/** Whether a replacement upsert has a well-defined `_id` (an equality on it, nothing else). */
const upsertableReplacement = (filter: Filter): boolean => Object.keys(filter).join() === "_id" && typeof filter["_id"] === "string";

/** Sorts of findOneAndUpdate/findOneAndDelete: fields that never hold arrays here. */
const WRITE_SORTS: Sort[] = [
  [["createdAt", 1], ["_id", 1]],
  [["_id", -1]],
  [["cnt", -1], ["_id", 1]],
  [["workspaceId", 1], ["createdAt", -1], ["_id", -1]],
];

type Op =
  | { kind: "updateOne" | "updateMany"; filter: Filter; update: Update; upsert: boolean }
  | { kind: "replaceOne"; filter: Filter; replacement: Doc; upsert: boolean }
  | { kind: "deleteOne" | "deleteMany"; filter: Filter }
  | { kind: "findOneAndUpdate"; filter: Filter; update: Update; upsert: boolean; sort: Sort; returnDocument: "before" | "after" }
  | { kind: "findOneAndDelete"; filter: Filter; sort: Sort }
  | { kind: "find"; query: Query };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("updateOne" as const), filter: writeFilterArb, update: updateArb, upsert: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("updateMany" as const), filter: writeFilterArb, update: updateArb, upsert: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("replaceOne" as const), filter: writeFilterArb, replacement: replacementArb, upsert: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom("deleteOne" as const, "deleteMany" as const), filter: writeFilterArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("findOneAndUpdate" as const),
      filter: writeFilterArb,
      update: updateArb,
      upsert: fc.boolean(),
      sort: fc.constantFrom(...WRITE_SORTS),
      returnDocument: fc.constantFrom("before" as const, "after" as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("findOneAndDelete" as const), filter: writeFilterArb, sort: fc.constantFrom(...WRITE_SORTS) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("find" as const), query: queryArb }) },
);

/** What a server acknowledged, in a form compared as a string. */
type Ack = Record<string, string | number | boolean | null>;
interface Outcome {
  state: Doc[];
  ack: Ack;
}

const idKey = (id: Value | undefined): string | null => (id === undefined || id === null ? null : canonical({ _id: id }));
const stateKey = (docs: readonly Doc[]): string => docs.map(canonical).sort().join("\n");
const replaceDoc = (state: readonly Doc[], from: Doc, to: Doc): Doc[] => state.map((d) => (d === from ? to : d));

/**
 * Every outcome MongoDB allows for `op` on `state`. updateOne, replaceOne and deleteOne pick
 * any one matching document (natural order is the server's own), so there is one outcome per
 * match; the others are deterministic. `serverUpsertedId` stands in for the `_id` a server
 * generates when the filter has none.
 */
function outcomes(state: readonly Doc[], op: Op, serverUpsertedId: Value | undefined): Outcome[] {
  const matched = op.kind === "find" ? [] : state.filter((d) => matches(d, op.filter));
  const upsertId = (seed: Doc): Doc => ("_id" in seed ? seed : { _id: serverUpsertedId ?? null, ...seed });
  switch (op.kind) {
    case "updateOne":
    case "replaceOne": {
      const update = "replacement" in op ? op.replacement : op.update;
      const change = (d: Doc, inserting: boolean): Doc => applyUpdate(d, update, inserting);
      if (matched.length === 0) {
        if (!op.upsert) return [{ state: [...state], ack: { matched: 0, modified: 0, upserted: null } }];
        const seed = op.kind === "updateOne" ? upsertSeed(op.filter) : { _id: op.filter["_id"] as Value };
        const doc = change(upsertId(seed), true);
        return [{ state: [...state, doc], ack: { matched: 0, modified: 0, upserted: idKey(doc["_id"]) } }];
      }
      return matched.map((d) => {
        const next = change(d, false);
        const modified = "replacement" in op ? replacementModifies(d, op.replacement) : canonical(next) !== canonical(d);
        return { state: replaceDoc(state, d, next), ack: { matched: 1, modified: modified ? 1 : 0, upserted: null } };
      });
    }
    case "updateMany": {
      if (matched.length === 0) {
        if (!op.upsert) return [{ state: [...state], ack: { matched: 0, modified: 0, upserted: null } }];
        const doc = applyUpdate(upsertId(upsertSeed(op.filter)), op.update, true);
        return [{ state: [...state, doc], ack: { matched: 0, modified: 0, upserted: idKey(doc["_id"]) } }];
      }
      let modified = 0;
      const next = state.map((d) => {
        if (!matched.includes(d)) return d;
        const u = applyUpdate(d, op.update, false);
        if (canonical(u) !== canonical(d)) modified++;
        return u;
      });
      return [{ state: next, ack: { matched: matched.length, modified, upserted: null } }];
    }
    case "deleteOne":
      if (matched.length === 0) return [{ state: [...state], ack: { deleted: 0 } }];
      return matched.map((d) => ({ state: state.filter((e) => e !== d), ack: { deleted: 1 } }));
    case "deleteMany":
      return [{ state: state.filter((d) => !matched.includes(d)), ack: { deleted: matched.length } }];
    case "findOneAndUpdate": {
      const first = sortDocs(matched, op.sort)[0];
      if (first === undefined) {
        if (!op.upsert) return [{ state: [...state], ack: { value: null, n: 0, updatedExisting: false, upserted: null } }];
        const doc = applyUpdate(upsertId(upsertSeed(op.filter)), op.update, true);
        const value = op.returnDocument === "after" ? canonical(doc) : null;
        return [{ state: [...state, doc], ack: { value, n: 1, updatedExisting: false, upserted: idKey(doc["_id"]) } }];
      }
      const next = applyUpdate(first, op.update, false);
      const value = canonical(op.returnDocument === "after" ? next : first);
      return [{ state: replaceDoc(state, first, next), ack: { value, n: 1, updatedExisting: true, upserted: null } }];
    }
    case "findOneAndDelete": {
      const first = sortDocs(matched, op.sort)[0];
      if (first === undefined) return [{ state: [...state], ack: { value: null, n: 0 } }];
      return [{ state: state.filter((d) => d !== first), ack: { value: canonical(first), n: 1 } }];
    }
    case "find":
      throw new Error("a find changes nothing: checkQuery compares its answers");
  }
}

/** Runs `op` on a server; returns its acknowledgement and the `_id` it upserted, if any. */
async function runOp(c: Collection<Document>, op: Op): Promise<{ ack: Ack; upsertedId: Value | undefined }> {
  const up = (r: { matchedCount: number; modifiedCount: number; upsertedId: unknown }) => ({
    ack: { matched: r.matchedCount, modified: r.modifiedCount, upserted: idKey((r.upsertedId ?? undefined) as Value | undefined) },
    upsertedId: (r.upsertedId ?? undefined) as Value | undefined,
  });
  const opts = { promoteValues: false } as const;
  switch (op.kind) {
    case "updateOne":
      return up(await c.updateOne(op.filter, op.update, { ...opts, ...(op.upsert && upsertable(op.filter) ? { upsert: true } : {}) }));
    case "updateMany":
      return up(await c.updateMany(op.filter, op.update, { ...opts, ...(op.upsert && upsertable(op.filter) ? { upsert: true } : {}) }));
    case "replaceOne":
      return up(await c.replaceOne(op.filter, op.replacement, { ...opts, ...(op.upsert && upsertableReplacement(op.filter) ? { upsert: true } : {}) }));
    case "deleteOne":
      return { ack: { deleted: (await c.deleteOne(op.filter)).deletedCount }, upsertedId: undefined };
    case "deleteMany":
      return { ack: { deleted: (await c.deleteMany(op.filter)).deletedCount }, upsertedId: undefined };
    case "findOneAndUpdate": {
      const r = await c.findOneAndUpdate(op.filter, op.update, {
        ...opts,
        sort: Object.fromEntries(op.sort),
        returnDocument: op.returnDocument,
        includeResultMetadata: true,
        ...(op.upsert && upsertable(op.filter) ? { upsert: true } : {}),
      });
      const le = r.lastErrorObject ?? {};
      const upsertedId = (le["upserted"] ?? undefined) as Value | undefined;
      return {
        ack: { value: r.value === null ? null : canonical(r.value as Doc), n: Number(le["n"] ?? 0), updatedExisting: Boolean(le["updatedExisting"]), upserted: idKey(upsertedId) },
        upsertedId,
      };
    }
    case "findOneAndDelete": {
      const r = await c.findOneAndDelete(op.filter, { ...opts, sort: Object.fromEntries(op.sort), includeResultMetadata: true });
      return { ack: { value: r.value === null ? null : canonical(r.value as Doc), n: Number(r.lastErrorObject?.["n"] ?? 0) }, upsertedId: undefined };
    }
    case "find":
      throw new Error("a find is run by checkQuery");
  }
}

/** The op as its model sees it: upsert only where the server gets `upsert: true`. */
function effective(op: Op): Op {
  if (op.kind === "updateOne" || op.kind === "updateMany" || op.kind === "findOneAndUpdate") return { ...op, upsert: op.upsert && upsertable(op.filter) };
  if (op.kind === "replaceOne") return { ...op, upsert: op.upsert && upsertableReplacement(op.filter) };
  return op;
}

function showOp(op: Op): string {
  const { kind, ...rest } = op;
  return `${kind} ${show(rest)}`;
}

function stateDiff(server: readonly Doc[], model: readonly Doc[]): string {
  const m = new Set(model.map(canonical));
  const s = new Set(server.map(canonical));
  const onlyServer = server.filter((d) => !m.has(canonical(d)));
  const onlyModel = model.filter((d) => !s.has(canonical(d)));
  return [...onlyServer.map((d) => `    server only: ${show(d)}`), ...onlyModel.map((d) => `    model only:  ${show(d)}`)].join("\n");
}

describe("query oracle: updates, upserts, replacements and deletes", () => {
  it("leave the collection and acknowledge as MongoDB's rules say", { timeout: TEST_TIMEOUT_MS }, async () => {
    const seen = { ops: 0, changed: 0, upserts: 0 };
    const querySeen: Seen = { queries: 0, nonEmpty: 0, arrayMatches: 0 };
    await check(
      fc.record({
        docs: fc.array(updateDocArb, { minLength: 1, maxLength: 60, size: "max" }),
        // Without arrays at first, `country` gets its first ones from updates.
        arraysAtStart: fc.boolean(),
        ops: fc.array(opArb, { minLength: 3, maxLength: 14 }),
      }),
      async ({ docs: gen, arraysAtStart, ops }) => {
        const docs = gen.map(({ idPrefix, ...d }, i): Doc => {
          const doc: Doc = { _id: `${idPrefix}${i}`, ...(d as Doc) };
          if (!arraysAtStart && Array.isArray(doc["country"])) doc["country"] = doc["country"][0] ?? null;
          return doc;
        });
        const colls = await Promise.all(targets.map((t) => freshCollection(t, "u", docs)));
        const models = targets.map(() => docs.map((d) => clone(d)));
        const history: string[] = [];
        for (const raw of ops) {
          const op = effective(raw);
          history.push(showOp(op));
          if (op.kind === "find") {
            const wrong = await checkQuery(colls, models, op.query, querySeen);
            if (wrong !== null) throw new Error(`after ${history.length - 1} operations:\n${history.slice(0, -1).map((h, i) => `  ${i + 1}. ${h}`).join("\n")}\n${wrong}`);
            continue;
          }
          const results = await Promise.all(
            colls.map(async (c) => {
              const r = await runOp(c, op).catch((err: { code?: number; message?: string }) => ({ ack: { error: err.code ?? String(err.message) } as Ack, upsertedId: undefined }));
              return { ...r, state: (await c.find({}, { promoteValues: false }).toArray()) as Doc[] };
            }),
          );
          const verdicts = results.map((r, i) => {
            const allowed = outcomes(models[i]!, op, r.upsertedId);
            const hit = allowed.find((o) => stateKey(o.state) === stateKey(r.state) && JSON.stringify(o.ack) === JSON.stringify(r.ack));
            return { hit, allowed };
          });
          seen.ops++;
          if (stateKey(results[0]!.state) !== stateKey(models[0]!)) seen.changed++;
          if (results[0]!.upsertedId !== undefined) seen.upserts++;
          if (verdicts.every((v) => v.hit !== undefined)) {
            verdicts.forEach((v, i) => (models[i] = v.hit!.state));
            continue;
          }
          throw new Error(
            `after ${history.length} operations:\n${history.map((h, i) => `  ${i + 1}. ${h}`).join("\n")}\n` +
              targets
                .map((t, i) => {
                  const v = verdicts[i]!;
                  const closest = v.allowed[0]!;
                  return `${t.name}: ${v.hit === undefined ? "WRONG" : "ok"}\n  acknowledged ${JSON.stringify(results[i]!.ack)}\n  model says   ${v.allowed.map((o) => JSON.stringify(o.ack)).filter((a, j, all) => all.indexOf(a) === j).join(" or ")}` +
                    (v.hit === undefined ? `\n  collection vs model${v.allowed.length > 1 ? ` (1 of ${v.allowed.length} allowed outcomes)` : ""}:\n${stateDiff(results[i]!.state, closest.state)}` : "");
                })
                .join("\n") +
              `\ncollection before the operation (model):\n${models[0]!.map((d) => `  ${show(d)}`).join("\n")}`,
          );
        }
      },
      30,
      10,
    );
    expect(querySeen.nonEmpty / querySeen.queries, `queries with matches: ${JSON.stringify(querySeen)}`).toBeGreaterThan(0.2);
    expect(seen.changed / seen.ops, `operations that changed the collection: ${JSON.stringify(seen)}`).toBeGreaterThan(0.3);
    expect(seen.upserts, `upserts: ${JSON.stringify(seen)}`).toBeGreaterThan(5);
  });
});
