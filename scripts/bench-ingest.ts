/**
 * Ingestion through REST and bounded documents at scale (issue 10's targets that
 * bench-analytics.ts does not measure), one run on the embedded default (or MONGODB_URI).
 *
 * Starts all four plugins in this process (as bench-analytics.ts does), with a fresh data
 * directory; every section has its own enterprise workspace without a rate limit and a key with
 * events:write, links:read, links:write and analytics:read. Requests go to the gateway over
 * HTTP/1.1 with Node's fetch (undici: keep-alive, one connection per request in flight). The
 * load average (1 min) is printed with each section's figures: the machine may be shared.
 * Sections (BENCH_SECTIONS, comma-separated, default all four):
 *
 * rest-batch — `POST /track/batch`. The traffic is generate-data's (stitching clicks, leads,
 *   repeat sales, custom events, 3 % late, 0.5 % replays), collected first through a fake
 *   TrackBatch client into requests of 1,000 items (the REST JSON of each event), so that
 *   generating costs nothing during the load. Concurrency 1: one stream of BENCH_BATCH_EVENTS
 *   events (default 20,000) posted request after request. Concurrency 4: four streams (own
 *   seeds and prefixes) of a quarter each, posted at once, each request after request; each run
 *   into its own workspace. Figure: events sent / wall time from the first request to the last
 *   answer ("sustained" = over the whole load), counting only the items of requests answered
 *   200; requests answered otherwise (e.g. 500 from a database error) are counted, shown and
 *   mark the figure missed, and the load goes on; items refused inside a batch are shown. Raw baseline, right after each run: the very
 *   documents the service stored for that workspace (read back from the analytics `events`
 *   collection, untimed; a request that timed out may still have stored its items, so these
 *   can be more than the REST figure counts) inserted with insertMany, 1,000 per call, unordered, one call after
 *   another, into a fresh scratch collection with the same `journey` index; its rate is
 *   documents / wall time of the calls. Ratio = REST rate / raw rate of the same run.
 *   Targets: ≥ 5,000 events/s, ratio ≥ 0.3.
 *
 * single — `POST /track/lead` + `POST /track/sale`, 16 workers (16 keep-alive connections) for
 *   BENCH_SINGLE_SECONDS (default 20): each worker posts a lead for a new externalId, then a
 *   sale (USD, its own invoiceId) for it, and so on until the time is up. Figure: events answered
 *   2xx / wall time from start until the last request in flight answered; p50/p99 of the request
 *   latency. Raw baseline, right after: the documents the service stored for that workspace,
 *   inserted one insertOne each by 16 parallel workers (each taking the next document) into a
 *   fresh scratch collection with the `journey` index; documents / wall time. Target ≥ 1,000
 *   events/s (was 22–25).
 *
 * customers — `POST /customers` (new externalId, email, name, country each) by 16 workers until
 *   BENCH_CUSTOMERS (default 100,000) were created or BENCH_CUSTOMERS_MINUTES (default 4) passed.
 *   The time at which every 1,000th create answered is recorded; the rate of each window of
 *   1,000 creates is 1,000 / the time between its ends. Figures: the first window's rate, the
 *   last full window's rate and where it ended (the count reached), their ratio, and the curve
 *   (about ten windows). Target: the rate at 100,000 ≥ 0.8× the first 1,000's — when fewer were
 *   reached in the time, the ratio is at the count reached and marked so.
 *
 * bounded — (a) one customer with BENCH_HEAVY_EVENTS events (default 100,000): a lead, then
 *   custom events one second apart in `POST /track/batch` requests of 1,000, one after another,
 *   stopping early after BENCH_HEAVY_MINUTES (default 2). (b) one UTC hour (30 days ago) with
 *   BENCH_HOUR_CUSTOMERS first touches (default 300,000): per customer a click inside the hour
 *   (never in its last second) and a lead carrying that clickId an hour later, 500 pairs per
 *   request, 4 streams at once, stopping early after BENCH_HOUR_MINUTES (default 4). Then, over
 *   EVERY collection of the analytics database (every workspace of the run): the largest
 *   document's BSON size (`BSON.calculateObjectSize` on each document read back — `$bsonSize`
 *   is not in the embedded database's subset) and, for `member_buckets`, its entry count and
 *   whether any bucket holds more entries (`entries` or `count`) than ANALYTICS_BUCKET_SIZE. Reads,
 *   BENCH_RUNS each (default 20; fewer when BENCH_READ_SECONDS, default 60, of reading have
 *   passed after 3, or at the third read not answered 200 — e.g. 503 at the 15 s deadline),
 *   one after another, through REST: the heavy customer's journey
 *   (`GET /customers/ext_<id>/journey`, first page of 100) and the hour's cohort
 *   (`GET /customers/cohorts?group_by=month&start=<hour>&end=<hour + 3,599,999 − i ms>`, whose
 *   customer count must equal the customers loaded), and a range from 90 minutes before the
 *   hour to 90 minutes after it (the hour whole inside a range whose edges carry a time of day,
 *   as a "last 24 hours" dashboard asks; same count); p50 over the reads answered 200. Each
 *   run varies `end` by a millisecond (inside the last second of the hour for the cohort, in
 *   the future for the journey), which
 *   changes no answer but makes every read a cache MISS, so p50 is the service's read, not
 *   Redis's. Target: no bucket over its bound; the reads are reported (their 2× target needs
 *   the 10k figures of bench:analytics).
 *
 *   npm run bench:ingest
 *   BENCH_SECTIONS=single,customers BENCH_CUSTOMERS_MINUTES=2 npm run bench:ingest
 *   BENCH_SECTIONS=bounded BENCH_HOUR_CUSTOMERS=300000 BENCH_HOUR_MINUTES=30 npm run bench:ingest
 */
