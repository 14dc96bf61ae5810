/**
 * Embedded database benchmark: the patched FerretDB build the product runs (.bin/ferretdb) and
 * upstream FerretDB v1.24.2 side by side, in one run, each started as the product starts it
 * (SQLite handler, `synchronous=NORMAL`), through the Node driver.
 *
 * Reads: one collection grows through BENCH_DB_SIZES (default 1,000, 100,000 and 1,000,000
 * documents; upstream only up to BENCH_DB_UPSTREAM_MAX, default 100,000, as it reads the whole
 * collection for every query). Documents belong to workspaces of a fixed size
 * (BENCH_DB_WORKSPACE, default 1,000), so that an equality on `workspaceId` selects a bounded
 * subset at every size; `createdAt` is one second apart, so a one-minute-ish range selects 20.
 * Indexes as the services create them: {workspaceId:1, createdAt:-1, _id:-1} and {createdAt:1}.
 * Each query shape runs BENCH_DB_RUNS times (default 50) after BENCH_DB_WARMUP (default 5),
 * or as many as fit in BENCH_DB_BUDGET_S seconds (default 30); every answer is checked.
 *
 * Writes: 4 processes × 100 simultaneous `$inc` of one document (lost updates), and one
 * bulkWrite of 10,000 `$inc` upserts (updates per second), on both builds; a build that does
 * not answer within BENCH_DB_WRITE_TIMEOUT_S (default 60) is reported as such.
 *
 * Finally `explain` of each shape on the patched build at the largest size. Results are a
 * markdown report on stdout; progress goes to stderr.
 *
 *   npm run bench:db
 *   BENCH_DB_SIZES=1000,100000 BENCH_DB_RUNS=20 npm run bench:db
 *
 * Upstream is built on demand into .cache/ferretdb-upstream/ferretdb (Go and the module proxy
 * needed once); FERRETDB_BIN and FERRETDB_UPSTREAM_BIN override either binary.
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { startFerretDb, type EmbeddedServer } from "@linquid/mesh";
import { Long, MongoClient, type Collection, type Db, type Document } from "mongodb";
import { intEnv, pct, say } from "./bench-support.js";

const FERRETDB_VERSION = "v1.24.2";
const WORKSPACE = intEnv("BENCH_DB_WORKSPACE", 1_000);
const RUNS = intEnv("BENCH_DB_RUNS", 50);
const WARMUP = intEnv("BENCH_DB_WARMUP", 5);
const BUDGET_MS = intEnv("BENCH_DB_BUDGET_S", 30) * 1000;
const UPSTREAM_MAX = intEnv("BENCH_DB_UPSTREAM_MAX", 100_000);
const WRITE_TIMEOUT_MS = intEnv("BENCH_DB_WRITE_TIMEOUT_S", 60) * 1000;
const LOAD_BATCH = 1_000;
const PAGE = 20;
const SKIP = 10_000;
const T0 = Date.UTC(2026, 0, 1);

/** The sizes to measure, ascending. */
function sizes(): number[] {
  const raw = process.env["BENCH_DB_SIZES"] ?? "1000,100000,1000000";
  const out = raw.split(",").map((s) => s.trim().replaceAll("_", ""));
  if (out.some((s) => !/^\d+$/.test(s) || Number(s) < PAGE)) throw new Error(`BENCH_DB_SIZES: expected sizes of at least ${PAGE}, comma-separated, got "${raw}"`);
  return [...new Set(out.map(Number))].sort((a, b) => a - b);
}

const fmt = (n: number): string => n.toLocaleString("en-US", { maximumFractionDigits: 0 });
const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : fmt(n));

// ---------------------------------------------------------------------------------------------
// Builds

interface Build {
  name: "patched" | "upstream";
  bin: string;
  version: string;
}

function versionOf(bin: string): string {
  const out = execFileSync(bin, ["--version"], { encoding: "utf8" });
  return /^version: (.*)$/m.exec(out)?.[1] ?? "unknown";
}

