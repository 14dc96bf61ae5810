/**
 * The gateway's request hot path against bare Node servers doing the same backend call, side
 * by side in one run (docs/benchmarks.md, "Gateway hot path").
 *
 * Starts FerretDB and redis-server (the embedded builds), a mesh of all four plugins as
 * `npm start` runs it, and scripts/bench-bare-servers.ts; the mesh, the bare servers and both
 * backends are pinned to one core (BENCH_SERVER_CPUS, default 1) and wrk to another
 * (BENCH_LOAD_CPUS, default 0), one wrk thread. Then, BENCH_ROUNDS times (default 3), for 1, 16
 * and 64 connections (BENCH_CONNECTIONS), BENCH_DURATION seconds each (default 10), the gateway
 * and its bare counterpart one after the other (the order alternates by round):
 *
 * - `GET /customers/cohorts` answered from the snapshot cache (X-Cache: HIT; the mesh runs with
 *   route's own TTL of 30 s, so at most one fill a run) vs one Redis GET of the same body;
 * - `GET /customers/:id` vs the same findOne on the same database;
 * - `GET /healthz` vs a server answering about 200 bytes.
 *
 * Medians over the rounds: requests/s, latency p50/p99, CPU per request of the serving process
 * and of the backends (from /proc), Redis commands per request, and how busy the server core
 * was with other work (a shared machine's noise). Then the expiry run: a mesh with
 * CACHE_TTL_SECONDS=BENCH_EXPIRY_TTL (default 1) read at 64 connections for
 * BENCH_EXPIRY_DURATION seconds (default 20), reporting p50, p99 and snapshot fills (Redis SETs)
 * per expiry.
 *
 * BENCH_BEFORE_ROOT=<checkout> adds a second gateway, the mesh of another checkout of the
 * repository (with its own node_modules), measured in the same rounds against the same bare
 * servers: before and after a change, side by side under the same load.
 *
 * The workspace has a finite budget (BENCH_RATE_LIMIT per hour, default 1,000,000,000) so the
 * rate-limit script runs as it does for every paying plan; BENCH_RATE_LIMIT=unlimited skips it.
 *
 * With BENCH_PROFILE=1 it instead profiles the mesh (V8's CPU profiler, as node --cpu-prof, but
 * only while the load runs: scripts/cpu-profile-window.ts) under 64 connections of cached reads,
 * point reads and /healthz (BENCH_ONLY=healthz: one of them), and prints the top self-time
 * functions and packages.
 *
 * Needs wrk (Debian: `apt-get install wrk`) and, for pinning, taskset (util-linux).
 *
 *   npm run bench:gateway
 *   BENCH_ROUNDS=1 BENCH_DURATION=5 npm run bench:gateway
 *   BENCH_PROFILE=1 npm run bench:gateway
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkspacesService } from "@linquid/contracts";
import { freePort, loadConfig, newId, startFerretDb, startRedisServer, type EmbeddedServer } from "@linquid/mesh";
import { Redis } from "ioredis";
import { intEnv, say } from "./bench-support.js";
import { profileMarkdown, summarizeProfile } from "./cpu-profile.js";

const DURATION = intEnv("BENCH_DURATION", 10);
const ROUNDS = intEnv("BENCH_ROUNDS", 3);
const CONNECTIONS = (process.env["BENCH_CONNECTIONS"] ?? "1,16,64").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_CONNECTIONS: expected positive integers, got "${s}"`);
  return n;
});
const EXPIRY_TTL = intEnv("BENCH_EXPIRY_TTL", 1);
const EXPIRY_DURATION = intEnv("BENCH_EXPIRY_DURATION", 20);
const RATE_LIMIT = process.env["BENCH_RATE_LIMIT"] ?? "1000000000";
const PROFILE = process.env["BENCH_PROFILE"] === "1";
const WARMUP_SECONDS = 3;

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** A checkout of an earlier version to measure side by side (its own node_modules), e.g. the code before a change. */
const BEFORE_ROOT = process.env["BENCH_BEFORE_ROOT"];
const BARE = join(ROOT, "scripts/bench-bare-servers.ts");
const PROFILE_WINDOW = join(ROOT, "scripts/cpu-profile-window.ts");