import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { WorkspacesService, type TrackedEvent } from "@linquid/contracts";
import { newId, type MeshConfig } from "@linquid/mesh";
import { BSON, MongoClient, type Db, type Document } from "mongodb";
import { generate, progressBar } from "./generate-data.js";
import { intEnv, pct, say, startBenchMesh } from "./bench-support.js";

const ALL_SECTIONS = ["rest-batch", "single", "customers", "bounded"] as const;
type Section = (typeof ALL_SECTIONS)[number];
const SECTIONS = new Set(
  (process.env["BENCH_SECTIONS"] ?? ALL_SECTIONS.join(",")).split(",").map((s) => {
    const name = s.trim();
    if (!(ALL_SECTIONS as readonly string[]).includes(name)) throw new Error(`BENCH_SECTIONS: unknown section "${name}" (known: ${ALL_SECTIONS.join(", ")})`);
    return name as Section;
  }),
);
const BATCH_EVENTS = intEnv("BENCH_BATCH_EVENTS", 20_000);
const SINGLE_SECONDS = intEnv("BENCH_SINGLE_SECONDS", 20);
const CUSTOMERS = intEnv("BENCH_CUSTOMERS", 100_000);
const CUSTOMERS_MINUTES = intEnv("BENCH_CUSTOMERS_MINUTES", 4);
const HEAVY_EVENTS = intEnv("BENCH_HEAVY_EVENTS", 100_000);
const HEAVY_MINUTES = intEnv("BENCH_HEAVY_MINUTES", 2);
const HOUR_CUSTOMERS = intEnv("BENCH_HOUR_CUSTOMERS", 300_000);
const HOUR_MINUTES = intEnv("BENCH_HOUR_MINUTES", 4);
const RUNS = intEnv("BENCH_RUNS", 20);
const READ_SECONDS = intEnv("BENCH_READ_SECONDS", 60);
const CONNECTIONS = 16;
const ITEMS_PER_REQUEST = 1000;
const HOUR = 3_600_000;

/** A figure of the final table. */
interface Row {
  figure: string;
  value: string;
  target: string;
  /** true met, false missed, undefined no target. */
  met?: boolean | undefined;
  load: string;
}

const load1 = () => loadavg()[0]!.toFixed(1);

/** What a section needs of the running mesh. */
interface Ctx {
  api: string;
  config: MeshConfig;
  mongo: MongoClient;
  analyticsDb: Db;
  scratchDb: Db;
  newWorkspace(name: string): Promise<{ ws: string; key: string }>;
}