/** Upstream FerretDB, built from its Go module without any patch when not there yet. */
function upstreamBinary(): string {
  const configured = process.env["FERRETDB_UPSTREAM_BIN"];
  if (configured !== undefined && configured !== "") return resolve(configured);
  const out = resolve(".cache/ferretdb-upstream/ferretdb");
  if (existsSync(out)) return out;
  say(`building upstream FerretDB ${FERRETDB_VERSION} into ${out} (a minute or two)`);
  const info = JSON.parse(
    execFileSync("go", ["mod", "download", "-json", `github.com/FerretDB/FerretDB@${FERRETDB_VERSION}`], { cwd: tmpdir(), encoding: "utf8" }),
  ) as { Dir?: string; Error?: string };
  if (info.Dir === undefined) throw new Error(`go mod download: ${info.Error ?? "no module directory"}`);
  const src = mkdtempSync(join(tmpdir(), "ferretdb-upstream-"));
  try {
    cpSync(info.Dir, src, { recursive: true });
    // The module cache is read-only; the build writes the version file into the copy.
    const writable = (p: string): void => {
      const st = statSync(p);
      chmodSync(p, st.mode | 0o200);
      if (st.isDirectory()) for (const e of readdirSync(p)) writable(join(p, e));
    };
    writable(src);
    writeFileSync(join(src, "build/version/version.txt"), `${FERRETDB_VERSION}\n`);
    mkdirSync(dirname(out), { recursive: true });
    execFileSync("go", ["build", "-trimpath", "-o", out, "./cmd/ferretdb"], {
      cwd: src,
      env: { ...process.env, GOFLAGS: "-buildvcs=false" },
      stdio: ["ignore", "inherit", "inherit"],
    });
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reads

/** A customer-like document of about 250 bytes. */
function doc(i: number, workspace: number): Document {
  return {
    _id: `cus_${i.toString(36).padStart(6, "0")}`,
    workspaceId: `ws_${workspace}`,
    externalId: `ext-${i}`,
    email: `person${i}@example.com`,
    name: `Person Number ${i}`,
    country: ["US", "DE", "FR", "GB", "BR"][i % 5]!,
    n: i % 997,
    tags: ["a", "b"],
    createdAt: new Date(T0 + i * 1000),
    updatedAt: new Date(T0 + i * 1000),
  };
}

/** What the collection holds: its size and the number of documents of each workspace. */
interface Dataset {
  size: number;
  workspaces: number[];
}

/**
 * Grows the collection to `to` documents; the new ones go to new workspaces of WORKSPACE
 * documents each, interleaved. Returns documents per second.
 */
async function grow(coll: Collection<Document>, data: Dataset, to: number): Promise<number> {
  const from = data.size;
  const firstWs = data.workspaces.length;
  const newWs = Math.max(1, Math.ceil((to - from) / WORKSPACE));
  data.workspaces.push(...Array.from({ length: newWs }, () => 0));
  const started = performance.now();
  let lastSay = started;
  for (let i = from; i < to; i += LOAD_BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(to, i + LOAD_BATCH); j++) {
      const w = firstWs + ((j - from) % newWs);
      data.workspaces[w]!++;
      batch.push(doc(j, w));
    }
    await coll.insertMany(batch, { ordered: false });
    data.size = i + batch.length;
    if (performance.now() - lastSay > 15_000) {
      lastSay = performance.now();
      say(`  loaded ${fmt(i + batch.length)} of ${fmt(to)}`);
    }
  }
  return ((to - from) / (performance.now() - started)) * 1000;
}

interface Shape {
  key: string;
  name: string;
  /** Runs the query once; throws when the answer is wrong. */
  run(coll: Collection<Document>, data: Dataset): Promise<void>;
  /** The explain command of the shape (database command, verbosity queryPlanner). */
  explain(coll: string, size: number): Document;
}

const randomInt = (n: number): number => Math.floor(Math.random() * n);
const skipFor = (size: number): number => Math.min(SKIP, size - PAGE);
function expectEqual(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`wrong answer for ${what}: ${JSON.stringify(got)} instead of ${JSON.stringify(want)}`);
}

