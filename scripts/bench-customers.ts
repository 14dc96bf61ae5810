/**
 * Customers lists at scale: what each list shape costs as a workspace grows, and what the REST
 * gateway adds on top of the database.
 *
 * Starts a mesh (workspaces, customers, gateway) on the embedded FerretDB, or on MONGODB_URI
 * when set, and grows one workspace through BENCH_SIZES (default 1,000 and 100,000; add
 * 1,000,000 with BENCH_SIZES=1000,100000,1000000 — loading it takes about half an hour on the
 * embedded database), with three other workspaces of a tenth the size each. At every size it
 * measures, BENCH_RUNS times (default 30), each shape through the gateway over HTTP and
 * directly: the same reads the customers service makes, with the service's own repository on a
 * driver connection of the benchmark's. Then, at 100,000 customers or the largest size below:
 * an export of the whole workspace (rate, and the process's resident memory while a fast and a
 * slow client read it), and a cursor walk of the workspace while 1,000 customers are created and
 * 1,000 deleted meanwhile (each customer that lived throughout must be seen exactly once).
 *
 * It prints the query plan of each database shape: MongoDB's winning plan, or the embedded
 * database's `linquidPushdown` and SQLite plan.
 *
 * Loading: documents are made with the service's own newCustomerDoc (the exact shape it writes)
 * plus their identity keys and metadata index entries, and bulk-inserted — the API path would
 * take far longer and measures nothing this benchmark is about. The live-customer counter is
 * reconciled after each load, as the service would after customers written behind its back.
 *
 *   npm run bench:customers
 *   BENCH_SIZES=1000,20000 BENCH_RUNS=10 npm run bench:customers
 *   BENCH_SIZES=1000,100000,1000000 npm run bench:customers
 *   MONGODB_URI=mongodb://127.0.0.1:27017 npm run bench:customers
 */
import { mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { WorkspacesService } from "@linquid/contracts";
import { canonicalFilters, CursorCodec, keysetWindow, metadataEntries, MongoCustomersRepository, newCustomerDoc, NO_FILTERS, pageWithTotal, type CustomerDoc, type CustomerFilters } from "@linquid/customers";
import { createLogger, newId, startHost, type Host } from "@linquid/mesh";
import { MongoClient, type Collection, type Document } from "mongodb";
import { benchConfig, intEnv, pct, say } from "./bench-support.js";

const SIZES = (process.env["BENCH_SIZES"] ?? "1000,100000").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 100) throw new Error(`BENCH_SIZES: expected sizes of at least 100, got "${s}"`);
  return n;
});
const RUNS = intEnv("BENCH_RUNS", 30);
const OTHER_WORKSPACES = 3;
const PAGE = 20;
const COUNTRIES = ["US", "GB", "DE", "FR", "JP", "BR", "IN", "CA", "AU", "ES"];
/** The size at which the export and the walk under churn are measured (or the largest below). */
const STREAM_SIZE = 100_000;
const CHURN = 1_000;
const SEARCH_TERM = "er 4242"; // "Customer 4242", "Customer 42420".."42429", …