/** One REST call; the answer's status and parsed body. */
async function call(api: string, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { "x-api-key": key, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
}

/** A TrackBatch event as a `POST /track/batch` item: `{type, …the single route's fields}`. */
function restItem(e: TrackedEvent): Record<string, unknown> {
  const out: Record<string, unknown> = { type: e.event.case === "custom" ? "event" : e.event.case };
  for (const [k, v] of Object.entries(e.event.value as unknown as Record<string, unknown>)) {
    if (k === "$typeName" || k === "workspaceId" || v === undefined) continue;
    if (k === "timestamp") out[k] = timestampDate(v as Parameters<typeof timestampDate>[0]).toISOString();
    else if (typeof v === "bigint") out[k] = Number(v);
    else out[k] = v;
  }
  return out;
}

/** generate-data's traffic as REST batch requests (nothing is sent). */
async function collectTraffic(events: number, seed: number, prefix: string): Promise<Array<Record<string, unknown>[]>> {
  const requests: Array<Record<string, unknown>[]> = [];
  const fake = {
    trackBatch: async (req: { events: TrackedEvent[] }) => {
      requests.push(req.events.map(restItem));
      return { results: req.events.map(() => ({ duplicate: false })) };
    },
  };
  await generate(fake as never, "ws_collect", { customers: Math.ceil((events / 6) * 1.2), seed, batch: ITEMS_PER_REQUEST, months: 12, now: Date.now(), maxEvents: events, prefix, currency: "USD" });
  return requests;
}

/**
 * Posts batch requests in order. A request answered other than 200 is counted (its items as
 * failed, the last answer kept) and the next one is sent: one failure should not end a run of
 * minutes, but it must show in the figures.
 */
async function postBatches(api: string, key: string, requests: ReadonlyArray<Record<string, unknown>[]>, progress?: (n: number) => void): Promise<BatchOutcome> {
  const out: BatchOutcome = { items: 0, refused: 0, failedRequests: 0, failedItems: 0, lastFailure: "" };
  for (const events of requests) {
    const res = await call(api, key, "POST", "/track/batch", { events });
    if (res.status !== 200) {
      out.failedRequests++;
      out.failedItems += events.length;
      out.lastFailure = `${res.status} ${JSON.stringify(res.body).slice(0, 200)}`;
    } else {
      for (const r of res.body.data.results as Array<{ error: unknown }>) if (r.error !== null && r.error !== undefined) out.refused++;
      out.items += events.length;
    }
    progress?.(out.items + out.failedItems);
  }
  return out;
}

interface BatchOutcome {
  /** Items of requests answered 200 (refused items included). */
  items: number;
  /** Items answered with their own error inside a 200. */
  refused: number;
  failedRequests: number;
  failedItems: number;
  lastFailure: string;
}

function sumOutcomes(all: readonly BatchOutcome[]): BatchOutcome {
  const out: BatchOutcome = { items: 0, refused: 0, failedRequests: 0, failedItems: 0, lastFailure: "" };
  for (const o of all) {
    out.items += o.items;
    out.refused += o.refused;
    out.failedRequests += o.failedRequests;
    out.failedItems += o.failedItems;
    if (o.lastFailure !== "") out.lastFailure = o.lastFailure;
  }
  if (out.failedRequests > 0) say(`${out.failedRequests} batch requests failed (${out.failedItems} items), the last: ${out.lastFailure}`);
  return out;
}

/** The documents the service stored for a workspace (the raw baselines insert exactly these). */
async function storedEvents(ctx: Ctx, ws: string): Promise<Document[]> {
  return ctx.analyticsDb.collection("events").find({ workspaceId: ws }).toArray();
}

/** A fresh scratch collection with the service's `journey` index on events. */
async function scratch(ctx: Ctx, name: string) {
  const col = ctx.scratchDb.collection(`${name}_${newId("", 6).slice(1).toLowerCase()}`);
  await col.createIndex({ workspaceId: 1, customerId: 1, at: 1, _id: 1 }, { name: "journey" });
  return col;
}

async function restBatchSection(ctx: Ctx, rows: Row[]): Promise<void> {
  for (const conc of [1, 4]) {
    const streams = await Promise.all(Array.from({ length: conc }, (_, s) => collectTraffic(Math.ceil(BATCH_EVENTS / conc), 100 + 10 * conc + s, `b${conc}s${s}_`)));
    const total = streams.reduce((n, reqs) => n + reqs.reduce((m, r) => m + r.length, 0), 0);
    const { ws, key } = await ctx.newWorkspace(`rest batch x${conc}`);
    const bar = progressBar(`POST /track/batch x${conc}`, total);
    let sent = 0;
    const t0 = performance.now();
    const done = sumOutcomes(await Promise.all(streams.map((reqs) => postBatches(ctx.api, key, reqs, () => bar(Math.min(total, (sent += ITEMS_PER_REQUEST)))))));
    const ms = performance.now() - t0;
    bar(total);
    // Only items of answered requests count; failed requests are shown next to the figure.
    const rate = (done.items / ms) * 1000;
    const refused = done.refused;
    const loadRest = load1();

    const docs = await storedEvents(ctx, ws);
    const col = await scratch(ctx, `batch${conc}`);
    const r0 = performance.now();
    for (let i = 0; i < docs.length; i += ITEMS_PER_REQUEST) await col.insertMany(docs.slice(i, i + ITEMS_PER_REQUEST), { ordered: false });
    const rawRate = (docs.length / (performance.now() - r0)) * 1000;
    await col.drop();
    say(`batch x${conc}: ${done.items} events in ${(ms / 1000).toFixed(1)} s, ${rate.toFixed(0)}/s (${refused} items refused); raw insertMany ${docs.length} docs ${rawRate.toFixed(0)}/s`);
    rows.push({ figure: `POST /track/batch x${conc}: events/s (${done.items} events, ${refused} refused, ${done.failedRequests} requests failed)`, value: rate.toFixed(0), target: ">= 5000", met: rate >= 5000 && done.failedRequests === 0, load: loadRest });
    rows.push({ figure: `  raw insertMany x1 of the stored docs (${docs.length}): docs/s`, value: rawRate.toFixed(0), target: "", load: load1() });
    rows.push({ figure: `  ratio REST x${conc} / raw`, value: (rate / rawRate).toFixed(3), target: ">= 0.3", met: rate / rawRate >= 0.3, load: "" });
  }
}

async function singleSection(ctx: Ctx, rows: Row[]): Promise<void> {
  const { ws, key } = await ctx.newWorkspace("single events");
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  let lastFailure = "";
  const stopAt = performance.now() + SINGLE_SECONDS * 1000;
  const post = async (path: string, body: unknown) => {
    const t = performance.now();
    const res = await call(ctx.api, key, "POST", path, body);
    latencies.push(performance.now() - t);
    if (res.status >= 200 && res.status < 300) ok++;
    else (failed++, (lastFailure = `${path} ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`));
  };
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async (_, w) => {
      for (let i = 0; performance.now() < stopAt; i++) {
        const externalId = `w${w}_u${i}`;
        await post("/track/lead", { externalId, eventId: `${externalId}_lead`, email: `${externalId}@example.com`, name: `Customer ${w}.${i}` });
        if (performance.now() >= stopAt) break;
        await post("/track/sale", { externalId, amount: 500 + ((w * 7919 + i) % 20_000), currency: "USD", invoiceId: `${externalId}_inv` });
      }
    }),
  );
  const ms = performance.now() - t0;
  const rate = (ok / ms) * 1000;
  const loadRest = load1();
  if (failed > 0) say(`single: ${failed} requests failed, the last: ${lastFailure}`);

  const docs = await storedEvents(ctx, ws);
  const col = await scratch(ctx, "single");
  let next = 0;
  const r0 = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      for (let i = next++; i < docs.length; i = next++) await col.insertOne(docs[i]!);
    }),
  );
  const rawRate = (docs.length / (performance.now() - r0)) * 1000;
  await col.drop();
  say(`single: ${ok} events in ${(ms / 1000).toFixed(1)} s, ${rate.toFixed(0)}/s, p50 ${pct(latencies, 50).toFixed(1)} ms; raw insertOne x16 ${docs.length} docs ${rawRate.toFixed(0)}/s`);
  rows.push({ figure: `POST /track/lead+sale x16: events/s (${ok} ok, ${failed} failed, ${SINGLE_SECONDS} s)`, value: rate.toFixed(0), target: ">= 1000", met: rate >= 1000 && failed === 0, load: loadRest });
  rows.push({ figure: `  request p50 / p99 ms`, value: `${pct(latencies, 50).toFixed(1)} / ${pct(latencies, 99).toFixed(1)}`, target: "", load: "" });
  rows.push({ figure: `  raw insertOne x16 of the stored docs (${docs.length}): docs/s`, value: rawRate.toFixed(0), target: "", load: load1() });
  rows.push({ figure: `  ratio REST / raw insertOne x16`, value: (rate / rawRate).toFixed(3), target: "", load: "" });
}