const SHAPES: Shape[] = [
  {
    key: "eq-sort-limit",
    name: "workspaceId = W, sort {createdAt:-1,_id:-1}, limit 20",
    async run(coll, data) {
      const w = randomInt(data.workspaces.length);
      const ws = `ws_${w}`;
      const docs = await coll.find({ workspaceId: ws }).sort({ createdAt: -1, _id: -1 }).limit(PAGE).toArray();
      expectEqual(`newest of ${ws}`, docs.length, Math.min(PAGE, data.workspaces[w]!));
      for (let i = 1; i < docs.length; i++) {
        if (docs[i - 1]!["createdAt"] < docs[i]!["createdAt"] || docs[i]!["workspaceId"] !== ws) throw new Error(`wrong order or workspace in the newest of ${ws}`);
      }
    },
    explain: (coll) => ({ find: coll, filter: { workspaceId: "ws_0" }, sort: { createdAt: -1, _id: -1 }, limit: PAGE }),
  },
  {
    key: "count-eq",
    name: "countDocuments workspaceId = W",
    async run(coll, data) {
      const w = randomInt(data.workspaces.length);
      expectEqual(`count of ws_${w}`, await coll.countDocuments({ workspaceId: `ws_${w}` }), data.workspaces[w]);
    },
    explain: (coll) => ({ aggregate: coll, pipeline: [{ $match: { workspaceId: "ws_0" } }, { $group: { _id: 1, n: { $sum: 1 } } }], cursor: {} }),
  },
  {
    key: "range",
    name: "createdAt in [t, t+20 s) (20 documents)",
    async run(coll, { size }) {
      const k = randomInt(size - PAGE);
      const docs = await coll.find({ createdAt: { $gte: new Date(T0 + k * 1000), $lt: new Date(T0 + (k + PAGE) * 1000) } }).toArray();
      expectEqual(`range at ${k}`, docs.length, PAGE);
    },
    explain: (coll, size) => ({ find: coll, filter: { createdAt: { $gte: new Date(T0 + Math.floor(size / 2) * 1000), $lt: new Date(T0 + (Math.floor(size / 2) + PAGE) * 1000) } } }),
  },
  {
    key: "skip",
    name: "sort {createdAt:1}, skip 10,000, limit 20",
    async run(coll, { size }) {
      const skip = skipFor(size);
      const docs = await coll.find({}).sort({ createdAt: 1 }).skip(skip).limit(PAGE).toArray();
      expectEqual(`page after ${skip}`, docs.map((d) => (d["createdAt"] as Date).getTime()), Array.from({ length: PAGE }, (_, i) => T0 + (skip + i) * 1000));
    },
    // FerretDB's explain takes `skip` only as a long (MongoDB takes either).
    explain: (coll, size) => ({ find: coll, filter: {}, sort: { createdAt: 1 }, skip: Long.fromNumber(skipFor(size)), limit: PAGE }),
  },
];

interface Samples {
  p50: number;
  p95: number;
  n: number;
  error?: string;
}

async function measure(shape: Shape, coll: Collection<Document>, data: Dataset): Promise<Samples> {
  const started = performance.now();
  const times: number[] = [];
  try {
    for (let i = 0; i < WARMUP && performance.now() - started < BUDGET_MS / 4; i++) await shape.run(coll, data);
    const from = performance.now();
    while (times.length < RUNS && (times.length < 3 || performance.now() - from < BUDGET_MS)) {
      const t = performance.now();
      await shape.run(coll, data);
      times.push(performance.now() - t);
    }
  } catch (err) {
    return { p50: NaN, p95: NaN, n: times.length, error: err instanceof Error ? err.message : String(err) };
  }
  return { p50: pct(times, 50), p95: pct(times, 95), n: times.length };
}

// ---------------------------------------------------------------------------------------------
// Writes

/** Child mode: connect, say ready, wait for "go", run `n` simultaneous $inc, print the outcome. */
async function incChild(url: string, dbName: string, n: number): Promise<void> {
  const client = await new MongoClient(url, { maxPoolSize: n }).connect();
  const coll = client.db(dbName).collection<{ _id: string; v: number }>("counter");
  process.stdout.write("ready\n");
  await new Promise<void>((go) => createInterface({ input: process.stdin }).once("line", () => go()));
  const rs = await Promise.allSettled(Array.from({ length: n }, () => coll.updateOne({ _id: "c" }, { $inc: { v: 1 } })));
  const failed = rs.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  process.stdout.write(`${JSON.stringify({ acked: rs.length - failed.length, failed: failed.length, error: failed[0] === undefined ? null : String(failed[0].reason) })}\n`);
  await client.close();
}

interface IncOutcome {
  /** No answer from every process within WRITE_TIMEOUT_MS. */
  timedOut: boolean;
  value: number | null;
  acked: number;
  failed: number;
  ms: number;
  error: string | null;
}

