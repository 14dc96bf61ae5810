/**
 * The idempotency records against the run's database (FerretDB, or the MongoDB at MONGODB_URI):
 * claims decided by the unique `_id` alone, lapsed claims and expired answers taken over by a
 * conditional update, the sweeper deleting only what expired. Concurrent callers come through
 * three clients of their own (three connection pools, as three replicas of the service would),
 * and time through an injected clock.
 */
import { randomBytes } from "node:crypto";
import { MongoClient, type Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createLogger } from "@linquid/mesh";
import { IDEMPOTENCY_TTL_MS, MongoIdempotencyStore, recordId, type ClaimOutcome, type StoredAnswer } from "../../src/idempotency-store.js";
import { IdempotencySweeper } from "../../src/idempotency-sweeper.js";

const clients: MongoClient[] = [];
let dbs: Db[];
let now = Date.UTC(2026, 5, 1);
const clock = () => now;
/** One store per client: three replicas of the service on one database. */
let stores: MongoIdempotencyStore[];

const FP_A = randomBytes(32).toString("hex");
const FP_B = randomBytes(32).toString("hex");
const ANSWER: StoredAnswer = { status: 201, body: '{"success":true,"data":{"id":"cus_1"}}', headers: [{ name: "x-cache", value: "MISS" }] };
const ws = () => `ws_${randomBytes(6).toString("hex")}`;
const token = (o: ClaimOutcome) => (o.kind === "claimed" ? o.token : expect.fail(`expected a claim, got ${o.kind}`));

beforeAll(async () => {
  const name = `idem_${randomBytes(4).toString("hex")}`;
  for (let i = 0; i < 3; i++) {
    const c = new MongoClient(inject("mongodbUri"));
    await c.connect();
    clients.push(c);
  }
  dbs = clients.map((c) => c.db(name));
  stores = dbs.map((db) => new MongoIdempotencyStore(db, { now: clock }));
  await stores[0]!.ensureIndexes();
});
afterAll(async () => {
  await dbs?.[0]?.dropDatabase();
  await Promise.all(clients.map((c) => c.close()));
});