async function customersSection(ctx: Ctx, rows: Row[]): Promise<void> {
  const { key } = await ctx.newWorkspace("customers");
  const WINDOW = 1000;
  const ends: number[] = []; // ends[k]: when the (k+1)·1000th create answered, ms after start
  let created = 0;
  let failed = 0;
  let lastFailure = "";
  let next = 0;
  const deadline = performance.now() + CUSTOMERS_MINUTES * 60_000;
  const bar = progressBar("POST /customers x16", CUSTOMERS);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      for (let i = next++; i < CUSTOMERS && performance.now() < deadline; i = next++) {
        const res = await call(ctx.api, key, "POST", "/customers", { externalId: `c${i}`, email: `c${i}@example.com`, name: `Customer ${i}`, country: ["US", "DE", "FR", "GB"][i % 4] });
        if (res.status !== 201) {
          failed++;
          lastFailure = `${res.status} ${JSON.stringify(res.body).slice(0, 200)}`;
          continue;
        }
        if (++created % WINDOW === 0) ends.push(performance.now() - t0);
        bar(created);
      }
    }),
  );
  process.stderr.write("\n");
  if (failed > 0) say(`customers: ${failed} creates failed, the last: ${lastFailure}`);
  const rateOf = (k: number) => (WINDOW / (ends[k]! - (k === 0 ? 0 : ends[k - 1]!))) * 1000;
  if (ends.length === 0) {
    rows.push({ figure: `POST /customers x16: fewer than ${WINDOW} created (${created})`, value: "-", target: ">= 0.8x", met: false, load: load1() });
    return;
  }
  const first = rateOf(0);
  const last = rateOf(ends.length - 1);
  const reached = ends.length * WINDOW;
  const step = Math.max(1, Math.round(ends.length / 10));
  const curve: string[] = [];
  for (let k = 0; k < ends.length; k += step) curve.push(`${(k + 1) * WINDOW}:${rateOf(k).toFixed(0)}`);
  if ((ends.length - 1) % step !== 0) curve.push(`${reached}:${last.toFixed(0)}`);
  say(`customers: ${created} created in ${((performance.now() - t0) / 1000).toFixed(0)} s; per-1,000 rate curve ${curve.join(" ")}`);
  rows.push({ figure: `POST /customers x16: creates/s over the first 1,000`, value: first.toFixed(1), target: "", load: "" });
  rows.push({ figure: `  creates/s over ${reached - WINDOW + 1}..${reached}${reached < 100_000 ? " (100,000 not reached)" : ""}`, value: last.toFixed(1), target: "", load: load1() });
  rows.push({ figure: `  ratio at ${reached} / first 1,000`, value: (last / first).toFixed(2), target: ">= 0.8 at 100,000", met: reached >= 100_000 ? last / first >= 0.8 : last / first >= 0.8 ? undefined : false, load: "" });
  rows.push({ figure: `  curve (count:creates/s) ${curve.join(" ")}`, value: "", target: "", load: "" });
}

