/**
 * No analytics document grows with a customer's history or with the customers an hour anchors:
 * a customer's events are read through the `journey` index of `events`, and hourly member lists
 * live in buckets of a fixed size (bucket-lists.ts) whose reads see every entry. The suite runs a
 * small bucket size against thousands of entries; the benchmark (scripts/bench-ingest.ts) runs
 * the default size against a customer of 100,000 events and an hour of 300,000 first touches.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsService, type TrackedEvent } from "@linquid/contracts";
import { pluginDatabase, startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { BSON, type Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BucketLists, type ListDoc } from "../../src/bucket-lists.js";

const SIZE = 50;
const ts = (ms: number) => timestampFromDate(new Date(ms));

/** The largest list document of a workspace in a bucket collection, and how many buckets it has. */
async function largest(db: Db, collection: string, ws: string): Promise<{ max: number; buckets: number }> {
  const docs = await db.collection<ListDoc>(collection).find({ workspaceId: ws }).toArray();
  const buckets = docs.filter((d) => d.entries !== undefined);
  return { max: Math.max(0, ...buckets.map((d) => Math.max(d.entries!.length, d.count!))), buckets: buckets.length };
}

/** The largest document of a workspace in any collection of the database, in bytes. */
async function largestDocument(db: Db, ws: string): Promise<{ collection: string; bytes: number }> {
  let out = { collection: "", bytes: 0 };
  for (const { name } of await db.listCollections({}, { nameOnly: true }).toArray()) {
    for (const d of await db.collection(name).find({ workspaceId: ws }).toArray()) {
      const bytes = BSON.calculateObjectSize(d);
      if (bytes > out.bytes) out = { collection: name, bytes };
    }
  }
  return out;
}