interface Row {
  shape: string;
  size: number;
  g: number[];
  d: number[];
  /** Why the gateway path stopped being measured (typically its 15 s upstream deadline). */
  failed?: string;
  /** The same for the direct path (the database stopped the query at its maxTimeMS). */
  directFailed?: string;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "linquid-bench-"));
  const prefix = `bench${newId("", 6).slice(1).toLowerCase()}`;
  const config = benchConfig({
    MESH_PLUGINS: "workspaces,customers,gateway",
    // The gateway needs an address for analytics; nothing here calls it.
    ANALYTICS_ADDR: process.env["ANALYTICS_ADDR"] ?? "http://127.0.0.1:1",
    MONGODB_DB_PREFIX: prefix,
    DATA_DIR: dataDir,
  });
  let host: Host | undefined;
  let client: MongoClient | undefined;
  const out: string[] = [];
  try {
    const t0 = performance.now();
    host = await startHost(config, { logger: createLogger("bench", config.logLevel) });
    client = new MongoClient(host.mongodbUri!, { retryWrites: false, maxPoolSize: 10 });
    await client.connect();
    const buildInfo = await client.db("admin").command({ buildInfo: 1 });
    const backend = typeof buildInfo["ferretdbVersion"] === "string" ? `FerretDB ${buildInfo["ferretdbVersion"]} (SQLite)` : `MongoDB ${buildInfo["version"]}`;
    const isMongo = !backend.startsWith("FerretDB");
    say(`mesh up in ${ms(performance.now() - t0)} on ${backend}`);

    const ws = host.client(WorkspacesService);
    const newWorkspace = async () => (await ws.createWorkspace({ name: "bench", plan: "enterprise", unlimited: true })).workspace!.id;
    const target = await newWorkspace();
    const others = await Promise.all(Array.from({ length: OTHER_WORKSPACES }, newWorkspace));
    const key = (await ws.createApiKey({ workspaceId: target, scopes: ["links:read", "links:write"] })).key;

    const db = client.db(`${prefix}_customers`);
    const customers = db.collection<CustomerDoc>("customers");
    const keys = db.collection<{ _id: string; customerId: string; token: string; at: Date }>("customer_keys");
    const entries = db.collection("customer_metadata");
    const repo = new MongoCustomersRepository(db);
    const settings = await db.collection<{ _id: string; key: string }>("customer_settings").findOne({ _id: "cursor-key" });
    const cursors = new CursorCodec([Buffer.from(settings!.key, "base64")]);

    // Every customer i of a workspace is created 1 s after customer i-3: ties of three, broken by id.
    const base = Date.now() - 2 * Math.max(...SIZES) * 1000;
    const timeOf = (i: number) => base + Math.floor(i / 3) * 3000;
    const loaded = new Map<string, number>();
    /** Positions (time, id) of the target's customers, every 97th. */
    const samples: Array<{ i: number; t: number; id: string }> = [];
    const load = async (workspaceId: string, upTo: number, tag: string) => {
      const BATCH = 1000;
      for (let start = loaded.get(workspaceId) ?? 0; start < upTo; start += BATCH) {
        const docs: CustomerDoc[] = [];
        for (let i = start; i < Math.min(upTo, start + BATCH); i++) {
          const doc = newCustomerDoc(
            newId("cus"),
            workspaceId,
            `${tag}-${String(i).padStart(7, "0")}`,
            { email: `c${i}@example.com`, name: `Customer ${i}`, country: COUNTRIES[i % COUNTRIES.length]!, metadata: { plan: i % 2 ? "pro" : "free" } },
            new Date(timeOf(i)),
          );
          doc.metadataIndexed = true;
          docs.push(doc);
          if (workspaceId === target && i % 97 === 0) samples.push({ i, t: doc.createdAt.getTime(), id: doc._id });
        }
        await customers.insertMany(docs, { ordered: false });
        await keys.insertMany(
          docs.map((d) => ({ _id: `${workspaceId}:${d.externalId}`, customerId: d._id, token: "bench", at: d.createdAt })),
          { ordered: false },
        );
        await entries.insertMany(docs.flatMap((d) => metadataEntries(d)) as Document[], { ordered: false });
        if (workspaceId === target && (start / BATCH) % 20 === 19) say(`loaded ${start + BATCH} / ${upTo}`);
      }
      loaded.set(workspaceId, Math.max(upTo, loaded.get(workspaceId) ?? 0));
      // The counter has not seen these writes: set it from the index, as a reconciliation does.
      await repo.counts.reconcile(workspaceId);
    };

    const api = `${host.gatewayUrl}${config.apiBasePath}`;
    const viaGateway = async (path: string) => {
      const res = await fetch(`${api}${path}`, { headers: { "x-api-key": key } });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${text.slice(0, 200)}`);
      return text;
    };

    const rows: Row[] = [];
    const plans: string[] = [];
    let streamDone = false;
    const streamAt = Math.max(...SIZES.filter((s) => s <= STREAM_SIZE), Math.min(...SIZES));

    for (const N of SIZES) {
      const tLoad = performance.now();
      await load(target, N, "user");
      for (const [i, o] of others.entries()) await load(o, Math.ceil(N / 10), `other${i}`);
      await repo.backfillMetadata();
      const total = N + OTHER_WORKSPACES * Math.ceil(N / 10);
      say(`size ${N}: ${total} customers in all, loaded in ${ms(performance.now() - tLoad)}`);

      // Sanity: the gateway sees what was loaded; a failure here fails the run.
      const count = Number((JSON.parse(await viaGateway("/customers/count")) as { data: { count: number } }).data.count);
      if (count !== N) throw new Error(`count through the gateway is ${count}, expected ${N}`);

      const pick = (run: number) => samples[(run * 7919) % samples.length]!.id;
      const extOf = (run: number) => `user-${String((run * 7919) % N).padStart(7, "0")}`;
      // A cursor half way down the list (newest first), as the page before it would hand it out.
      const mid = samples.filter((s) => s.i < N).reduce((a, b) => (Math.abs(b.i - N / 2) < Math.abs(a.i - N / 2) ? b : a));
      const midScope = { workspaceId: target, sortOrder: "desc" as const, filters: canonicalFilters(NO_FILTERS) };
      const midCursor = cursors.encode({ t: mid.t, id: mid.id, span: PAGE * 1000 }, midScope);
      const midFrom = { t: mid.t, id: mid.id, span: PAGE * 1000 };
      // Filtered list: one country in ten, created in the newer half of the list.
      const after = new Date(timeOf(Math.floor(N / 2))).toISOString();
      const filtered: CustomerFilters = { ...NO_FILTERS, country: "GB", createdAfter: Date.parse(after) };
      const filteredQuery = `country=GB&createdAfter=${encodeURIComponent(after)}`;
      const firstFiltered = JSON.parse(await viaGateway(`/customers?limit=${PAGE}&${filteredQuery}`)) as { pagination: { nextCursor: string } };
      const filteredCursor = firstFiltered.pagination.nextCursor;
      const filteredFrom = cursors.decode(filteredCursor, { workspaceId: target, sortOrder: "desc", filters: canonicalFilters(filtered) })!;
      const search: CustomerFilters = { ...NO_FILTERS, search: SEARCH_TERM };

      const shapes: Array<{ shape: string; path: (r: number) => string; direct: (r: number) => Promise<unknown>; runs?: number }> = [
        {
          shape: "get by id",
          path: (r) => `/customers/${pick(r)}`,
          direct: (r) => repo.findLive(target, pick(r)),
        },
        {
          shape: "get by ext_",
          path: (r) => `/customers/ext_${extOf(r)}`,
          direct: (r) => repo.findLiveByExternalId(target, extOf(r)),
        },
        {
          shape: `first page (limit ${PAGE}, with total)`,
          path: () => `/customers?limit=${PAGE}`,
          direct: () => Promise.all([repo.page(target, NO_FILTERS, "desc", { skip: 0 }, PAGE), repo.count(target, NO_FILTERS)]),
        },
        {
          shape: "cursor page half way down",
          path: () => `/customers?limit=${PAGE}&cursor=${encodeURIComponent(midCursor)}`,
          direct: () => repo.page(target, NO_FILTERS, "desc", { from: midFrom }, PAGE),
        },
        {
          shape: `page ${Math.max(1, Math.floor(N / PAGE / 2))} (offset, with total)`,
          path: () => `/customers?limit=${PAGE}&page=${Math.max(1, Math.floor(N / PAGE / 2))}`,
          direct: () => Promise.all([repo.page(target, NO_FILTERS, "desc", { skip: (Math.max(1, Math.floor(N / PAGE / 2)) - 1) * PAGE }, PAGE), repo.count(target, NO_FILTERS)]),
        },
        {
          shape: "count",
          path: () => "/customers/count",
          direct: () => repo.count(target, NO_FILTERS),
        },
        {
          shape: "filtered first page (country + createdAfter, with total)",
          path: () => `/customers?limit=${PAGE}&${filteredQuery}`,
          direct: () => Promise.all([repo.page(target, filtered, "desc", { skip: 0 }, PAGE), repo.count(target, filtered)]),
        },
        {
          shape: "filtered next page (cursor)",
          path: () => `/customers?limit=${PAGE}&${filteredQuery}&cursor=${encodeURIComponent(filteredCursor)}`,
          direct: () => repo.page(target, filtered, "desc", { from: filteredFrom }, PAGE),
        },
        {
          shape: "metadata[plan]=pro first page (with total)",
          path: () => `/customers?limit=${PAGE}&metadata%5Bplan%5D=pro`,
          direct: () => Promise.all([repo.page(target, { ...NO_FILTERS, metadata: [["plan", "pro"]] }, "desc", { skip: 0 }, PAGE), repo.count(target, { ...NO_FILTERS, metadata: [["plan", "pro"]] })]),
        },
        {
          shape: `search "${SEARCH_TERM}" first page (with total)`,
          path: () => `/customers?limit=${PAGE}&search=${encodeURIComponent(SEARCH_TERM)}`,
          direct: () => pageWithTotal(repo, target, search, "desc", 0, PAGE),
          runs: N > 20_000 ? Math.min(RUNS, 3) : RUNS,
        },
      ];
      // A search reads every customer of the workspace on the embedded database (about 0.3 ms
      // each): beyond 100,000 customers one run takes many minutes, so it is left out there.
      const measured = shapes.filter((s) => !(s.shape.startsWith("search") && N > 100_000 && !isMongo));
      if (measured.length < shapes.length) say(`${N}: search not measured at this size`);

      for (const s of measured) {
        const row: Row = { shape: s.shape, size: N, g: [], d: [] };
        const runs = s.runs ?? RUNS;
        const gateway = async (r: number, into?: number[]) => {
          if (row.failed !== undefined) return;
          const t = performance.now();
          try {
            await viaGateway(s.path(r));
            into?.push(performance.now() - t);
          } catch (err) {
            row.failed = `after ${row.g.length} runs: ${err instanceof Error ? err.message.slice(0, 160) : String(err)}`;
          }
        };
        const direct = async (r: number, into?: number[]) => {
          if (row.directFailed !== undefined) return;
          const t = performance.now();
          try {
            await s.direct(r);
            into?.push(performance.now() - t);
          } catch (err) {
            row.directFailed = `after ${row.d.length} runs (${ms(performance.now() - t)}): ${err instanceof Error ? err.message.slice(0, 160) : String(err)}`;
          }
        };
        // Warm-up, then alternate the paths so both see the same machine conditions.
        for (let w = 0; w < Math.min(runs < RUNS ? 1 : 2, runs); w++) {
          await gateway(1000 + w);
          await direct(1000 + w);
        }
        for (let r = 0; r < runs; r++) {
          await gateway(r, row.g);
          await direct(r, row.d);
        }
        rows.push(row);
        say(`${N} ${s.shape}: gateway p50 ${row.g.length > 0 ? ms(pct(row.g, 50)) : "failed"}, direct p50 ${row.d.length > 0 ? ms(pct(row.d, 50)) : "failed"}`);
      }

      plans.push(`size ${N.toLocaleString("en-US")}:`);
      for (const [name, explain] of explains(repo, target, { isMongo, midFrom, filtered, filteredFrom })) {
        plans.push(`  ${name}: ${await explain().catch((err: unknown) => `explain failed: ${err instanceof Error ? err.message : String(err)}`)}`);
      }

      if (!streamDone && N >= streamAt) {
        streamDone = true;
        out.push(...(await exportRun(api, key, N, repo, target, timeOf)));
        out.push(...(await churnWalk(api, key, target, N, customers)));
      }
    }

    // Report.
    out.unshift(
      "",
      `Customers benchmark — ${backend}; sizes ${SIZES.map((s) => s.toLocaleString("en-US")).join(", ")} in the measured workspace (three more of a tenth each); ${RUNS} runs per shape`,
      "",
    );
    const header = ["shape", "size", "gateway p50", "gateway p95", "direct p50", "direct p95", "gw/direct p50", "p50 vs smallest"];
    const smallest = Math.min(...SIZES);
    const p50 = (xs: number[]) => (xs.length > 0 ? pct(xs, 50) : undefined);
    const table = rows.map((r) => {
      const d50 = p50(r.d);
      const g50 = p50(r.g);
      const base = rows.find((x) => x.shape === r.shape && x.size === smallest);
      const baseline = base === undefined ? undefined : (p50(base.g) ?? p50(base.d));
      const ref = g50 ?? d50;
      return [
        r.shape,
        r.size.toLocaleString("en-US"),
        g50 === undefined ? "failed" : ms(g50),
        r.g.length > 0 ? ms(pct(r.g, 95)) : "",
        d50 === undefined ? "failed" : ms(d50),
        r.d.length > 0 ? ms(pct(r.d, 95)) : "",
        g50 === undefined || d50 === undefined ? "" : (g50 / d50).toFixed(2),
        baseline === undefined || ref === undefined || r.size === smallest ? "" : `${(ref / baseline).toFixed(2)}×`,
      ];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
    const report: string[] = [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...table.map(line)];
    report.push("", "gw/direct: gateway p50 / direct p50 (target <= 1.50); p50 vs smallest: this size's p50 / the smallest size's (target <= 2×), through the gateway where it answered.");
    for (const r of rows) {
      if (r.failed !== undefined) report.push(`${r.size} ${r.shape} through the gateway failed ${r.failed}`);
      if (r.directFailed !== undefined) report.push(`${r.size} ${r.shape} directly failed ${r.directFailed}`);
    }
    out.splice(3, 0, ...report, "");
    out.push("", isMongo ? "Winning plans (MongoDB explain, queryPlanner):" : "Plans (embedded FerretDB explain: linquidPushdown, then SQLite's plan):", ...plans);
    process.stdout.write(out.join("\n") + "\n");

    await db.dropDatabase();
    await client.db(`${prefix}_workspaces`).dropDatabase();
  } finally {
    await client?.close();
    await host?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The database shapes behind the list shapes, each with the plan the backend chooses. */
function explains(
  repo: MongoCustomersRepository,
  ws: string,
  x: { isMongo: boolean; midFrom: { t: number; id: string; span: number }; filtered: CustomerFilters; filteredFrom: { t: number; id: string; span: number } },
): Array<[string, () => Promise<string>]> {
  // Untyped: the shapes below are built the way keyset.ts builds them.
  const c = repo.customers as unknown as Collection<Document>;
  const live = { workspaceId: ws, deletedAt: null };
  const desc = { createdAt: -1 as const, _id: -1 as const };
  const summarize = (e: Document) => (x.isMongo ? summarizePlan(e) : summarizeFerret(e));
  const window = keysetWindow("createdAt", "_id", -1, { t: x.midFrom.t, id: x.midFrom.id }, { far: x.midFrom.t - 2 * x.midFrom.span });
  const gb = { ...live, country: "GB" };
  const fwindow = keysetWindow("createdAt", "_id", -1, { t: x.filteredFrom.t, id: x.filteredFrom.id }, { stop: x.filtered.createdAfter });
  const countPlan = (filter: Document, limit?: number) =>
    c.aggregate([{ $match: filter }, ...(limit === undefined ? [] : [{ $limit: limit }]), { $group: { _id: 1, n: { $sum: 1 } } }]).explain("queryPlanner").then(summarize);
  return [
    ["first page", () => c.find(live).sort(desc).limit(PAGE + 1).explain("queryPlanner").then(summarize)],
    ["page by offset", () => c.find(live).sort(desc).skip(10_000).limit(PAGE + 1).explain("queryPlanner").then(summarize)],
    ["cursor window count", () => countPlan({ ...live, ...window }, 256)],
    ["cursor window fetch", () => c.find({ ...live, ...window }).sort(desc).limit(PAGE + 1).explain("queryPlanner").then(summarize)],
    ["count (the counter's reconciliation)", () => countPlan(live)],
    ["filtered first page", () => c.find(gb).sort(desc).limit(PAGE + 1).explain("queryPlanner").then(summarize)],
    ["filtered total", () => countPlan({ ...gb, createdAt: { $gt: new Date(x.filtered.createdAfter!) } })],
    ["filtered cursor window fetch", () => c.find({ ...gb, ...fwindow }).sort(desc).limit(PAGE + 1).explain("queryPlanner").then(summarize)],
    [
      "metadata term, first page",
      () =>
        repo.metadata.entries
          .find({ workspaceId: ws, term: "x" })
          .sort({ createdAt: -1, customerId: -1 })
          .limit(PAGE + 1)
          .explain("queryPlanner")
          .then(summarize),
    ],
    ["metadata term count", () => repo.metadata.entries.aggregate([{ $match: { workspaceId: ws, term: "x" } }, { $group: { _id: 1, n: { $sum: 1 } } }]).explain("queryPlanner").then(summarize)],
    ["customers by id (_id $in)", () => c.find({ _id: { $in: ["cus_a", "cus_b"] } } as Document).explain("queryPlanner").then(summarize)],
    ["search", () => c.find({ ...live, search: { $regex: "er 4242" } }).sort(desc).limit(PAGE + 1).explain("queryPlanner").then(summarize)],
  ];
}

/** Exports the whole workspace through the gateway: a fast reader, then a slow one; rate and resident memory. */
async function exportRun(api: string, key: string, n: number, repo: MongoCustomersRepository, ws: string, timeOfIndex: (i: number) => number): Promise<string[]> {
  const out: string[] = ["", `Export of ${n.toLocaleString("en-US")} customers (NDJSON), this process (gateway and customers service in one):`];
  const sampleRss = () => process.memoryUsage().rss;
  {
    // The process's first export compiles and sizes for the code path (JIT code, V8's heap
    // spaces, allocator arenas): measured on its own, on the newest tenth of the workspace.
    const before = sampleRss();
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, sampleRss())), 50);
    const after = new Date(timeOfIndex(Math.floor(n * 0.9))).toISOString();
    const { lines } = await readExport(`${api}/customers/export?createdAfter=${encodeURIComponent(after)}`, key, Infinity, Infinity);
    clearInterval(timer);
    out.push(`  first export of this process (${lines.toLocaleString("en-US")} customers, a tenth): resident memory ${mb(before)} → peak ${mb(peak)} (+${mb(peak - before)})`);
  }
  for (const mode of ["fast", "slow"] as const) {
    global.gc?.();
    const before = sampleRss();
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, sampleRss())), 50);
    const t = performance.now();
    const { lines, bytes, stoppedAfterMs } = await readExport(`${api}/customers/export`, key, mode === "slow" ? 1024 * 1024 : Infinity, mode === "slow" ? 20_000 : Infinity);
    const elapsed = performance.now() - t;
    clearInterval(timer);
    if (mode === "fast") {
      if (lines !== n) throw new Error(`export wrote ${lines} customers, expected ${n}`);
      out.push(`  fast reader: ${lines.toLocaleString("en-US")} customers, ${(bytes / 1048576).toFixed(1)} MiB in ${ms(elapsed)}: ${Math.round(lines / (elapsed / 1000)).toLocaleString("en-US")} customers/s; resident memory ${mb(before)} → peak ${mb(peak)} (+${mb(peak - before)})`);
    } else {
      out.push(`  slow reader (1 MiB/s, left after ${ms(stoppedAfterMs)}): ${lines.toLocaleString("en-US")} customers read; resident memory ${mb(before)} → peak ${mb(peak)} (+${mb(peak - before)})`);
    }
  }
  const t = performance.now();
  let direct = 0;
  for await (const batch of repo.walk(ws, NO_FILTERS)) direct += batch.length;
  const elapsed = performance.now() - t;
  out.push(`  direct (the service's walk with the driver, no gateway): ${direct.toLocaleString("en-US")} customers in ${ms(elapsed)}: ${Math.round(direct / (elapsed / 1000)).toLocaleString("en-US")} customers/s`);
  return out;
}

/** Reads an export at up to `bytesPerSecond`, for at most `maxMs`; counts lines. */
function readExport(url: string, key: string, bytesPerSecond: number, maxMs: number): Promise<{ lines: number; bytes: number; stoppedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = httpRequest(url, { headers: { "x-api-key": key } }, (res) => {
      let lines = 0;
      let bytes = 0;
      const done = () => resolve({ lines, bytes, stoppedAfterMs: performance.now() - t0 });
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
        const elapsed = performance.now() - t0;
        if (elapsed > maxMs) {
          req.destroy();
          done();
          return;
        }
        const due = (bytes / bytesPerSecond) * 1000;
        if (due > elapsed) {
          res.pause();
          setTimeout(() => res.resume(), due - elapsed);
        }
      });
      res.once("end", done);
      res.once("error", reject);
    });
    req.once("error", (err) => (req.destroyed ? undefined : reject(err)));
    req.end();
  });
}