/** What a series of reads gave: p50 of the reads answered 200, how many ran and how many failed. */
interface ReadSeries {
  p50: number | undefined;
  runs: number;
  failed: number;
  lastFailure: string;
}

/**
 * Up to RUNS sequential reads `fn(i)` (which returns the status), stopping early after
 * BENCH_READ_SECONDS of reading (at least 3 reads) or at the third failure: a read that runs
 * into its 15 s deadline would otherwise hold the run for minutes.
 */
async function readSeries(fn: (i: number) => Promise<{ status: number; body: any }>): Promise<ReadSeries> {
  const samples: number[] = [];
  const out: ReadSeries = { p50: undefined, runs: 0, failed: 0, lastFailure: "" };
  const until = performance.now() + READ_SECONDS * 1000;
  for (let i = 0; i < RUNS && out.failed < 3 && (i < 3 || performance.now() < until); i++) {
    const t = performance.now();
    const r = await fn(i);
    const ms = performance.now() - t;
    out.runs++;
    if (r.status === 200) samples.push(ms);
    else (out.failed++, (out.lastFailure = `${r.status} after ${(ms / 1000).toFixed(1)} s ${JSON.stringify(r.body).slice(0, 160)}`));
  }
  if (samples.length > 0) out.p50 = pct(samples, 50);
  if (out.failed > 0) say(`${out.failed} of ${out.runs} reads failed, the last: ${out.lastFailure}`);
  return out;
}