// ---- tools and pinning ----------------------------------------------------------------------

function has(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.error === undefined;
}

if (!has("wrk", ["--version"])) {
  process.stderr.write("bench: wrk is not installed. On Debian or Ubuntu: `apt-get install wrk` (as root), then run again.\n");
  process.exit(2);
}
const PINNED = availableParallelism() >= 2 && has("taskset", ["--version"]);
const LOAD_CPUS = process.env["BENCH_LOAD_CPUS"] ?? "0";
const SERVER_CPUS = process.env["BENCH_SERVER_CPUS"] ?? "1";

/** `cmd args` on `cpus` when pinning is possible. */
function pinned(cpus: string, cmd: string, args: string[]): [string, string[]] {
  return PINNED ? ["taskset", ["-c", cpus, cmd, ...args]] : [cmd, args];
}

/** Pins a running process and all its threads. */
function pinPid(pid: number, cpus: string): void {
  if (PINNED) spawnSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
}

// ---- /proc accounting -------------------------------------------------------------------------

const TICK_US = 10_000; // USER_HZ is 100 on Linux

/** CPU time (user + system) a process used so far, µs; 0 once it is gone. */
function cpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_US;
  } catch {
    return 0;
  }
}

/** Busy time of each CPU so far, µs. */
function cpuBusyUs(): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (m === null) continue;
    const [user, nice, system, , , irq, softirq, steal] = m[2]!.trim().split(/\s+/).map(Number) as number[];
    out.set(m[1]!, (user! + nice! + system! + irq! + softirq! + steal!) * TICK_US);
  }
  return out;
}

function serverCpuList(): string[] {
  return SERVER_CPUS.split(",").flatMap((part) => {
    const [a, b] = part.split("-").map(Number) as [number, number | undefined];
    return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => String(a + i));
  });
}

// ---- processes ----------------------------------------------------------------------------------

interface Mesh {
  readonly pid: number;
  readonly gatewayUrl: string;
  readonly grpcUrl: string;
  signal(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts a mesh; with `profileFile`, SIGUSR2 starts and stops a CPU profile written there
 * (scripts/cpu-profile-window.ts). Its log goes to `logFile` as it would to a container's log:
 * written at full cost, read by nothing during the run.
 */
async function startMesh(root: string, env: Record<string, string>, logFile: string, profileFile?: string): Promise<Mesh> {
  const nodeArgs = ["--import", "tsx", ...(profileFile === undefined ? [] : ["--import", PROFILE_WINDOW]), join(root, "services/mesh/src/main.ts")];
  const [cmd, args] = pinned(SERVER_CPUS, process.execPath, nodeArgs);
  const [port, grpcPort] = [await freePort(), await freePort()];
  const log = openSync(logFile, "a");
  const child = spawn(cmd, args, {
    cwd: root,
    env: { ...process.env, PORT: String(port), GRPC_PORT: String(grpcPort), METRICS_PORT: "0", LOG_LEVEL: process.env["BENCH_LOG_LEVEL"] ?? "info", ...(profileFile === undefined ? {} : { BENCH_PROFILE_FILE: profileFile }), ...env },
    stdio: ["ignore", "ignore", log],
  });
  closeSync(log);
  const tail = () => readFileSync(logFile, "utf8").slice(-5_000);
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`mesh exited with ${code}: ${tail()}`))));
  exited.catch(() => undefined);
  const gatewayUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const up = await Promise.race([fetch(`${gatewayUrl}/healthz`).then((r) => r.ok, () => false), exited]);
    if (up) break;
    if (Date.now() > deadline) throw new Error(`mesh did not answer /healthz within 60 s: ${tail()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { pid: child.pid!, gatewayUrl, grpcUrl: `http://127.0.0.1:${grpcPort}`, signal: (s) => void child.kill(s), stop: () => stopChild(child) };
}

/** The warnings and errors a mesh logged (the first few), for the report. */
function problems(logFile: string): string[] {
  const lines = existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n") : [];
  return lines.filter((l) => /"level":"(warn|error)"|"level":(40|50)/.test(l)).slice(0, 5);
}