/** Walks the workspace by cursor (limit 100) while customers are created and deleted through the API. */
async function churnWalk(api: string, key: string, ws: string, n: number, customers: MongoCustomersRepository["customers"]): Promise<string[]> {
  // Deletes take customers spread over the whole list; creates add new ones.
  const all = await customers.find({ workspaceId: ws, deletedAt: null }, { projection: { _id: 1 } }).toArray();
  const doomed = new Set<string>();
  for (let i = 0; doomed.size < Math.min(CHURN, Math.floor(all.length / 2)); i++) doomed.add(all[(i * 7919) % all.length]!._id);
  const survivors = new Set(all.map((d) => d._id).filter((id) => !doomed.has(id)));
  // A churn request that fails counts as not done (status 0): only acknowledged ones count.
  const req = async (method: string, path: string, body?: unknown) => {
    try {
      const res = await fetch(`${api}${path}`, { method, headers: { "x-api-key": key, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
      await res.text();
      return res.status;
    } catch {
      return 0;
    }
  };
  let walking = true;
  // Four clients create and delete while the walk runs; what they did before it ended counts.
  const queue = [...doomed];
  let created = 0;
  let deleted = 0;
  let nextCreate = 0;
  const churn = Promise.all(
    Array.from({ length: 4 }, async () => {
      while (walking && (nextCreate < CHURN || queue.length > 0)) {
        if (nextCreate < CHURN && (await req("POST", "/customers", { externalId: `churn-${nextCreate++}` })) < 300 && walking) created++;
        const id = queue.shift();
        if (id !== undefined && (await req("DELETE", `/customers/${id}`)) === 200 && walking) deleted++;
      }
    }),
  ).then(() => ({ created, deleted }));
  const seen = new Map<string, number>();
  const t = performance.now();
  let pages = 0;
  let retries = 0;
  let cursor: string | null = null;
  try {
    do {
      const r = await fetch(`${api}/customers?limit=100${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`, { headers: { "x-api-key": key } });
      if (r.status === 503 && retries < 100) {
        // As a client would: the same page again after Retry-After.
        await r.text();
        retries++;
        await new Promise((done) => setTimeout(done, 1000 * Number(r.headers.get("retry-after") ?? "1")));
        continue;
      }
      if (r.status !== 200) throw new Error(`cursor walk: page ${pages + 1} answered ${r.status}: ${(await r.text()).slice(0, 200)}`);
      const body = (await r.json()) as { data: Array<{ id: string }>; pagination: { nextCursor: string | null } };
      for (const c of body.data) seen.set(c.id, (seen.get(c.id) ?? 0) + 1);
      cursor = body.pagination.nextCursor;
      pages++;
    } while (cursor !== null);
  } finally {
    walking = false;
  }
  const elapsed = performance.now() - t;
  const done = await churn;
  const missing = [...survivors].filter((id) => seen.get(id) !== 1).length;
  const twice = [...seen.values()].filter((k) => k > 1).length;
  return [
    "",
    `Cursor walk of ${n.toLocaleString("en-US")} customers (limit 100, newest first) while ${done.created} were created and ${done.deleted} deleted through the API meanwhile:`,
    `  ${pages} pages in ${ms(elapsed)} (${ms(elapsed / pages)} a page${retries > 0 ? `; ${retries} pages answered 503 and were asked again` : ""}); customers that lived throughout: ${survivors.size.toLocaleString("en-US")}, seen exactly once: ${(survivors.size - missing).toLocaleString("en-US")}, seen more than once (any customer): ${twice} — ${missing === 0 && twice === 0 ? "correct" : "WRONG"}`,
  ];
}

function ms(x: number): string {
  return x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 100 ? `${x.toFixed(0)} ms` : `${x.toFixed(2)} ms`;
}

function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(0)} MiB`;
}

/** The embedded database's explain: what was pushed down, and SQLite's plan. */
function summarizeFerret(explain: Document): string {
  const lp = explain["linquidPushdown"] as Document | undefined;
  const planner = explain["queryPlanner"] as Document | undefined;
  const plan = Array.isArray(planner?.["Plan"]) ? (planner!["Plan"] as string[]).map((p) => p.replace(/^.*detail=/, "").replace(/customers_[0-9a-f]+_|customer_metadata_[0-9a-f]+_/g, "")) : [];
  const pushed = lp === undefined ? "no linquidPushdown" : Object.entries(lp).map(([k, v]) => `${k}=${String(v)}`).join(" ");
  return `${pushed}; ${plan.join(" | ") || "(no SQLite plan)"}`;
}

/** "IXSCAN(workspace_created, backward) <- FETCH <- LIMIT", from the first winningPlan in an explain answer. */
function summarizePlan(explain: Document): string {
  const find = (o: unknown): Document | undefined => {
    if (o === null || typeof o !== "object") return undefined;
    const rec = o as Document;
    if (rec["winningPlan"] !== undefined) return rec["winningPlan"] as Document;
    for (const v of Object.values(rec)) {
      const hit = find(v);
      if (hit !== undefined) return hit;
    }
    return undefined;
  };
  const plan = find(explain);
  if (plan === undefined) return "(no winningPlan in explain output)";
  const stages: string[] = [];
  const walk = (node: Document | undefined) => {
    if (node === undefined) return;
    const inputs = (node["inputStages"] as Document[] | undefined) ?? [];
    walk((node["inputStage"] ?? node["queryPlan"]) as Document | undefined);
    for (const i of inputs) walk(i);
    const stage = String(node["stage"] ?? "?");
    const extra = node["indexName"] !== undefined ? `(${node["indexName"]}${node["direction"] === "backward" ? ", backward" : ""})` : "";
    stages.push(stage + extra);
  };
  walk(plan);
  return stages.join(" <- ");
}

main().catch((err) => {
  process.stderr.write(`bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