const showSeries = (s: ReadSeries) => (s.p50 === undefined ? "none ok" : s.p50.toFixed(1));

async function boundedSection(ctx: Ctx, rows: Row[]): Promise<void> {
  const size = ctx.config.analyticsBucketSize;
  // (a) One customer with a long history.
  const heavy = await ctx.newWorkspace("heavy customer");
  const t0 = Date.now() - 400 * 86_400_000;
  const heavyDeadline = Date.now() + HEAVY_MINUTES * 60_000;
  const lead = await call(ctx.api, heavy.key, "POST", "/track/lead", { externalId: "heavy", eventId: "heavy_lead", timestamp: new Date(t0).toISOString() });
  if (lead.status !== 200 && lead.status !== 201) throw new Error(`POST /track/lead answered ${lead.status}`);
  let heavyEvents = 1;
  let heavySent = 1;
  const heavyOutcomes: BatchOutcome[] = [];
  const barA = progressBar("one customer's events", HEAVY_EVENTS);
  const ha = performance.now();
  while (heavySent < HEAVY_EVENTS && Date.now() < heavyDeadline) {
    const n = Math.min(ITEMS_PER_REQUEST, HEAVY_EVENTS - heavySent);
    const events = Array.from({ length: n }, (_, k) => ({ type: "event", externalId: "heavy", eventName: "view", eventId: `h${heavySent + k}`, timestamp: new Date(t0 + (heavySent + k) * 1000).toISOString() }));
    const o = await postBatches(ctx.api, heavy.key, [events]);
    heavyOutcomes.push(o);
    heavySent += n;
    heavyEvents += o.items - o.refused;
    barA(heavySent);
  }
  const heavyFailed = sumOutcomes(heavyOutcomes).failedRequests;
  const heavyRate = ((heavyEvents - 1) / (performance.now() - ha)) * 1000;
  process.stderr.write("\n");
  const loadHeavy = load1();

  // (b) One hour of first touches: a click inside the hour, the lead that claims it an hour later.
  const hourWs = await ctx.newWorkspace("hour of first touches");
  const hour = Math.floor((Date.now() - 30 * 86_400_000) / HOUR) * HOUR;
  const hourDeadline = Date.now() + HOUR_MINUTES * 60_000;
  const PAIRS = ITEMS_PER_REQUEST / 2;
  let nextPair = 0;
  let loaded = 0;
  let refused = 0;
  const hourOutcomes: BatchOutcome[] = [];
  const barB = progressBar("one hour's first touches", HOUR_CUSTOMERS);
  const hb = performance.now();
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (Date.now() < hourDeadline) {
        const from = nextPair;
        const n = Math.min(PAIRS, HOUR_CUSTOMERS - from);
        if (n <= 0) break;
        nextPair += n;
        const events: Record<string, unknown>[] = [];
        for (let i = from; i < from + n; i++) {
          const at = hour + ((i * 7919) % (HOUR - 1000)); // never in the hour's last second
          events.push({ type: "click", clickId: `hc${i}`, linkId: `lnk_${i % 8}`, campaignId: "launch", source: "google", timestamp: new Date(at).toISOString() });
          events.push({ type: "lead", externalId: `hu${i}`, clickId: `hc${i}`, eventId: `hl${i}`, timestamp: new Date(at + HOUR).toISOString() });
        }
        const o = await postBatches(ctx.api, hourWs.key, [events]);
        hourOutcomes.push(o);
        refused += o.refused;
        if (o.failedRequests === 0) loaded += n;
        barB(nextPair);
      }
    }),
  );
  const hourFailed = sumOutcomes(hourOutcomes).failedRequests;
  const hourRate = ((loaded * 2) / (performance.now() - hb)) * 1000;
  process.stderr.write("\n");
  const loadHour = load1();
  say(`bounded: ${heavyEvents} events of one customer (${heavyRate.toFixed(0)} events/s), ${loaded} first touches in one hour (${hourRate.toFixed(0)} events/s, ${refused} refused)`);

  // The largest document of each collection of the whole run, by BSON size (and entries).
  const largest: Record<string, { bytes: number; entries: number; docs: number; over: number }> = {};
  for (const { name } of await ctx.analyticsDb.listCollections({}, { nameOnly: true }).toArray()) {
    const s = { bytes: 0, entries: 0, docs: 0, over: 0 };
    for await (const d of ctx.analyticsDb.collection(name).find({})) {
      s.docs++;
      s.bytes = Math.max(s.bytes, BSON.calculateObjectSize(d));
      const entries = Math.max((d["entries"] as unknown[] | undefined)?.length ?? 0, (d["count"] as number | undefined) ?? 0);
      s.entries = Math.max(s.entries, entries);
      if (name === "member_buckets" && entries > size) s.over++;
    }
    largest[name] = s;
  }

  // Reads through REST, every one a cache miss (see the header).
  const future = Date.now() + 365 * 86_400_000;
  let journeyCount = 0;
  const journey = await readSeries(async (i) => {
    const r = await call(ctx.api, heavy.key, "GET", `/customers/ext_heavy/journey?end=${new Date(future + i).toISOString()}`);
    if (r.status === 200) journeyCount = r.body.data.length;
    return r;
  });
  let cohortCount = -1;
  const cohort = await readSeries(async (i) => {
    const r = await call(ctx.api, hourWs.key, "GET", `/customers/cohorts?group_by=month&start=${new Date(hour).toISOString()}&end=${new Date(hour + HOUR - 1 - i).toISOString()}`);
    if (r.status === 200) cohortCount = (r.body.data as Array<{ customers: number }>).reduce((n, c) => n + Number(c.customers), 0);
    return r;
  });
  // The hour whole inside a range whose edges carry a time of day (a "last 24 hours" dashboard's
  // shape): 90 minutes before it to 90 minutes after it, both edges moved by i ms.
  let aroundCount = -1;
  const around = await readSeries(async (i) => {
    const r = await call(ctx.api, hourWs.key, "GET", `/customers/cohorts?group_by=month&start=${new Date(hour - 5_400_000 + i).toISOString()}&end=${new Date(hour + HOUR + 5_400_000 - 1 - i).toISOString()}`);
    if (r.status === 200) aroundCount = (r.body.data as Array<{ customers: number }>).reduce((n, c) => n + Number(c.customers), 0);
    return r;
  });

  rows.push({ figure: `one customer: events stored (of ${HEAVY_EVENTS}; ${heavyFailed} requests failed), events/s`, value: `${heavyEvents}, ${heavyRate.toFixed(0)}/s`, target: `${HEAVY_EVENTS}`, met: heavyEvents >= HEAVY_EVENTS, load: loadHeavy });
  rows.push({ figure: `  journey p50 ms (first page: ${journeyCount} of 100 touchpoints; uncached; ${journey.runs} runs, ${journey.failed} failed)`, value: showSeries(journey), target: "answers", met: journey.failed === 0 && journeyCount === Math.min(100, heavyEvents), load: load1() });
  rows.push({ figure: `one hour: first touches loaded (of ${HOUR_CUSTOMERS}; ${hourFailed} requests failed), click+lead events/s`, value: `${loaded}, ${hourRate.toFixed(0)}/s`, target: `${HOUR_CUSTOMERS}`, met: loaded >= HOUR_CUSTOMERS, load: loadHour });
  rows.push({ figure: `  cohort of that hour p50 ms (uncached; ${cohort.runs} runs, ${cohort.failed} failed); customers counted`, value: `${showSeries(cohort)}; ${cohortCount < 0 ? "-" : cohortCount}`, target: `count = ${loaded}`, met: cohort.failed === 0 && cohortCount === loaded, load: load1() });
  rows.push({ figure: `  cohort of ±90 min around that hour p50 ms (uncached; ${around.runs} runs, ${around.failed} failed); customers counted`, value: `${showSeries(around)}; ${aroundCount < 0 ? "-" : aroundCount}`, target: `count = ${loaded}`, met: around.failed === 0 && aroundCount === loaded, load: load1() });
  for (const [name, s] of Object.entries(largest)) {
    rows.push({ figure: `${name}: largest doc bytes / entries (${s.docs} docs)`, value: `${s.bytes} / ${s.entries}`, target: `entries <= ${size}, < 16 MB`, met: s.over === 0 && s.bytes < 16 * 1024 * 1024, load: "" });
  }
}

