/**
 * The export alone: `GET /customers/export` of one workspace of BENCH_EXPORT_SIZE customers
 * (default 100,000) through the gateway, NDJSON and CSV, with the rate and the growth of this
 * process's resident memory (gateway and customers service in one, as in bench-customers.ts).
 *
 * The workspace is loaded as bench-customers.ts loads it (the service's own newCustomerDoc,
 * bulk inserts), into BENCH_EXPORT_DIR (default a directory under the system's temp dir),
 * and kept there: a second run with the same directory skips the load, so before/after runs
 * compare the same data. Each format (BENCH_FORMATS, default "ndjson,csv") is exported
 * BENCH_RUNS times (default 3) after a warm-up on a tenth of the workspace; medians are printed.
 *
 * Besides the rate, each run prints the CPU time this process and the embedded FerretDB spent
 * on it: on a machine shared with other work the rate follows the CPU left over, the CPU time
 * much less. Resident memory is sampled every 20 ms, with V8's heap spaces and the buffers
 * outside the heap, to tell heap sizing from buffering.
 *
 *   npm run bench:export
 *   BENCH_EXPORT_DIR=/tmp/export-bench BENCH_RUNS=5 BENCH_FORMATS=ndjson npm run bench:export
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { getHeapSpaceStatistics } from "node:v8";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { WorkspacesService } from "@linquid/contracts";
import { metadataEntries, MongoCustomersRepository, newCustomerDoc, type CustomerDoc } from "@linquid/customers";
import { createLogger, newId, startHost, type Host } from "@linquid/mesh";
import { MongoClient, type Document } from "mongodb";
import { benchConfig, intEnv, pct, say } from "./bench-support.js";

const N = intEnv("BENCH_EXPORT_SIZE", 100_000);
const RUNS = intEnv("BENCH_RUNS", 3);
const COUNTRIES = ["US", "GB", "DE", "FR", "JP", "BR", "IN", "CA", "AU", "ES"];
const PREFIX = "benchexport";

async function main(): Promise<void> {
  const dataDir = process.env["BENCH_EXPORT_DIR"] ?? join(tmpdir(), `linquid-bench-export-${N}`);
  mkdirSync(dataDir, { recursive: true });
  const config = benchConfig({
    MESH_PLUGINS: "workspaces,customers,gateway",
    ANALYTICS_ADDR: process.env["ANALYTICS_ADDR"] ?? "http://127.0.0.1:1",
    MONGODB_DB_PREFIX: PREFIX,
    REDIS_URL: process.env["REDIS_URL"] ?? "none",
    DATA_DIR: dataDir,
  });
  let host: Host | undefined;
  let client: MongoClient | undefined;
  try {
    host = await startHost(config, { logger: createLogger("bench", config.logLevel) });
    client = new MongoClient(host.mongodbUri!, { retryWrites: false, maxPoolSize: 4 });
    await client.connect();
    const db = client.db(`${PREFIX}_customers`);
    const repo = new MongoCustomersRepository(db);

    // The workspace and its key survive in the data directory, with the customers.
    const stateFile = join(dataDir, "bench-export.json");
    let state: { workspaceId: string; key: string; loaded: number } | undefined = existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, "utf8")) : undefined;
    if (state === undefined) {
      const ws = host.client(WorkspacesService);
      const workspaceId = (await ws.createWorkspace({ name: "bench", plan: "enterprise", unlimited: true })).workspace!.id;
      const key = (await ws.createApiKey({ workspaceId, scopes: ["links:read", "links:write"] })).key;
      state = { workspaceId, key, loaded: 0 };
    }
    const { workspaceId, key } = state;
    if (state.loaded < N) {
      const base = Date.now() - 2 * N * 1000;
      const t0 = performance.now();
      for (let start = state.loaded; start < N; start += 1000) {
        const docs: CustomerDoc[] = [];
        for (let i = start; i < Math.min(N, start + 1000); i++) {
          const doc = newCustomerDoc(
            newId("cus"),
            workspaceId,
            `user-${String(i).padStart(7, "0")}`,
            { email: `c${i}@example.com`, name: `Customer ${i}`, country: COUNTRIES[i % COUNTRIES.length]!, metadata: { plan: i % 2 ? "pro" : "free" } },
            new Date(base + Math.floor(i / 3) * 3000),
          );
          doc.metadataIndexed = true;
          docs.push(doc);
        }
        await repo.customers.insertMany(docs, { ordered: false });
        await repo.keys.insertMany(docs.map((d) => ({ _id: `${workspaceId}:${d.externalId}`, customerId: d._id, token: "bench", at: d.createdAt })), { ordered: false });
        await db.collection("customer_metadata").insertMany(docs.flatMap((d) => metadataEntries(d)) as Document[], { ordered: false });
        if ((start / 1000) % 20 === 19) say(`loaded ${start + 1000} / ${N}`);
      }
      await repo.counts.reconcile(workspaceId);
      state = { workspaceId, key, loaded: N };
      writeFileSync(stateFile, JSON.stringify(state));
      say(`loaded ${N} customers in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }

    const api = `${host.gatewayUrl}${config.apiBasePath}`;
    const rss = () => process.memoryUsage().rss;
    // Warm-up: the first export compiles the path and sizes V8's heap (as bench-customers.ts).
    for (const format of ["ndjson", "csv"]) await readExport(`${api}/customers/export?format=${format}`, key, N / 10);
    for (const format of (process.env["BENCH_FORMATS"] ?? "ndjson,csv").split(",")) {
      const rates: number[] = [];
      const growth: number[] = [];
      const cpu: string[] = [];
      for (let r = 0; r < RUNS; r++) {
        global.gc?.();
        const before = rss();
        let peak = before;
        const heap0 = process.memoryUsage();
        const spaces0 = new Map(getHeapSpaceStatistics().map((sp) => [sp.space_name, sp.space_size]));
        const spacePeak = new Map<string, number>();
        let heapPeak = 0;
        let extPeak = 0;
        const timer = setInterval(() => {
          const u = process.memoryUsage();
          peak = Math.max(peak, u.rss);
          heapPeak = Math.max(heapPeak, u.heapTotal - heap0.heapTotal);
          extPeak = Math.max(extPeak, u.external + u.arrayBuffers - heap0.external - heap0.arrayBuffers);
          for (const sp of getHeapSpaceStatistics()) spacePeak.set(sp.space_name, Math.max(spacePeak.get(sp.space_name) ?? 0, sp.space_size));
        }, 20);
        const c0 = process.cpuUsage();
        const f0 = ferretCpuMs();
        const t = performance.now();
        const { lines, bytes } = await readExport(`${api}/customers/export?format=${format}`, key, Infinity);
        const elapsed = performance.now() - t;
        const c = process.cpuUsage(c0);
        const nodeMs = (c.user + c.system) / 1000;
        const ferretMs = ferretCpuMs() - f0;
        cpu.push(`node ${(nodeMs / 1000).toFixed(1)} s + FerretDB ${(ferretMs / 1000).toFixed(1)} s`);
        clearInterval(timer);
        peak = Math.max(peak, rss());
        const records = format === "csv" ? lines - 1 : lines;
        if (records !== N) throw new Error(`${format} export wrote ${records} customers, expected ${N}`);
        rates.push(records / (elapsed / 1000));
        say(`  V8 spaces, peak growth: ${[...spacePeak].map(([k, v]) => `${k} +${((v - (spaces0.get(k) ?? 0)) / 1048576).toFixed(1)}`).join(", ")}`);
        growth.push((peak - before) / 1048576);
        say(`${format} run ${r + 1}: ${records} customers, ${(bytes / 1048576).toFixed(1)} MiB in ${elapsed.toFixed(0)} ms: ${Math.round(records / (elapsed / 1000))} customers/s; RSS ${(before / 1048576).toFixed(0)} → peak ${(peak / 1048576).toFixed(0)} MiB (+${((peak - before) / 1048576).toFixed(1)}; V8 heap +${(heapPeak / 1048576).toFixed(1)}, buffers +${(extPeak / 1048576).toFixed(1)}); CPU ${cpu[cpu.length - 1]}`);
      }
      console.log(`${format}: median ${Math.round(pct(rates, 50))} customers/s (runs ${rates.map((x) => Math.round(x)).join(", ")}); RSS growth median +${pct(growth, 50).toFixed(1)} MiB (runs ${growth.map((x) => x.toFixed(1)).join(", ")})`);
    }
  } finally {
    await client?.close();
    await host?.stop();
  }
}

/** CPU time (user + system, ms) of this process's FerretDB children so far. */
function ferretCpuMs(): number {
  const tick = 10; // ms per clock tick (USER_HZ 100 on Linux)
  const procs = new Map<number, { ppid: number; name: string; ms: number }>();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const f = stat.slice(close + 2).split(" ");
      procs.set(Number(pid), { ppid: Number(f[1]), name: stat.slice(stat.indexOf("(") + 1, close), ms: (Number(f[11]) + Number(f[12])) * tick });
    } catch {
      // gone meanwhile
    }
  }
  // FerretDB runs under a supervising shell: a descendant, not a child.
  const descends = (pid: number): boolean => {
    for (let p = procs.get(pid)?.ppid; p !== undefined && p > 1; p = procs.get(p)?.ppid) if (p === process.pid) return true;
    return false;
  };
  let total = 0;
  for (const [pid, p] of procs) if (p.name.includes("ferretdb") && descends(pid)) total += p.ms;
  return total;
}

/** Reads an export as fast as it comes, up to `maxLines` lines (then leaves); counts lines and bytes. */
function readExport(url: string, key: string, maxLines: number): Promise<{ lines: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { "x-api-key": key } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode}`));
      let lines = 0;
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
        if (lines >= maxLines) {
          req.destroy();
          resolve({ lines, bytes });
        }
      });
      res.once("end", () => resolve({ lines, bytes }));
      res.once("error", reject);
    });
    req.once("error", (err) => (req.destroyed ? undefined : reject(err)));
    req.end();
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
