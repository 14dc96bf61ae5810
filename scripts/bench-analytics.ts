/**
 * Analytics benchmark, one run on the embedded backend (or MONGODB_URI):
 *  - ingestion: events/s through AnalyticsService.TrackBatch (generate-data's traffic: stitching,
 *    click ownership, rollups) vs a raw insertMany of the same event documents into a scratch
 *    collection with the same indexes;
 *  - reads, p50/p95: cohorts (each group_by), ltv-cohorts, journey, attribution — uncached
 *    (gRPC to the service) and cached (REST through the gateway, X-Cache: HIT);
 *  - the naive baseline: the same cohort question (by month) answered by scanning the raw
 *    events within the FerretDB pipeline subset ($match, $project, $sort, then grouping the
 *    stream by customer client-side, since $min/$first are not in the subset).
 * at a small size (BENCH_SMALL events, default 10,000) and at the largest size up to
 * BENCH_LARGE (default 1,000,000) that loads within BENCH_LOAD_MINUTES (default 15).
 * Targets: cohort/LTV/journey/attribution latency at the large size within 2× of the small one;
 * ≥ 20× faster than naive at the large size; ingestion ≥ 5,000 events/s sustained and ≥ 0.3 of
 * raw insertMany. REST ingestion (`POST /track/batch`, single calls) is in bench-ingest.ts.
 *
 *   npm run bench:analytics
 *   BENCH_LARGE=100000 BENCH_LOAD_MINUTES=5 npm run bench:analytics
 */
import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { create, type Message } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService, TrackedEventSchema, WorkspacesService, type TrackedEvent } from "@linquid/contracts";
import { newId } from "@linquid/mesh";
import { generate, progressBar } from "./generate-data.js";
import { intEnv, pct, say, startBenchMesh } from "./bench-support.js";

const SMALL = intEnv("BENCH_SMALL", 10_000);
const LARGE = intEnv("BENCH_LARGE", 1_000_000);
const LOAD_MINUTES = intEnv("BENCH_LOAD_MINUTES", 15);
const RUNS = intEnv("BENCH_RUNS", 20);
const EVENTS_PER_CUSTOMER = 6; // roughly, for generate-data's traffic

/** p50/p95 of `runs` calls; with `selfTimed`, `fn` returns the milliseconds to count. */
async function timeIt(runs: number, fn: (i: number) => Promise<unknown>, selfTimed = false): Promise<{ p50: number; p95: number }> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const ms = await fn(i);
    samples.push(selfTimed ? (ms as number) : performance.now() - t);
  }
  return { p50: pct(samples, 50), p95: pct(samples, 95) };
}

/** The document TrackBatch stores for an event, approximately, for the raw insertMany baseline. */
function rawDoc(ws: string, e: TrackedEvent, i: number): Record<string, unknown> {
  const v = e.event.value as unknown as Record<string, unknown> & { timestamp?: Parameters<typeof timestampDate>[0] };
  const { timestamp, workspaceId: _ws, $typeName: _t, amount, ...rest } = v as Record<string, unknown> & { timestamp?: Parameters<typeof timestampDate>[0] };
  return {
    _id: `${ws}:${e.event.case}:${i}`,
    ...rest,
    ...(amount !== undefined ? { amount: Number(amount) } : {}),
    type: e.event.case,
    workspaceId: ws,
    eventId: newId("evt"),
    customerId: null,
    opId: "op_raw",
    at: timestamp !== undefined ? timestampDate(timestamp) : new Date(),
    receivedAt: new Date(),
  };
}

interface Size {
  label: string;
  events: number;
  customers: number;
  ingestEventsPerSec: number;
  reads: Record<string, { p50: number; p95: number }>;
  cached: Record<string, { p50: number; p95: number }>;
  naive: { p50: number; p95: number };
}