describe("bounded documents", () => {
  let mesh: TestMesh;
  let db: Db;
  let close: () => Promise<void>;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics", ANALYTICS_BUCKET_SIZE: String(SIZE) });
    ({ db, close } = await pluginDatabase(mesh, "analytics"));
  });
  afterAll(async () => {
    await close?.();
    await mesh?.stop();
  });

  it("keeps concurrent appends of many writers, with no bucket over its size", async () => {
    const col = db.collection<ListDoc>(`bucket_race_${Date.now()}`);
    // Three "processes": each its own hints, all on one collection.
    const writers = [new BucketLists(col, 10), new BucketLists(col, 10), new BucketLists(col, 10)];
    await writers[0]!.ensureIndexes();
    const expected: string[] = [];
    const appends: Array<Promise<void>> = [];
    for (let i = 0; i < 60; i++) {
      const entries = Array.from({ length: 1 + (i % 7) }, (_, k) => `e${i}.${k}`);
      expected.push(...entries);
      // One list all writers share, and a second one to show lists do not mix.
      appends.push(writers[i % 3]!.append("ws", new Map([["ws:hot", entries], ["ws:other", [`o${i}`]]])));
    }
    // The same entry appended again (a retry) is read once.
    appends.push(writers[0]!.append("ws", new Map([["ws:hot", ["e0.0"]]])));
    await Promise.all(appends);
    expect((await writers[1]!.read(["ws:hot"])).sort()).toEqual(expected.sort());
    expect(await writers[2]!.read(["ws:other"])).toHaveLength(60);
    const docs = await col.find({ owner: "ws:hot" }).toArray();
    const buckets = docs.filter((d) => d.entries !== undefined);
    for (const b of buckets) expect(b.count!).toBeLessThanOrEqual(10);
    expect(buckets.length).toBeGreaterThanOrEqual(Math.ceil(expected.length / 10));
    // A writer that has never seen the list jumps to the head instead of walking full buckets.
    const fresh = new BucketLists(col, 10);
    await fresh.append("ws", new Map([["ws:hot", ["late"]]]));
    expect(await fresh.read(["ws:hot"])).toContain("late");
    await col.drop();
  });

  it("keeps a customer of thousands of events in documents that do not grow with them, its journey whole and in order", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const n = 3000;
    const t0 = Date.UTC(2026, 0, 1);
    // Out of time order, in batches of different sizes, and the first batch replayed.
    const order = Array.from({ length: n }, (_, i) => (i * 7919) % n);
    const custom = (i: number): TrackedEvent =>
      ({ event: { case: "custom", value: { workspaceId: "", externalId: "heavy", eventName: "view", eventId: `v${i}`, timestamp: ts(t0 + i * 1000) } } }) as TrackedEvent;
    const batches: number[][] = [];
    for (let i = 0, size = 1; i < n; i += size, size = size === 1 ? 977 : 1) batches.push(order.slice(i, i + size));
    for (const b of [...batches, batches[1]!]) await a.trackBatch({ workspaceId: ws, events: b.map(custom) });
    // Single events meanwhile, one at the very same instant as a batch event.
    await a.trackEvent({ workspaceId: ws, externalId: "heavy", eventName: "view", eventId: "same-instant", timestamp: ts(t0 + 5000) });

    // One customer with 3,001 events: its totals, member entry and the rest stay small.
    const big = await largestDocument(db, ws);
    expect(big.collection).not.toBe("");
    expect(big.bytes).toBeLessThan(4096);

    const pages: string[] = [];
    for (let page = 1; ; page++) {
      const r = await a.getJourney({ workspaceId: ws, id: "ext_heavy", page, limit: 1000 });
      expect(r.pagination?.total).toBe(BigInt(n + 1));
      pages.push(...r.touchpoints.map((t) => timestampDateIso(t.timestamp!)));
      if (!r.pagination!.hasMore) break;
    }
    expect(pages).toHaveLength(n + 1);
    expect(pages).toEqual([...pages].sort());
    const summary = await a.getJourneySummary({ workspaceId: ws, id: "ext_heavy" });
    expect(summary.summary?.customEvents).toBe(BigInt(n + 1));

    // A rebuild writes nothing that grows with the events either, and the journey reads the same.
    await a.rebuildWorkspace({ workspaceId: ws });
    expect((await largestDocument(db, ws)).bytes).toBeLessThan(4096);
    const again = await a.getJourney({ workspaceId: ws, id: "ext_heavy", page: 3, limit: 1000 });
    expect(again.touchpoints.map((t) => timestampDateIso(t.timestamp!))).toEqual(pages.slice(2000, 3000));
  });

  it("keeps an hour of over a thousand first touches in bounded member buckets, cohorts exact", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const n = 1200;
    const hour = Date.UTC(2026, 2, 3, 14);
    const lead = (i: number): TrackedEvent =>
      ({ event: { case: "lead", value: { workspaceId: "", externalId: `u${i}`, eventId: `l${i}`, timestamp: ts(hour + ((i * 1297) % 3_600_000)) } } }) as TrackedEvent;
    for (let i = 0; i < n; i += 400) await a.trackBatch({ workspaceId: ws, events: Array.from({ length: 400 }, (_, k) => lead(i + k)) });
    // A late click moves 10 customers' first touch out of the hour (an hour earlier).
    const late: TrackedEvent[] = [];
    for (let i = 0; i < 10; i++) {
      late.push({ event: { case: "click", value: { workspaceId: "", clickId: `c${i}`, linkId: "l", timestamp: ts(hour - 1800_000) } } } as TrackedEvent);
      late.push({ event: { case: "lead", value: { workspaceId: "", externalId: `u${i}`, eventId: `again${i}`, clickId: `c${i}`, timestamp: ts(hour + 3_599_000) } } } as TrackedEvent);
    }
    await a.trackBatch({ workspaceId: ws, events: late });

    const { max, buckets } = await largest(db, "member_buckets", ws);
    expect(max).toBeLessThanOrEqual(SIZE);
    expect(buckets).toBeGreaterThanOrEqual(Math.ceil(n / SIZE));
    // Partial-day ranges read the hour's member buckets and check each candidate's totals.
    const inHour = await a.getCohorts({ workspaceId: ws, groupBy: "month", start: "2026-03-03T14:00:00Z", end: "2026-03-03T14:59:59.999Z" });
    expect(inHour.cohorts.map((c) => [c.cohort, c.customers])).toEqual([["2026-03", BigInt(n - 10)]]);
    const before = await a.getCohorts({ workspaceId: ws, groupBy: "month", start: "2026-03-03T13:00:00Z", end: "2026-03-03T13:59:59.999Z" });
    expect(before.cohorts.map((c) => [c.cohort, c.customers])).toEqual([["2026-03", 10n]]);
    await a.rebuildWorkspace({ workspaceId: ws });
    expect((await largest(db, "member_buckets", ws)).max).toBeLessThanOrEqual(SIZE);
    const rebuilt = await a.getCohorts({ workspaceId: ws, groupBy: "month", start: "2026-03-03T14:00:00Z", end: "2026-03-03T14:59:59.999Z" });
    expect(rebuilt.cohorts).toEqual(inHour.cohorts);
  });
});

function timestampDateIso(t: { seconds: bigint; nanos: number }): string {
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString();
}