async function main(): Promise<void> {
  const { dataDir, config, host, mongo } = await startBenchMesh("linquid-bench-i-");
  const workspaces = host.client(WorkspacesService);
  const ctx: Ctx = {
    api: `${host.gatewayUrl}${config.apiBasePath}`,
    config,
    mongo,
    analyticsDb: mongo.db(`${config.mongodbDbPrefix}_analytics`),
    scratchDb: mongo.db(`${config.mongodbDbPrefix}_raw`),
    async newWorkspace(name) {
      const ws = (await workspaces.createWorkspace({ name, plan: "enterprise", unlimited: true, currency: "USD" })).workspace!.id;
      const key = (await workspaces.createApiKey({ workspaceId: ws, scopes: ["events:write", "links:read", "links:write", "analytics:read"] })).key;
      return { ws, key };
    },
  };
  const rows: Row[] = [];
  const started = performance.now();
  say(`sections ${[...SECTIONS].join(", ")}; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  try {
    const run: Record<Section, (c: Ctx, r: Row[]) => Promise<void>> = { "rest-batch": restBatchSection, single: singleSection, customers: customersSection, bounded: boundedSection };
    for (const s of ALL_SECTIONS) {
      if (!SECTIONS.has(s)) continue;
      // A section that fails still leaves the others' figures, and says where it stopped.
      try {
        await run[s](ctx, rows);
      } catch (err) {
        say(`${s}: ${(err as Error).stack ?? err}`);
        rows.push({ figure: `${s}: FAILED ${(err as Error).message.slice(0, 120)}`, value: "-", target: "", met: false, load: load1() });
      }
    }
  } finally {
    await mongo.close();
    await host.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }

  const width = Math.max(...rows.map((r) => r.figure.length)) + 2;
  const lines = [
    `backend: ${process.env["MONGODB_URI"] ? "MongoDB (MONGODB_URI)" : "embedded FerretDB v1 (SQLite)"}; ${((performance.now() - started) / 60_000).toFixed(1)} min; load average now ${loadavg().map((l) => l.toFixed(1)).join(" ")}`,
    `${"figure".padEnd(width)}${"value".padStart(18)}  ${"target".padEnd(20)}${"".padEnd(6)}load1`,
    ...rows.map((r) => `${r.figure.padEnd(width)}${r.value.padStart(18)}  ${r.target.padEnd(20)}${(r.met === false ? "MISS" : r.met ? "ok" : "").padEnd(6)}${r.load}`),
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
