/**
 * Customers read benchmark: what the REST gateway adds on top of the database.
 *
 * Starts a mesh (workspaces, customers, gateway) on the embedded FerretDB, or on MONGODB_URI
 * when set, loads BENCH_CUSTOMERS customers (default 100,000) into one workspace and a tenth of
 * that into each of three others, then measures, BENCH_RUNS times each (default 30), six query
 * shapes twice: through the gateway over HTTP, and directly with the mongodb driver on the same
 * backend running the queries the customers repository runs. Prints p50/p95 per shape and the
 * ratio gateway/direct (target: the gateway adds at most 50%). On MongoDB it also prints the
 * winning plan of each query shape (FerretDB has no real explain).
 *
 * Loading: documents are made with the service's own newCustomerDoc (the exact shape it
 * writes) plus their identity keys, and bulk-inserted with insertMany — the API path would
 * take far longer and measures nothing this benchmark is about.
 *
 *   npm run bench:customers
 *   BENCH_CUSTOMERS=20000 BENCH_RUNS=10 npm run bench:customers
 *   MONGODB_URI=mongodb://127.0.0.1:27017 npm run bench:customers
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { CustomersService, WorkspacesService } from "@linquid/contracts";
import { liveFilter, newCustomerDoc, type CustomerDoc } from "@linquid/customers";
import { createLogger, loadConfig, newId, startHost, type Host } from "@linquid/mesh";
import { MongoClient, type Document } from "mongodb";
import { intEnv, pct, say } from "./bench-support.js";

const N = intEnv("BENCH_CUSTOMERS", 100_000);
const RUNS = intEnv("BENCH_RUNS", 30);
const OTHER_WORKSPACES = 3;
const PAGE = 20;

interface Shape {
  name: string;
  /** Path under the API base for the gateway. */
  path: (run: number) => string;
  /** The same work done directly with the driver. */
  direct: (run: number) => Promise<unknown>;
  /** The same call to CustomersService, as the gateway makes it (in-process); point lookups only. */
  rpc?: (run: number) => Promise<unknown>;
  /** The query to explain on MongoDB. */
  explain?: () => Promise<Document>;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "linquid-bench-"));
  const prefix = `bench${newId("", 6).slice(1).toLowerCase()}`;
  const config = loadConfig({
    ...process.env,
    MESH_PLUGINS: "workspaces,customers,gateway",
    // The gateway needs an address for analytics; nothing here calls it.
    ANALYTICS_ADDR: process.env["ANALYTICS_ADDR"] ?? "http://127.0.0.1:1",
    MONGODB_DB_PREFIX: prefix,
    GRPC_PORT: "0",
    PORT: "0",
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env["LOG_LEVEL"] ?? "warn",
  });
  let host: Host | undefined;
  let client: MongoClient | undefined;
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
    const key = (await ws.createApiKey({ workspaceId: target, scopes: ["links:read"] })).key;

    const db = client.db(`${prefix}_customers`);
    const customers = db.collection<CustomerDoc>("customers");
    const keys = db.collection<{ _id: string; customerId: string; token: string; at: Date }>("customer_keys");

    // Load.
    const tLoad = performance.now();
    const sampleIds: string[] = [];
    const base = Date.now() - N * 1000;
    const load = async (workspaceId: string, count: number, tag: string) => {
      const BATCH = 1000;
      for (let start = 0; start < count; start += BATCH) {
        const docs: CustomerDoc[] = [];
        for (let i = start; i < Math.min(count, start + BATCH); i++) {
          const ext = `${tag}-${String(i).padStart(6, "0")}`;
          // Every third customer shares its creation instant with its neighbours: ties are broken by id.
          const createdAt = new Date(base + Math.floor(i / 3) * 3000);
          docs.push(
            newCustomerDoc(newId("cus"), workspaceId, ext, { email: `c${i}@example.com`, name: `Customer ${i}`, country: "US", metadata: { plan: i % 2 ? "pro" : "free" } }, createdAt),
          );
        }
        await customers.insertMany(docs, { ordered: false });
        await keys.insertMany(
          docs.map((d) => ({ _id: `${workspaceId}:${d.externalId}`, customerId: d._id, token: "bench", at: d.createdAt })),
          { ordered: false },
        );
        if (workspaceId === target) for (let j = 0; j < docs.length; j += 97) sampleIds.push(docs[j]!._id);
        if (workspaceId === target && (start / BATCH) % 10 === 9) say(`loaded ${start + BATCH} / ${count}`);
      }
    };
    await load(target, N, "user");
    for (const [i, o] of others.entries()) await load(o, Math.ceil(N / 10), `other${i}`);
    const loadMs = performance.now() - tLoad;
    const total = N + OTHER_WORKSPACES * Math.ceil(N / 10);
    say(`loaded ${total} customers (+ identity keys) in ${ms(loadMs)}`);

    // Query shapes. Runs pick different ids so no single document stays hot.
    const pick = (run: number) => sampleIds[(run * 7919) % sampleIds.length]!;
    const extOf = (run: number) => `user-${String((run * 7919) % N).padStart(6, "0")}`;
    const deepPage = Math.max(1, Math.floor(N / PAGE / 2));
    const searchTerm = "er 4242"; // matches the names "Customer 4242", "Customer 42420".."42429", ...
    const desc = { createdAt: -1 as const, _id: -1 as const };
    const listDirect = (page: number, search?: string) =>
      Promise.all([
        customers
          .find(liveFilter(target, search))
          .sort(desc)
          .skip((page - 1) * PAGE)
          .limit(PAGE)
          .toArray(),
        customers.countDocuments(liveFilter(target, search)),
      ]);
    const svc = host.client(CustomersService);
    const liveOf = (d: CustomerDoc | null) => d !== null && d.workspaceId === target && d.deletedAt === null;
    const shapes: Shape[] = [
      {
        name: "get by id",
        path: (r) => `/customers/${pick(r)}`,
        direct: async (r) => liveOf(await customers.findOne({ _id: pick(r) })),
        rpc: (r) => svc.getCustomer({ workspaceId: target, id: pick(r) }),
        explain: () => customers.find({ _id: pick(0) }).explain("queryPlanner"),
      },
      {
        name: "get by ext_",
        path: (r) => `/customers/ext_${extOf(r)}`,
        direct: async (r) => {
          const k = await keys.findOne({ _id: `${target}:${extOf(r)}` });
          return k === null ? null : liveOf(await customers.findOne({ _id: k.customerId }));
        },
        rpc: (r) => svc.getCustomer({ workspaceId: target, id: `ext_${extOf(r)}` }),
        explain: () => keys.find({ _id: `${target}:${extOf(0)}` }).explain("queryPlanner"),
      },
      {
        name: `list page 1 (limit ${PAGE})`,
        path: () => `/customers?limit=${PAGE}`,
        direct: () => listDirect(1),
        explain: () => customers.find(liveFilter(target, undefined)).sort(desc).limit(PAGE).explain("queryPlanner"),
      },
      {
        name: `list page ${deepPage}`,
        path: () => `/customers?limit=${PAGE}&page=${deepPage}`,
        direct: () => listDirect(deepPage),
        explain: () =>
          customers
            .find(liveFilter(target, undefined))
            .sort(desc)
            .skip((deepPage - 1) * PAGE)
            .limit(PAGE)
            .explain("queryPlanner"),
      },
      {
        name: `search "${searchTerm}"`,
        path: () => `/customers?limit=${PAGE}&search=${encodeURIComponent(searchTerm)}`,
        direct: () => listDirect(1, searchTerm),
        explain: () => customers.find(liveFilter(target, searchTerm)).sort(desc).limit(PAGE).explain("queryPlanner"),
      },
      {
        name: "count",
        path: () => `/customers/count`,
        direct: () => customers.countDocuments(liveFilter(target, undefined)),
        explain: () => customers.aggregate([{ $match: liveFilter(target, undefined) }, { $group: { _id: 1, n: { $sum: 1 } } }]).explain("queryPlanner"),
      },
    ];

    const api = `${host.gatewayUrl}${config.apiBasePath}`;
    const viaGateway = async (path: string) => {
      const res = await fetch(`${api}${path}`, { headers: { "x-api-key": key } });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${text.slice(0, 200)}`);
      return text;
    };

    // Sanity: the gateway finds what was loaded (skipped when the count itself is too slow for it).
    const count = await viaGateway("/customers/count").then(
      (text) => Number((JSON.parse(text) as { data: { count: number } }).data.count),
      (err: unknown) => (say(`sanity count through the gateway failed: ${(err as Error).message.slice(0, 120)}`), N),
    );
    if (count !== N) throw new Error(`count through the gateway is ${count}, expected ${N}`);

    const rows: Array<{ name: string; g: number[]; d: number[]; s: number[]; failed?: string }> = [];
    for (const shape of shapes) {
      const g: number[] = [];
      const d: number[] = [];
      const s: number[] = [];
      // Typically the gateway's upstream deadline (15 s) on a backend too slow for this size:
      // the gateway is then given up for this shape, and the direct query is still measured.
      let failed: string | undefined;
      const gateway = async (path: string, into?: number[]) => {
        if (failed !== undefined) return;
        const t = performance.now();
        try {
          await viaGateway(path);
          into?.push(performance.now() - t);
        } catch (err) {
          failed = `after ${g.length} runs: ${err instanceof Error ? err.message.slice(0, 160) : String(err)}`;
          say(`${shape.name}: gateway failed ${failed}`);
        }
      };
      for (let w = 0; w < Math.min(2, RUNS); w++) {
        await gateway(shape.path(1000 + w));
        await shape.direct(1000 + w);
        await shape.rpc?.(1000 + w);
      }
      // Alternate the paths so all see the same machine conditions.
      for (let r = 0; r < RUNS; r++) {
        await gateway(shape.path(r), g);
        let t = performance.now();
        await shape.direct(r);
        d.push(performance.now() - t);
        if (shape.rpc !== undefined) {
          t = performance.now();
          await shape.rpc(r);
          s.push(performance.now() - t);
        }
      }
      rows.push({ name: shape.name, g, d, s, ...(failed !== undefined ? { failed } : {}) });
      say(`${shape.name}: gateway p50 ${g.length > 0 ? ms(pct(g, 50)) : "-"}, direct p50 ${ms(pct(d, 50))}`);
    }

    // Report.
    const out: string[] = [];
    out.push("");
    out.push(`Customers benchmark — ${backend}; ${N.toLocaleString("en-US")} customers in the measured workspace, ${total.toLocaleString("en-US")} in all; ${RUNS} runs per shape`);
    out.push(`load: ${ms(loadMs)} (insertMany of newCustomerDoc documents + identity keys)`);
    out.push("");
    const header = ["query", "gateway p50", "gateway p95", "direct p50", "direct p95", "ratio p50", "ratio p95", "added p50", "rpc p50"];
    const table = rows.map((r) => {
      const [d50, d95] = [pct(r.d, 50), pct(r.d, 95)];
      if (r.failed !== undefined) return [r.name, "failed", "", ms(d50), ms(d95), "", "", "", "-"];
      const [g50, g95] = [pct(r.g, 50), pct(r.g, 95)];
      return [r.name, ms(g50), ms(g95), ms(d50), ms(d95), (g50 / d50).toFixed(2), (g95 / d95).toFixed(2), ms(g50 - d50), r.s.length > 0 ? ms(pct(r.s, 50)) : "-"];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
    out.push(line(header));
    out.push(widths.map((w) => "-".repeat(w)).join("  "));
    for (const row of table) out.push(line(row));
    out.push("");
    out.push("ratio = gateway / direct (target <= 1.50); added = gateway p50 - direct p50;");
    out.push("rpc = the same CustomersService call in-process, as the gateway makes it (point lookups only).");
    for (const r of rows) if (r.failed !== undefined) out.push(`${r.name} failed: ${r.failed}`);

    if (isMongo) {
      out.push("");
      out.push("Winning plans (MongoDB explain, queryPlanner):");
      for (const shape of shapes) {
        if (shape.explain === undefined) continue;
        out.push(`  ${shape.name}: ${summarizePlan(await shape.explain())}`);
      }
    } else {
      out.push("");
      out.push("No plans: FerretDB v1 pushes only _id conditions down to SQLite (answered from the _id index with the");
      out.push("embedded build's patch); every other filter decodes the whole collection.");
    }
    process.stdout.write(out.join("\n") + "\n");

    await db.dropDatabase();
    await client.db(`${prefix}_workspaces`).dropDatabase();
  } finally {
    await client?.close();
    await host?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function ms(x: number): string {
  return x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 100 ? `${x.toFixed(0)} ms` : `${x.toFixed(2)} ms`;
}

/** "IXSCAN(workspace_live_created) <- FETCH <- LIMIT", from the first winningPlan in an explain answer. */
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
    walk((node["inputStage"] ?? node["queryPlan"]) as Document | undefined);
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