async function startBare(env: Record<string, string>): Promise<{ pid: number; urls: Record<"redis" | "find" | "health", string>; stop(): Promise<void> }> {
  const [cmd, args] = pinned(SERVER_CPUS, process.execPath, ["--import", "tsx", BARE]);
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  const urls = await new Promise<Record<"redis" | "find" | "health", string>>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as Record<"redis" | "find" | "health", string>);
    });
    child.once("exit", (code) => reject(new Error(`bare servers exited with ${code}`)));
  });
  return { pid: child.pid!, urls, stop: () => stopChild(child) };
}

// ---- wrk ------------------------------------------------------------------------------------------

interface Run {
  readonly rps: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** CPU µs per request of the serving process. */
  readonly cpuUs: number;
  /** CPU µs per request of FerretDB and redis-server together. */
  readonly backendUs: number;
  /** Share of the server cores busy with processes other than ours (0..1). */
  readonly foreign: number;
  /** Redis commands per request, by command. */
  readonly redis: Record<string, number>;
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  return unit === "us" ? v / 1000 : unit === "s" ? v * 1000 : unit === "m" ? v * 60_000 : v;
}

function runWrk(url: string, connections: number, seconds: number, headers: readonly string[]): Promise<string> {
  const [cmd, args] = pinned(LOAD_CPUS, "wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "10s", ...headers.flatMap((h) => ["-H", h]), url]);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited with ${code}: ${out}`))));
  });
}