/** Races a promise against a timeout; null when it did not settle in time. */
async function withTimeout<T>(p: Promise<T>, timeoutMs = WRITE_TIMEOUT_MS): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function concurrentInc(url: string, db: Db, processes = 4, each = 100): Promise<IncOutcome | null> {
  await db.collection<{ _id: string; v: number }>("counter").insertOne({ _id: "c", v: 0 });
  const children = Array.from({ length: processes }, () =>
    spawn(process.execPath, ["--import", "tsx", process.argv[1]!, "--inc-child", url, db.databaseName, String(each)], { stdio: ["pipe", "pipe", "inherit"] }),
  );
  try {
    const lines = children.map((c) => createInterface({ input: c.stdout! }));
    const next = (i: number): Promise<string> => new Promise((r) => lines[i]!.once("line", r));
    await Promise.all(children.map((_, i) => next(i))); // ready
    const answers = children.map((_, i) => next(i));
    const started = performance.now();
    for (const c of children) c.stdin!.write("go\n");
    const outs = await withTimeout(Promise.all(answers));
    const took = performance.now() - started;
    if (outs === null) {
      // What got through so far, if the server still answers a read.
      const now = await withTimeout(db.collection<{ _id: string; v: number }>("counter").findOne({ _id: "c" }, { maxTimeMS: 5_000 }), 10_000).catch(() => null);
      return { timedOut: true, value: now?.v ?? null, acked: 0, failed: 0, ms: took, error: null };
    }
    const parsed = outs.map((o) => JSON.parse(o) as { acked: number; failed: number; error: string | null });
    const final = await db.collection<{ _id: string; v: number }>("counter").findOne({ _id: "c" });
    return {
      timedOut: false,
      value: final?.v ?? null,
      acked: parsed.reduce((a, p) => a + p.acked, 0),
      failed: parsed.reduce((a, p) => a + p.failed, 0),
      ms: took,
      error: parsed.find((p) => p.error !== null)?.error ?? null,
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  }
}

interface BulkOutcome {
  ms: number;
  upserted: number;
  matched: number;
  modified: number;
  total: number | null;
}

async function bulkUpserts(url: string, dbName: string, n = 10_000, keys = 7_000): Promise<BulkOutcome | null | string> {
  // A client of its own, closed when the server gives no answer.
  const client = await new MongoClient(url).connect();
  const coll = client.db(dbName).collection<{ _id: string; v: number }>("bulk");
  const ops = Array.from({ length: n }, (_, i) => ({ updateOne: { filter: { _id: `k${i % keys}` }, update: { $inc: { v: 1 } }, upsert: true } }));
  const started = performance.now();
  try {
    const r = await withTimeout(coll.bulkWrite(ops, { ordered: true }));
    if (r === null) return null;
    const took = performance.now() - started;
    const [sum] = await coll.aggregate<{ t: number }>([{ $group: { _id: null, t: { $sum: "$v" } } }]).toArray();
    return { ms: took, upserted: r.upsertedCount, matched: r.matchedCount, modified: r.modifiedCount, total: sum?.t ?? null };
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await client.close(true).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------

interface BuildResults {
  build: Build;
  load: Map<number, number>;
  reads: Map<number, Map<string, Samples>>;
  inc: IncOutcome | null | string;
  bulk: BulkOutcome | null | string;
  explain: Map<string, Document | string>;
  explainSize: number;
}

async function benchBuild(build: Build, sizeList: number[], explain: boolean): Promise<BuildResults> {
  const dataDir = mkdtempSync(join(tmpdir(), `linquid-bench-db-${build.name}-`));
  let server: EmbeddedServer | undefined;
  const res: BuildResults = { build, load: new Map(), reads: new Map(), inc: null, bulk: null, explain: new Map(), explainSize: 0 };
  try {
    server = await startFerretDb(build.bin, dataDir);
    const client = await new MongoClient(server.url).connect();
    try {
      const db = client.db("bench_reads");
      const coll = db.collection("customers");
      await coll.createIndex({ workspaceId: 1, createdAt: -1, _id: -1 }, { name: "workspace_created" });
      await coll.createIndex({ createdAt: 1 }, { name: "created" });
      const data: Dataset = { size: 0, workspaces: [] };
      for (const size of sizeList) {
        say(`${build.name}: loading ${fmt(data.size)} → ${fmt(size)} documents`);
        res.load.set(size, await grow(coll, data, size));
        const shapes = new Map<string, Samples>();
        for (const shape of SHAPES) {
          say(`${build.name} @ ${fmt(size)}: ${shape.name}`);
          const s = await measure(shape, coll, data);
          say(`  p50 ${ms(s.p50)} ms, p95 ${ms(s.p95)} ms over ${s.n} runs${s.error === undefined ? "" : ` — ${s.error}`}`);
          shapes.set(shape.key, s);
        }
        res.reads.set(size, shapes);
      }
      if (explain) {
        const size = sizeList.at(-1)!;
        res.explainSize = size;
        for (const shape of SHAPES) {
          res.explain.set(
            shape.key,
            await db.command({ explain: shape.explain("customers", size), verbosity: "queryPlanner" }).catch((e: unknown) => (e instanceof Error ? e.message : String(e))),
          );
        }
      }
      say(`${build.name}: 4 processes × 100 concurrent $inc`);
      res.inc = await concurrentInc(server.url, client.db("bench_inc")).catch((e: unknown) => (e instanceof Error ? e.message : String(e)));
      say(`${build.name}: bulkWrite of 10,000 $inc upserts`);
      res.bulk = await bulkUpserts(server.url, "bench_bulk");
    } finally {
      await client.close(true);
    }
  } finally {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return res;
}

function report(results: BuildResults[], sizeList: number[]): string {
  const out: string[] = [];
  const [patched, upstream] = results as [BuildResults, BuildResults | undefined];
  const base = sizeList[0]!;
  out.push("# Embedded database benchmark", "");
  out.push(`${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores, Node ${process.version}, through the Node driver on loopback.`, "");
  for (const r of results) out.push(`- ${r.build.name}: FerretDB ${r.build.version} (${r.build.bin})`);
  out.push(
    `- workspaces of ${fmt(WORKSPACE)} documents; indexes {workspaceId:1, createdAt:-1, _id:-1} and {createdAt:1}`,
    `- per shape: ${RUNS} runs after ${WARMUP} warm-up, or what fits in ${BUDGET_MS / 1000} s (at least 3); p50 / p95 in ms, runs in brackets`,
    "",
  );

  out.push("## Load (insertMany, batches of 1,000)", "", `| build | ${sizeList.map((s) => `to ${fmt(s)}`).join(" | ")} |`, `|---|${sizeList.map(() => "---:").join("|")}|`);
  for (const r of results) out.push(`| ${r.build.name} | ${sizeList.map((s) => (r.load.has(s) ? `${fmt(r.load.get(s)!)} docs/s` : "–")).join(" | ")} |`);
  out.push("");

  out.push(
    "## Reads",
    "",
    `| shape | build | ${sizeList.map((s) => fmt(s)).join(" | ")} | ${sizeList.slice(1).map((s) => `${fmt(s)} / ${fmt(base)}`).join(" | ")} |`,
    `|---|---|${sizeList.map(() => "---:").join("|")}|${sizeList.slice(1).map(() => "---:").join("|")}|`,
  );
  for (const shape of SHAPES) {
    for (const r of results) {
      const cell = (s: number): string => {
        const x = r.reads.get(s)?.get(shape.key);
        if (x === undefined) return "–";
        if (x.error !== undefined) return `error: ${x.error}`;
        return `${ms(x.p50)} / ${ms(x.p95)} (${x.n})`;
      };
      const ratio = (s: number): string => {
        const a = r.reads.get(s)?.get(shape.key)?.p50;
        const b = r.reads.get(base)?.get(shape.key)?.p50;
        if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b)) return "–";
        const x = a / b;
        return `${x.toFixed(x < 10 ? 2 : 0)}×${r === patched ? (x <= 2 ? " ✓" : " ✗") : ""}`;
      };
      out.push(`| ${r === patched ? shape.name : ""} | ${r.build.name} | ${sizeList.map(cell).join(" | ")} | ${sizeList.slice(1).map(ratio).join(" | ")} |`);
    }
  }
  out.push("", `Ratio target for the patched build: p50 at any size ≤ 2× its p50 at ${fmt(base)} (✓ met, ✗ not). The skip shape skips ${fmt(SKIP)} documents (${fmt(skipFor(base))} at ${fmt(base)}).`, "");

  const cmpSize = [...sizeList].reverse().find((s) => upstream?.reads.has(s) === true && patched.reads.has(s));
  if (upstream !== undefined && cmpSize !== undefined) {
    out.push(`## Patched vs upstream at ${fmt(cmpSize)} (p50)`, "", "| shape | patched ms | upstream ms | speed-up (target ≥ 100×, skip excepted) |", "|---|---:|---:|---:|");
    for (const shape of SHAPES) {
      const p = patched.reads.get(cmpSize)?.get(shape.key);
      const u = upstream.reads.get(cmpSize)?.get(shape.key);
      const x = p !== undefined && u !== undefined ? u.p50 / p.p50 : NaN;
      const mark = shape.key === "skip" ? "" : x >= 100 ? " ✓" : " ✗";
      out.push(`| ${shape.name} | ${ms(p?.p50 ?? NaN)} | ${ms(u?.p50 ?? NaN)} | ${Number.isNaN(x) ? "–" : `${x.toFixed(x < 10 ? 1 : 0)}×${mark}`} |`);
    }
    out.push("");
  }

  out.push("## 4 processes × 100 concurrent $inc of one document", "", "| build | final value | lost updates (target 0) | failed calls | time |", "|---|---:|---:|---:|---:|");
  for (const r of results) {
    const i = r.inc;
    if (i === null) out.push(`| ${r.build.name} | no answer | | | |`);
    else if (typeof i === "string") out.push(`| ${r.build.name} | error: ${i} | | | |`);
    else if (i.timedOut) out.push(`| ${r.build.name} | no answer within ${WRITE_TIMEOUT_MS / 1000} s (value then: ${i.value ?? "no answer to a read either"}) | | | |`);
    else out.push(`| ${r.build.name} | ${i.value} | ${i.value === null ? "–" : 400 - i.value}${i.value === 400 ? " ✓" : " ✗"} | ${i.failed}${i.error === null ? "" : ` (${i.error})`} | ${fmt(i.ms)} ms |`);
  }
  out.push("");

  out.push("## One bulkWrite of 10,000 $inc upserts (7,000 keys, ordered)", "", "| build | time | updates/s (target ≥ 5,000) | upserted / matched / modified | sum of v |", "|---|---:|---:|---:|---:|");
  for (const r of results) {
    const b = r.bulk;
    if (b === null) out.push(`| ${r.build.name} | no answer within ${WRITE_TIMEOUT_MS / 1000} s | | | |`);
    else if (typeof b === "string") out.push(`| ${r.build.name} | error: ${b} | | | |`);
    else {
      const rate = 10_000 / (b.ms / 1000);
      const exact = b.upserted === 7_000 && b.matched === 3_000 && b.modified === 3_000 && b.total === 10_000;
      out.push(`| ${r.build.name} | ${fmt(b.ms)} ms | ${fmt(rate)}${rate >= 5_000 ? " ✓" : " ✗"} | ${fmt(b.upserted)} / ${fmt(b.matched)} / ${fmt(b.modified)}${exact ? "" : " (wrong)"} | ${b.total ?? "–"} |`);
    }
  }
  out.push("");

  out.push(`## explain (queryPlanner) on the patched build at ${fmt(patched.explainSize)}`, "");
  for (const shape of SHAPES) {
    const e = patched.explain.get(shape.key);
    out.push(`**${shape.name}**`, "", "```");
    if (typeof e === "string" || e === undefined) out.push(`error: ${e ?? "not run"}`);
    else {
      const flags = Object.entries(e).filter(([k]) => /pushdown/i.test(k));
      out.push(flags.map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", "));
      const qp = e["queryPlanner"] as Document | undefined;
      const plan = qp?.["Plan"];
      if (Array.isArray(plan)) out.push(...plan.map(String));
      else out.push(JSON.stringify(qp ?? e).slice(0, 2000));
    }
    out.push("```", "");
  }
  return out.join("\n");
}

async function main(): Promise<void> {
  const sizeList = sizes();
  const patchedBin = resolve(process.env["FERRETDB_BIN"] ?? ".bin/ferretdb");
  if (!existsSync(patchedBin)) throw new Error(`${patchedBin} not found: run \`npm run setup\``);
  const builds: Build[] = [{ name: "patched", bin: patchedBin, version: versionOf(patchedBin) }];
  const upstreamBin = upstreamBinary();
  builds.push({ name: "upstream", bin: upstreamBin, version: versionOf(upstreamBin) });
  const results: BuildResults[] = [];
  for (const build of builds) {
    const mine = build.name === "patched" ? sizeList : sizeList.filter((s) => s <= UPSTREAM_MAX);
    results.push(await benchBuild(build, mine, build.name === "patched"));
  }
  process.stdout.write(`${report(results, sizeList)}\n`);
}

if (process.argv[2] === "--inc-child") {
  await incChild(process.argv[3]!, process.argv[4]!, Number(process.argv[5]));
} else {
  await main();
}