describe("idempotency records", () => {
  it("first claim runs; the same request again is in progress, then answered; another fingerprint is a reuse", async () => {
    const [s] = stores;
    const w = ws();
    const t = token(await s!.claim(w, "order-1", FP_A, 20_000));
    expect(await s!.claim(w, "order-1", FP_A, 20_000)).toEqual({ kind: "in-progress" });
    expect(await s!.claim(w, "order-1", FP_B, 20_000)).toEqual({ kind: "reused" });
    expect(await s!.record(w, "order-1", t, ANSWER)).toBe(true);
    // Recorded twice with its token (a retried RPC): the same answer, still kept.
    expect(await s!.record(w, "order-1", t, ANSWER)).toBe(true);
    expect(await s!.claim(w, "order-1", FP_A, 20_000)).toEqual({ kind: "answered", answer: ANSWER });
    expect(await s!.claim(w, "order-1", FP_B, 20_000)).toEqual({ kind: "reused" });
    // A key is only ever its workspace's.
    const other = ws();
    token(await s!.claim(other, "order-1", FP_B, 20_000));
    // The caller's key is stored only hashed.
    const doc = await dbs[0]!.collection("idempotency_keys").findOne({ _id: recordId(w, "order-1") as never });
    expect(JSON.stringify(doc)).not.toContain("order-1");
  });

  it("a released key runs again; a release or record with a stale token changes nothing", async () => {
    const [s] = stores;
    const w = ws();
    const t = token(await s!.claim(w, "k", FP_A, 20_000));
    expect(await s!.release(w, "k", "claim_wrong")).toBe(false);
    expect(await s!.record(w, "k", "claim_wrong", ANSWER)).toBe(false);
    expect(await s!.release(w, "k", t)).toBe(true);
    // After a 5xx the same key may even carry another body: nothing of the first was kept.
    const t2 = token(await s!.claim(w, "k", FP_B, 20_000));
    expect(await s!.record(w, "k", t, ANSWER)).toBe(false);
    expect(await s!.release(w, "k", t)).toBe(false);
    expect(await s!.record(w, "k", t2, ANSWER)).toBe(true);
    // An answered record is not released by its holder either.
    expect(await s!.release(w, "k", t2)).toBe(false);
    expect(await s!.claim(w, "k", FP_B, 20_000)).toMatchObject({ kind: "answered" });
  });

  it("concurrent claims of one key, across three replicas: exactly one runs, every round", async () => {
    for (let round = 0; round < 8; round++) {
      const w = ws();
      const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % 3]!.claim(w, `race-${round}`, FP_A, 20_000)));
      expect(outcomes.filter((o) => o.kind === "claimed")).toHaveLength(1);
      expect(outcomes.filter((o) => o.kind !== "claimed").every((o) => o.kind === "in-progress")).toBe(true);
    }
  });

  it("a claim whose lease ran out (its holder died) is taken over by exactly one of many callers; the old holder can no longer record", async () => {
    const w = ws();
    const old = token(await stores[0]!.claim(w, "lapse", FP_A, 5000));
    now += 4999;
    expect(await stores[1]!.claim(w, "lapse", FP_A, 5000)).toEqual({ kind: "in-progress" });
    now += 1;
    const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % 3]!.claim(w, "lapse", FP_A, 5000)));
    const claimed = outcomes.filter((o) => o.kind === "claimed");
    expect(claimed).toHaveLength(1);
    expect(await stores[0]!.record(w, "lapse", old, ANSWER)).toBe(false);
    expect(await stores[2]!.record(w, "lapse", token(claimed[0]!), ANSWER)).toBe(true);
    expect(await stores[0]!.claim(w, "lapse", FP_A, 5000)).toEqual({ kind: "answered", answer: ANSWER });
  });

  it("an answer counts for 24 hours; after that the key is free again, even for another body", async () => {
    const [s] = stores;
    const w = ws();
    expect(await s!.record(w, "day", token(await s!.claim(w, "day", FP_A, 20_000)), ANSWER)).toBe(true);
    now += IDEMPOTENCY_TTL_MS - 1;
    expect(await s!.claim(w, "day", FP_B, 20_000)).toEqual({ kind: "reused" });
    now += 1;
    const outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => stores[i % 3]!.claim(w, "day", FP_B, 20_000)));
    expect(outcomes.filter((o) => o.kind === "claimed")).toHaveLength(1);
  });

  it("the sweeper deletes expired records only: answered ones past 24 h and dead claims, nothing running or fresh", async () => {
    // A database of its own, so that what the other tests left does not count.
    const db = clients[0]!.db(`${dbs[0]!.databaseName}_sweep`);
    const s = new MongoIdempotencyStore(db, { now: clock });
    await s.ensureIndexes();
    const w = ws();
    for (let i = 0; i < 5; i++) expect(await s.record(w, `old-${i}`, token(await s.claim(w, `old-${i}`, FP_A, 20_000)), ANSWER)).toBe(true);
    token(await s.claim(w, "dead", FP_A, 20_000));
    now += IDEMPOTENCY_TTL_MS - 10_000;
    expect(await s.record(w, "young", token(await s.claim(w, "young", FP_A, 20_000)), ANSWER)).toBe(true);
    // With a time to live shorter than its lease, a claim still lasts until its lease ends.
    const short = new MongoIdempotencyStore(db, { now: clock, ttlMs: 1000 });
    token(await short.claim(w, "long-lease", FP_A, 20_000));
    now += 10_000;
    const sweeper = new IdempotencySweeper(s, createLogger("test", "error"), { batchSize: 2 });
    expect(await sweeper.pass()).toBe(6); // five answers and the dead claim, two per round trip
    const left = await db.collection("idempotency_keys").find({}).toArray();
    expect(left.map((d) => d["_id"]).sort()).toEqual([recordId(w, "long-lease"), recordId(w, "young")].sort());
    expect(await sweeper.pass()).toBe(0);
    now += 10_000;
    expect(await sweeper.pass()).toBe(1); // the long lease ran out
    await sweeper.stop();
    await db.dropDatabase();
  });
});