async function redisCommandCalls(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

interface Measured {
  readonly serverPid: number;
  readonly backendPids: readonly number[];
  readonly ourPids: () => readonly number[];
  readonly redis: Redis;
}

async function measure(m: Measured, url: string, connections: number, seconds: number, headers: readonly string[]): Promise<Run> {
  const cpus = serverCpuList();
  const ours0 = m.ourPids().reduce((s, p) => s + cpuUs(p), 0);
  const busy0 = cpuBusyUs();
  const server0 = cpuUs(m.serverPid);
  const backend0 = m.backendPids.reduce((s, p) => s + cpuUs(p), 0);
  const redis0 = await redisCommandCalls(m.redis);
  const started = process.hrtime.bigint();
  const out = await runWrk(url, connections, seconds, headers);
  const wallUs = Number(process.hrtime.bigint() - started) / 1000;
  const redis1 = await redisCommandCalls(m.redis);
  const busy1 = cpuBusyUs();
  const ours1 = m.ourPids().reduce((s, p) => s + cpuUs(p), 0);

  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lat = (p: string) => {
    const l = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(out);
    return l === null ? NaN : toMs(l[1]!, l[2]!);
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sock === null ? 0 : sock.slice(1).reduce((s, v) => s + Number(v), 0));
  const serverBusy = cpus.reduce((s, c) => s + (busy1.get(c) ?? 0) - (busy0.get(c) ?? 0), 0);
  const redisPer: Record<string, number> = {};
  for (const [cmd, calls] of Object.entries(redis1)) {
    const d = calls - (redis0[cmd] ?? 0) - (cmd === "info" ? 1 : 0);
    if (d > 0) redisPer[cmd] = d / requests;
  }
  return {
    rps,
    requests,
    p50Ms: lat("50"),
    p99Ms: lat("99"),
    errors,
    cpuUs: (cpuUs(m.serverPid) - server0) / requests,
    backendUs: (m.backendPids.reduce((s, p) => s + cpuUs(p), 0) - backend0) / requests,
    foreign: Math.max(0, serverBusy - (ours1 - ours0)) / (wallUs * cpus.length),
    redis: redisPer,
  };
}

// ---- the run ------------------------------------------------------------------------------------

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

async function json(res: Response): Promise<any> {
  const text = await res.text();
  if (!res.ok) throw new Error(`${res.url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** A workspace with a key, a customer to read, and enough tracked events for a cohort table of some size. */
async function seed(mesh: Mesh): Promise<{ key: string; customerId: string }> {
  const ws = createClient(WorkspacesService, createGrpcTransport({ baseUrl: mesh.grpcUrl }));
  const limit = RATE_LIMIT === "unlimited" ? { unlimited: true } : { rateLimit: BigInt(RATE_LIMIT) };
  const workspace = (await ws.createWorkspace({ name: "bench", plan: "enterprise", ...limit })).workspace!;
  const key = (await ws.createApiKey({ workspaceId: workspace.id, scopes: ["links:read", "links:write", "analytics:read", "events:write"] })).key;
  const api = `${mesh.gatewayUrl}/api`;
  const post = (path: string, body: unknown) => fetch(`${api}${path}`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: JSON.stringify(body) }).then(json);
  const customer = await post("/customers", { externalId: "bench_point", email: "point@example.com", name: "Point Read", country: "DE", metadata: { plan: "team" } });
  const month = 30 * 86_400_000;
  for (let i = 0; i < 24; i++) {
    const at = Date.now() - (1 + (i % 6)) * month - i * 3_600_000;
    await post("/track/lead", { externalId: `bench_${i}`, eventId: `lead-${i}`, timestamp: new Date(at).toISOString() });
    await post("/track/sale", { externalId: `bench_${i}`, amount: 1000 + i * 100, currency: "USD", invoiceId: `inv-${i}`, timestamp: new Date(at + month / 2).toISOString() });
  }
  return { key, customerId: customer.data.id as string };
}

interface Target {
  readonly key: "cached" | "point" | "healthz";
  readonly name: string;
  readonly bareName: string;
  /** The path on a gateway (below its base URL). */
  readonly path: (side: Side) => string;
  readonly bare: string;
  /** Sent with the side's API key. */
  readonly authorized: boolean;
  readonly goal: number;
  /** Connection counts the goal applies to (all when undefined). */
  readonly goalAt?: readonly number[];
}

/** One gateway under test: this tree's, or the one at BENCH_BEFORE_ROOT. */
interface Side {
  readonly name: "gateway" | "before";
  readonly root: string;
  readonly prefix: string;
  mesh: Mesh;
  key: string;
  customerId: string;
}

type Cell = Record<"gateway" | "before" | "bare", Run[]>;

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "linquid-bench-gw-"));
  const config = loadConfig({ ...process.env, DATA_DIR: dataDir });
  const children: Array<{ stop(): Promise<void> }> = [];
  let redis: Redis | undefined;
  // This process only starts things and reads wrk's output: it stays off the servers' core.
  if (PINNED) spawnSync("taskset", ["-a", "-p", "-c", LOAD_CPUS, String(process.pid)], { stdio: "ignore" });
  try {
    say(`pinning: ${PINNED ? `wrk on CPU ${LOAD_CPUS}, servers and backends on CPU ${SERVER_CPUS}` : "not possible (one core or no taskset): unpinned"}; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    const ferret: EmbeddedServer = await startFerretDb(config.ferretdbBin, join(dataDir, "ferretdb"));
    children.push(ferret);
    const redisServer: EmbeddedServer = await startRedisServer(config.redisServerBin, join(dataDir, "redis"));
    children.push(redisServer);
    for (const pid of [ferret.pid, redisServer.pid]) pinPid(pid, SERVER_CPUS);
    redis = new Redis(redisServer.url);

    const prefix = `bench${newId("", 6).slice(1).toLowerCase()}`;
    // The routes' own TTLs (CACHE_TTL_SECONDS would cache every GET route, point reads included),
    // except in the expiry run. Each side has a database namespace of its own.
    const meshEnv = (side: { prefix: string }, ttl?: number) => ({
      MONGODB_URI: ferret.url,
      REDIS_URL: redisServer.url,
      MONGODB_DB_PREFIX: side.prefix,
      DATA_DIR: dataDir,
      ...(ttl === undefined ? {} : { CACHE_TTL_SECONDS: String(ttl) }),
    });
    const meshLog = join(dataDir, "mesh.log");
    const sideSpecs = [{ name: "gateway" as const, root: ROOT, prefix }, ...(BEFORE_ROOT === undefined ? [] : [{ name: "before" as const, root: BEFORE_ROOT, prefix: `${prefix}b` }])];

    if (PROFILE) {
      for (const spec of sideSpecs) await profile(spec.name, spec.root, meshEnv(spec), meshLog);
      return;
    }

    const sides: Side[] = [];
    for (const spec of sideSpecs) {
      const mesh = await startMesh(spec.root, meshEnv(spec), meshLog);
      children.push(mesh);
      sides.push({ ...spec, mesh, ...(await seed(mesh)) });
    }
    const main = sides[0]!;
    // The snapshot: the first read fills it, the second must be a hit.
    const cohorts = (side: Side) => fetch(`${side.mesh.gatewayUrl}/api/customers/cohorts`, { headers: { "x-api-key": side.key } });
    for (const side of sides) {
      await cohorts(side).then(json);
      const hit = await cohorts(side);
      await hit.text();
      if (hit.headers.get("x-cache") !== "HIT") throw new Error(`${side.name}: second cohorts read was not a cache hit (X-Cache: ${hit.headers.get("x-cache")})`);
    }
    const body = await (await cohorts(main)).text();
    const pointBody = await (await fetch(`${main.mesh.gatewayUrl}/api/customers/${main.customerId}`, { headers: { "x-api-key": main.key } })).text();
    await redis.set("bench:cohorts", body);

    const bare = await startBare({
      REDIS_URL: redisServer.url,
      MONGODB_URI: ferret.url,
      BENCH_CUSTOMERS_DB: `${prefix}_customers`,
      BENCH_REDIS_KEY: "bench:cohorts",
      BENCH_CUSTOMER_ID: main.customerId,
    });
    children.push(bare);
    say(`cached body ${Buffer.byteLength(body)} bytes, point-read body ${Buffer.byteLength(pointBody)} bytes`);

    const targets: Target[] = [
      { key: "cached", name: "cached `GET /customers/cohorts` (X-Cache: HIT)", bareName: "Node + one Redis GET", path: () => "/api/customers/cohorts", bare: bare.urls.redis, authorized: true, goal: 0.5, goalAt: [16, 64] },
      { key: "point", name: "`GET /customers/:id`", bareName: "Node + the same findOne", path: (side) => `/api/customers/${side.customerId}`, bare: bare.urls.find, authorized: true, goal: 0.8 },
      { key: "healthz", name: "`GET /healthz`", bareName: "Node answering ~200 bytes", path: () => "/healthz", bare: bare.urls.health, authorized: false, goal: 0.9 },
    ];
    // BENCH_ONLY=cached,point,healthz measures some routes only (while working on them).
    const only = process.env["BENCH_ONLY"]?.split(",");
    if (only !== undefined) targets.splice(0, targets.length, ...targets.filter((t) => only.includes(t.key)));
    const ourPids = () => [...sides.map((x) => x.mesh.pid), bare.pid, ferret.pid, redisServer.pid];
    const measured = (serverPid: number): Measured => ({ serverPid, backendPids: [ferret.pid, redisServer.pid], ourPids, redis: redis! });
    const headersOf = (t: Target, side: Side) => (t.authorized ? [`X-API-Key: ${side.key}`] : []);

    for (const t of targets) {
      say(`warming up ${t.key}`);
      for (const side of sides) await runWrk(`${side.mesh.gatewayUrl}${t.path(side)}`, 16, WARMUP_SECONDS, headersOf(t, side));
      await runWrk(t.bare, 16, WARMUP_SECONDS, []);
    }
    const results = new Map<string, Cell>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        for (const c of CONNECTIONS) {
          const cell = results.get(`${t.key}|${c}`) ?? { gateway: [], before: [], bare: [] };
          results.set(`${t.key}|${c}`, cell);
          const order: Array<Side | "bare"> = [...sides, "bare"];
          if (round % 2 === 1) order.reverse();
          for (const which of order) {
            const run =
              which === "bare"
                ? await measure(measured(bare.pid), t.bare, c, DURATION, [])
                : await measure(measured(which.mesh.pid), `${which.mesh.gatewayUrl}${t.path(which)}`, c, DURATION, headersOf(t, which));
            const name = which === "bare" ? "bare" : which.name;
            cell[name].push(run);
            say(`round ${round + 1}/${ROUNDS} ${t.key} ${name} c=${c}: ${fmt(run.rps)} rps, p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms, ${fmt(run.cpuUs)} µs CPU/req, errors ${run.errors}, other load ${(run.foreign * 100).toFixed(0)} %`);
          }
        }
      }
    }

    // The expiry runs: each side's mesh again with snapshots living EXPIRY_TTL seconds, alone, read at 64 connections.
    for (const side of sides) await side.mesh.stop();
    const expiries: Array<{ side: string; run: Run; fills: number; expiries: number }> = [];
    for (const side of sides) {
      // Snapshots written before live 30 s: gone, so this mesh fills its own.
      for (const k of await redis.keys("snap:*")) await redis.del(k);
      side.mesh = await startMesh(side.root, meshEnv(side, EXPIRY_TTL), meshLog);
      children.push(side.mesh);
      const url = `${side.mesh.gatewayUrl}/api/customers/cohorts`;
      const auth = [`X-API-Key: ${side.key}`];
      await runWrk(url, 16, WARMUP_SECONDS, auth);
      for (let round = 0; round < ROUNDS; round++) {
        const sets0 = (await redisCommandCalls(redis)).set ?? 0;
        const run = await measure(measured(side.mesh.pid), url, 64, EXPIRY_DURATION, auth);
        const fills = ((await redisCommandCalls(redis)).set ?? 0) - sets0;
        expiries.push({ side: side.name, run, fills, expiries: EXPIRY_DURATION / EXPIRY_TTL });
        say(`${side.name} expiry round ${round + 1}/${ROUNDS}: ${fmt(run.rps)} rps, p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms, ${fills} fills in ${EXPIRY_DURATION / EXPIRY_TTL} expiries, errors ${run.errors}`);
      }
      await side.mesh.stop();
    }

    // Report (stdout, Markdown).
    const withBefore = sides.length > 1;
    const med = (runs: Run[], f: (r: Run) => number) => (runs.length === 0 ? NaN : median(runs.map(f)));
    const lat = (runs: Run[]) => `${med(runs, (r) => r.p50Ms).toFixed(2)} / ${med(runs, (r) => r.p99Ms).toFixed(2)}`;
    const lines: string[] = [];
    lines.push(`${new Date().toISOString().slice(0, 10)}, ${ROUNDS} rounds of ${DURATION} s, medians; ${PINNED ? `wrk on CPU ${LOAD_CPUS}, everything else on CPU ${SERVER_CPUS}` : "unpinned"}; budget ${RATE_LIMIT === "unlimited" ? "unlimited" : `${fmt(Number(RATE_LIMIT))}/h`}`);
    lines.push("");
    const cols = withBefore ? ["gateway rps", "bare rps", "ratio", "goal", "before rps", "before ratio"] : ["gateway rps", "bare rps", "ratio", "goal"];
    const who = withBefore ? "gateway / before / bare" : "gateway / bare";
    const head = ["route", "conns", ...cols, `p50 / p99 ms ${who}`, `CPU µs/req ${who}`, `backend CPU µs/req ${who}`, "Redis cmds/req (gateway)", "other load on server CPU"];
    lines.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
    for (const t of targets) {
      for (const c of CONNECTIONS) {
        const cell = results.get(`${t.key}|${c}`)!;
        const groups = withBefore ? [cell.gateway, cell.before, cell.bare] : [cell.gateway, cell.bare];
        const ratio = med(cell.gateway, (r) => r.rps) / med(cell.bare, (r) => r.rps);
        const applies = t.goalAt === undefined || t.goalAt.includes(c);
        const verdict = !applies ? "–" : ratio >= t.goal ? `≥ ${t.goal} met` : `≥ ${t.goal} **not met**`;
        const cmds = new Map<string, number[]>();
        for (const r of cell.gateway) for (const [k, v] of Object.entries(r.redis)) cmds.set(k, [...(cmds.get(k) ?? []), v]);
        const redisText = [...cmds].map(([k, v]) => `${k} ${median(v).toFixed(2)}`).join(", ") || "0";
        const all = groups.flat();
        const errs = all.reduce((n, r) => n + r.errors, 0);
        const row = [
          `${t.name} vs ${t.bareName}`,
          String(c),
          fmt(med(cell.gateway, (r) => r.rps)),
          fmt(med(cell.bare, (r) => r.rps)),
          `**${ratio.toFixed(2)}**`,
          verdict,
          ...(withBefore ? [fmt(med(cell.before, (r) => r.rps)), (med(cell.before, (r) => r.rps) / med(cell.bare, (r) => r.rps)).toFixed(2)] : []),
          groups.map(lat).join(" · "),
          groups.map((g) => fmt(med(g, (r) => r.cpuUs))).join(" / "),
          groups.map((g) => fmt(med(g, (r) => r.backendUs))).join(" / "),
          redisText,
          `${fmt(med(all, (r) => r.foreign) * 100)} %${errs > 0 ? ` (${errs} errors)` : ""}`,
        ];
        lines.push(`| ${row.join(" | ")} |`);
      }
    }
    lines.push("");
    lines.push(`Expiry runs: CACHE_TTL_SECONDS=${EXPIRY_TTL}, 64 connections, ${EXPIRY_DURATION} s per round, fills = snapshot writes (Redis SET)`);
    lines.push("");
    lines.push("| gateway | round | rps | p50 ms | p99 ms | p99 / p50 | fills | expiries | fills per expiry | errors |");
    lines.push("|---|---|---|---|---|---|---|---|---|---|");
    expiries.forEach((e, i) => {
      lines.push(`| ${e.side} | ${(i % ROUNDS) + 1} | ${fmt(e.run.rps)} | ${e.run.p50Ms.toFixed(2)} | ${e.run.p99Ms.toFixed(2)} | ${(e.run.p99Ms / e.run.p50Ms).toFixed(1)} | ${e.fills} | ${e.expiries} | ${(e.fills / e.expiries).toFixed(2)} | ${e.run.errors} |`);
    });
    lines.push("");
    lines.push(`Load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    const logged = problems(meshLog);
    if (logged.length > 0) lines.push("", "The meshes logged warnings or errors (first five):", "", ...logged.map((l) => `    ${l}`));
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    redis?.disconnect();
    for (const c of children.reverse()) await c.stop().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** CPU profiles of one side's mesh during 64 connections of cached reads, point reads and /healthz (the load only; BENCH_ONLY picks). */
async function profile(name: string, root: string, env: Record<string, string>, logFile: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "linquid-prof-"));
  const file = join(dir, "mesh.cpuprofile");
  const mesh = await startMesh(root, env, logFile, file);
  const out: string[] = [];
  try {
    const { key, customerId } = await seed(mesh);
    const headers = [`X-API-Key: ${key}`];
    const urls = { cached: `${mesh.gatewayUrl}/api/customers/cohorts`, point: `${mesh.gatewayUrl}/api/customers/${customerId}`, healthz: `${mesh.gatewayUrl}/healthz` };
    const titles = { cached: "Cached `GET /customers/cohorts`", point: "`GET /customers/:id`", healthz: "`GET /healthz`" };
    const which = (process.env["BENCH_ONLY"] ?? "cached,point,healthz").split(",") as Array<keyof typeof urls>;
    for (const what of which) {
      const url = urls[what];
      await runWrk(url, 16, WARMUP_SECONDS, headers);
      say(`profiling ${name}: ${what} reads for ${DURATION} s`);
      rmSync(`${file}.done`, { force: true });
      mesh.signal("SIGUSR2");
      const out1 = await runWrk(url, 64, DURATION, headers);
      mesh.signal("SIGUSR2");
      for (let i = 0; i < 100 && !existsSync(`${file}.done`); i++) await new Promise((r) => setTimeout(r, 100));
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out1)?.[1] ?? NaN);
      const requests = Number(/(\d+) requests in/.exec(out1)?.[1] ?? NaN);
      out.push(profileMarkdown(`${name}: ${titles[what]}, 64 connections, ${DURATION} s, ${fmt(rps)} rps`, summarizeProfile(file, 20), requests), "");
      // BENCH_PROFILE_DIR keeps the profiles (open them in Chrome DevTools or speedscope for a flame graph).
      const keep = process.env["BENCH_PROFILE_DIR"];
      if (keep !== undefined && keep !== "") copyFileSync(file, join(keep, `${name}-${what}.cpuprofile`));
    }
  } finally {
    await mesh.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

await main();