async function main(): Promise<void> {
  const { dataDir, config, host, mongo } = await startBenchMesh("linquid-bench-a-");
  const analytics = createClient(AnalyticsService, createGrpcTransport({ baseUrl: host.grpcUrl! }));
  const workspaces = host.client(WorkspacesService);
  const api = `${host.gatewayUrl}${config.apiBasePath}`;
  const results: Size[] = [];
  let rawRate = 0;
  let rawEvents = 0;
  try {
    for (const [label, target, minutes] of [
      ["small", SMALL, 60],
      ["large", LARGE, LOAD_MINUTES],
    ] as const) {
      const ws = (await workspaces.createWorkspace({ name: `bench ${label}`, plan: "enterprise", unlimited: true })).workspace!.id;
      const key = (await workspaces.createApiKey({ workspaceId: ws, scopes: ["links:read", "analytics:read"] })).key;
      const bar = progressBar(`load ${label}`, target);
      const deadline = Date.now() + minutes * 60_000;
      const gen = await generate(analytics, ws, {
        customers: Math.ceil((target / EVENTS_PER_CUSTOMER) * 1.2),
        seed: label === "small" ? 1 : 2,
        batch: 1000,
        months: 12,
        now: Date.now(),
        maxEvents: target,
        deadline,
        prefix: `${label}_`,
        currency: "USD",
        progress: (sent) => bar(Math.min(sent, target)),
      });
      process.stderr.write("\n");
      const rate = (gen.events / gen.ms) * 1000;
      say(`${label}: ${gen.events} events (${gen.accepted} new, ${gen.duplicates} replays, ${gen.rejected} rejected), ${gen.customers} customers, ${rate.toFixed(0)} events/s through TrackBatch`);

      if (label === "small") {
        // Raw insertMany of the same traffic's documents, same indexes, scratch database.
        const scratch = mongo.db(`${config.mongodbDbPrefix}_raw`).collection("events");
        await scratch.createIndex({ workspaceId: 1, customerId: 1, at: 1, _id: 1 }, { name: "journey" });
        const docs: Record<string, unknown>[] = [];
        await generate(
          { trackBatch: async (req: { events: TrackedEvent[] }) => ({ results: req.events.map((e) => (docs.push(rawDoc("ws_raw", e, docs.length)), { duplicate: false })) }) } as never,
          "ws_raw",
          { customers: Math.ceil((target / EVENTS_PER_CUSTOMER) * 1.2), seed: 1, batch: 1000, months: 12, now: Date.now(), maxEvents: target, prefix: "raw_", currency: "USD" },
        );
        const t = performance.now();
        for (let i = 0; i < docs.length; i += 1000) await scratch.insertMany(docs.slice(i, i + 1000) as never[], { ordered: false });
        rawRate = (docs.length / (performance.now() - t)) * 1000;
        rawEvents = docs.length;
        say(`raw insertMany: ${docs.length} docs, ${rawRate.toFixed(0)} docs/s`);
      }

      // Readers: a few known customers.
      const someCustomers = await mongo
        .db(`${config.mongodbDbPrefix}_analytics`)
        .collection("customer_totals")
        .find({ workspaceId: ws }, { projection: { customerId: 1 } })
        .limit(20)
        .toArray();
      const ids = someCustomers.map((d) => d["customerId"] as string);
      const reads: Size["reads"] = {};
      const cached: Size["cached"] = {};
      const shapes: Array<[string, (i: number) => Promise<Message>, (i: number) => string]> = [
        ...(["week", "month", "campaign", "source"] as const).map(
          (g) => [`cohorts ${g}`, () => analytics.getCohorts({ workspaceId: ws, groupBy: g }), () => `/customers/cohorts?group_by=${g}`] as [string, (i: number) => Promise<Message>, (i: number) => string],
        ),
        ["cohorts month, 90-day range", () => analytics.getCohorts({ workspaceId: ws, groupBy: "month", start: new Date(Date.now() - 90 * 86_400_000).toISOString() }), () => `/customers/cohorts?group_by=month&start=${new Date(Date.now() - 90 * 86_400_000).toISOString().slice(0, 10)}`],
        ["ltv-cohorts", () => analytics.getLtvCohorts({ workspaceId: ws, months: 12 }), () => "/customers/ltv-cohorts?months=12"],
        ["journey", (i) => analytics.getJourney({ workspaceId: ws, id: ids[i % ids.length]! }), (i) => `/customers/${ids[i % ids.length]}/journey`],
        ["attribution", (i) => analytics.getAttribution({ workspaceId: ws, id: ids[i % ids.length]! }), (i) => `/customers/${ids[i % ids.length]}/attribution`],
        ["attribution linear", (i) => analytics.getAttribution({ workspaceId: ws, id: ids[i % ids.length]!, model: "linear" }), (i) => `/customers/${ids[i % ids.length]}/attribution?model=linear`],
        ["workspace attribution linear by campaign", () => analytics.getWorkspaceAttribution({ workspaceId: ws, model: "linear", groupBy: "campaign" }), () => "/analytics/attribution?model=linear&group_by=campaign"],
        [
          "workspace attribution time_decay by link, 90-day range",
          () => analytics.getWorkspaceAttribution({ workspaceId: ws, model: "time_decay", groupBy: "link", start: new Date(Date.now() - 90 * 86_400_000).toISOString().slice(0, 10) }),
          () => `/analytics/attribution?model=time_decay&group_by=link&start=${new Date(Date.now() - 90 * 86_400_000).toISOString().slice(0, 10)}`,
        ],
      ];
      for (const [name, rpc, path] of shapes) {
        reads[name] = await timeIt(RUNS, rpc);
        const get = async (i: number) => {
          const res = await fetch(`${api}${path(i)}`, { headers: { "x-api-key": key } });
          await res.text();
          return res.headers.get("x-cache");
        };
        // Each timed read follows a read of the same snapshot (the cache TTL is short).
        let misses = 0;
        cached[name] = await timeIt(RUNS, async (i) => {
          await get(i);
          const t = performance.now();
          if ((await get(i)) !== "HIT") misses++;
          return performance.now() - t;
        }, true);
        if (misses > 0) say(`${label} ${name}: ${misses} of ${RUNS} cached reads missed`);
      }
      // Naive: the month cohort question from the raw events.
      const events = mongo.db(`${config.mongodbDbPrefix}_analytics`).collection("events");
      const naive = await timeIt(Math.min(RUNS, 3), async () => {
        const first = new Map<string, { month: string; leads: number; sales: number; revenue: number }>();
        const cursor = events.aggregate([
          { $match: { workspaceId: ws, customerId: { $ne: null } } },
          { $project: { customerId: 1, type: 1, at: 1, amount: 1 } },
          { $sort: { at: 1 } },
        ]);
        for await (const e of cursor) {
          const c = first.get(e["customerId"] as string) ?? { month: (e["at"] as Date).toISOString().slice(0, 7), leads: 0, sales: 0, revenue: 0 };
          if (e["type"] === "lead") c.leads++;
          if (e["type"] === "sale") (c.sales++, (c.revenue += e["amount"] as number));
          first.set(e["customerId"] as string, c);
        }
        const rows = new Map<string, number>();
        for (const c of first.values()) rows.set(c.month, (rows.get(c.month) ?? 0) + 1);
        return rows;
      });
      results.push({ label, events: gen.events, customers: gen.customers, ingestEventsPerSec: rate, reads, cached, naive });
      void create;
      void TrackedEventSchema;
    }
  } finally {
    await mongo.close();
    await host.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }

  const [small, large] = results as [Size, Size];
  const f = (n: number) => n.toFixed(1).padStart(8);
  const lines: string[] = [];
  lines.push(`backend: ${process.env["MONGODB_URI"] ? "MongoDB (MONGODB_URI)" : "embedded FerretDB v1 (SQLite)"}`);
  lines.push(`ingestion through TrackBatch: small ${small.ingestEventsPerSec.toFixed(0)} events/s, large ${large.ingestEventsPerSec.toFixed(0)} events/s; raw insertMany ${rawRate.toFixed(0)} docs/s (${rawEvents} docs)`);
  lines.push(`ratio TrackBatch/raw (small): ${(small.ingestEventsPerSec / rawRate).toFixed(2)} (target >= 0.3)`);
  lines.push("");
  lines.push(`p50/p95 ms                      small (${small.events} ev)          large (${large.events} ev)`);
  lines.push(`                                uncached       cached        uncached       cached`);
  for (const name of Object.keys(small.reads)) {
    lines.push(
      `${name.padEnd(30)}${f(small.reads[name]!.p50)}/${f(small.reads[name]!.p95).trim().padEnd(6)}${f(small.cached[name]!.p50)}/${f(small.cached[name]!.p95).trim().padEnd(6)}${f(large.reads[name]!.p50)}/${f(large.reads[name]!.p95).trim().padEnd(6)}${f(large.cached[name]!.p50)}/${f(large.cached[name]!.p95).trim()}`,
    );
  }
  lines.push(`${"naive month cohorts (raw scan)".padEnd(30)}${f(small.naive.p50)}/${f(small.naive.p95).trim().padEnd(20)}${f(large.naive.p50)}/${f(large.naive.p95).trim()}`);
  lines.push("");
  const cm = large.reads["cohorts month"]!.p50;
  lines.push(`cohorts month large/small: ${(cm / small.reads["cohorts month"]!.p50).toFixed(2)}× (target <= 2); ltv large/small: ${(large.reads["ltv-cohorts"]!.p50 / small.reads["ltv-cohorts"]!.p50).toFixed(2)}×`);
  lines.push(`naive/rollup at the large size: ${(large.naive.p50 / cm).toFixed(0)}× (target >= 20)`);
  process.stdout.write(lines.join("\n") + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
