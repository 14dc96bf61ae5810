/**
 * Fault injection against the mesh in split mode, shared by the fault-injection test suite
 * (`test/faults/`) and `npm run chaos` (scripts/chaos.ts):
 *
 * - a cluster of real processes: a FerretDB and a redis-server of its own (so pausing or killing
 *   them disturbs nothing else), and three mesh processes — `edge` (workspaces and the gateway),
 *   `customers`, `analytics` — on fixed ports, so a restarted one takes its predecessor's place;
 * - faults: any of them killed (SIGKILL) and restarted, or stopped (SIGSTOP) and resumed;
 * - load: concurrent REST clients tracking sales, creating customers and reading, recording
 *   every answer (status, code, Retry-After, times) and every write the API acknowledged;
 * - figures: answers by status and code, latency, time from a fault to its first 503, time from
 *   a dependency's return to the last failure, acknowledged writes missing from the database, and
 *   whether the rollups equal a recomputation from the stored events.
 *
 * Nothing here depends on vitest.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { DescService } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { AnalyticsService, WorkspacesService } from "@linquid/contracts";
import { MongoClient } from "mongodb";
import { freePort, startFerretDb, startRedisServer, type EmbeddedServer } from "../embedded.js";
import { spawnMesh, type MeshProcess } from "./processes.js";

export type ServiceName = "edge" | "customers" | "analytics";
export type TargetName = "database" | "redis" | ServiceName;

/** Something that can be crashed, hung and brought back. */
export interface Target {
  readonly name: TargetName;
  /** SIGKILL; resolves once it is gone. */
  kill(): Promise<void>;
  /** Starts it again (same port, same data); resolves once it serves. */
  restart(): Promise<void>;
  /** SIGSTOP: it stays connected and answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

export interface ChaosCluster {
  /** REST base URL of the gateway (`…/api`). */
  readonly api: string;
  readonly mongodbUri: string;
  readonly dbPrefix: string;
  readonly targets: Readonly<Record<TargetName, Target>>;
  /** Creates a workspace (pro, USD) and a key with every scope; `rateLimit` undefined = unlimited. */
  workspace(rateLimit?: number): Promise<{ id: string; key: string }>;
  /** A gRPC client of `service` on the (current) process `name`. */
  grpc<S extends DescService>(name: ServiceName, service: S): Client<S>;
  /** What a service process logged (for failure messages). */
  log(name: ServiceName): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  readonly ferretdbBin: string;
  readonly redisServerBin: string;
  /** Extra environment for every mesh process. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Starts the backends and the three mesh processes (see the module comment). */
export async function startChaosCluster(options: ClusterOptions): Promise<ChaosCluster> {
  const dir = mkdtempSync(join(tmpdir(), "linquid-chaos-"));
  const [dbPort, redisPort, edgeGrpc, edgeRest, customersGrpc, analyticsGrpc] = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  let ferret: EmbeddedServer = await startFerretDb(options.ferretdbBin, dir, dbPort);
  let redis: EmbeddedServer = await startRedisServer(options.redisServerBin, dir, redisPort);
  const dbPrefix = `chaos${Date.now().toString(36)}`;
  const addrs = {
    WORKSPACES_ADDR: `http://127.0.0.1:${edgeGrpc}`,
    CUSTOMERS_ADDR: `http://127.0.0.1:${customersGrpc}`,
    ANALYTICS_ADDR: `http://127.0.0.1:${analyticsGrpc}`,
  };
  const common = {
    MONGODB_URI: ferret.url,
    MONGODB_DB_PREFIX: dbPrefix,
    REDIS_URL: "none",
    LOG_LEVEL: "info",
    RECOVERY_AFTER_MS: "2000",
    ...addrs,
    ...options.env,
  };
  const envOf: Record<ServiceName, Record<string, string>> = {
    edge: { ...common, MESH_PLUGINS: "workspaces,gateway", GRPC_PORT: String(edgeGrpc), PORT: String(edgeRest), REDIS_URL: redis.url },
    customers: { ...common, MESH_PLUGINS: "customers", GRPC_PORT: String(customersGrpc) },
    analytics: { ...common, MESH_PLUGINS: "analytics", GRPC_PORT: String(analyticsGrpc) },
  };
  const procs = {} as Record<ServiceName, MeshProcess>;
  const logs: Record<ServiceName, string> = { edge: "", customers: "", analytics: "" };
  await Promise.all((Object.keys(envOf) as ServiceName[]).map(async (n) => (procs[n] = await spawnMesh(envOf[n]))));

  const service = (name: ServiceName): Target => ({
    name,
    async kill() {
      procs[name].signal("SIGKILL");
      await procs[name].exited;
      logs[name] += procs[name].log();
    },
    async restart() {
      procs[name] = await spawnMesh(envOf[name]);
    },
    pause: () => procs[name].signal("SIGSTOP"),
    resume: () => procs[name].signal("SIGCONT"),
  });
  const signal = (pid: number, s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // gone already
    }
  };
  const gone = async (pid: number) => {
    for (let i = 0; i < 200; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await sleep(10);
    }
  };
  const targets: Record<TargetName, Target> = {
    database: {
      name: "database",
      async kill() {
        signal(ferret.pid, "SIGKILL");
        await gone(ferret.pid);
      },
      async restart() {
        ferret = await startFerretDb(options.ferretdbBin, dir, dbPort);
      },
      pause: () => signal(ferret.pid, "SIGSTOP"),
      resume: () => signal(ferret.pid, "SIGCONT"),
    },
    redis: {
      name: "redis",
      async kill() {
        signal(redis.pid, "SIGKILL");
        await gone(redis.pid);
      },
      async restart() {
        redis = await startRedisServer(options.redisServerBin, dir, redisPort);
      },
      pause: () => signal(redis.pid, "SIGSTOP"),
      resume: () => signal(redis.pid, "SIGCONT"),
    },
    edge: service("edge"),
    customers: service("customers"),
    analytics: service("analytics"),
  };

  const workspaces = () => procs.edge.grpcClient(WorkspacesService);
  return {
    api: `${procs.edge.gatewayUrl}/api`,
    mongodbUri: ferret.url,
    dbPrefix,
    targets,
    async workspace(rateLimit) {
      const w = await workspaces().createWorkspace({ name: "chaos", plan: "pro", currency: "USD", ...(rateLimit === undefined ? { unlimited: true } : { rateLimit: BigInt(rateLimit) }) });
      const id = w.workspace!.id;
      const k = await workspaces().createApiKey({ workspaceId: id, scopes: ["links:read", "links:create", "links:update", "analytics:read", "events:write"] });
      return { id, key: k.key };
    },
    grpc: (name, svc) => procs[name].grpcClient(svc),
    log: (name) => logs[name] + procs[name].log(),
    async stop() {
      for (const t of Object.values(targets)) t.resume();
      await Promise.all(Object.values(procs).map((p) => p.stop()));
      await redis.stop();
      await ferret.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// -- load ---------------------------------------------------------------------------------------

export type Op = "sale" | "customer" | "cohorts" | "ltv" | "count" | "get";

/** The services an operation needs, besides the gateway and the database. */
export const NEEDS: Readonly<Record<Op, readonly ServiceName[]>> = {
  sale: ["analytics", "customers"],
  customer: ["customers"],
  cohorts: ["analytics"],
  ltv: ["analytics"],
  count: ["customers"],
  get: ["customers"],
};

/** One answer the load saw. */
export interface Sample {
  readonly op: Op;
  /** Epoch ms when the request was sent and when its answer (or failure) came. */
  readonly start: number;
  readonly end: number;
  /** HTTP status; 0 when no answer came (connection failed). */
  readonly status: number;
  /** The error envelope's code, when there was one. */
  readonly code: string | undefined;
  readonly retryAfter: string | null;
}

export interface Load {
  readonly samples: Sample[];
  /** Sales the API acknowledged (2xx): invoice id → amount. */
  readonly sales: Map<string, number>;
  /** Customers the API acknowledged: their ids. */
  readonly customers: Set<string>;
  stop(): Promise<void>;
}

const MIX: readonly Op[] = ["sale", "sale", "sale", "customer", "cohorts", "ltv", "count", "get", "get"];

/** `clients` concurrent clients, each sending one request after another (see the module comment). */
export function startLoad(api: string, key: string, clients: number): Load {
  const samples: Sample[] = [];
  const sales = new Map<string, number>();
  const customers = new Set<string>();
  let running = true;
  let n = 0;
  const request = async (op: Op): Promise<void> => {
    const i = n++;
    const ext = `c${i % 300}`;
    const invoice = `inv-${Date.now().toString(36)}-${i}`;
    const [method, path, body] =
      op === "sale"
        ? ["POST", "/track/sale", { externalId: ext, amount: 100 + (i % 7), currency: "USD", invoiceId: invoice }]
        : op === "customer"
          ? ["POST", "/customers", { externalId: `new-${i}` }]
          : op === "cohorts"
            ? ["GET", "/customers/cohorts?group_by=month", undefined]
            : op === "ltv"
              ? ["GET", "/customers/ltv-cohorts?months=3", undefined]
              : op === "count"
                ? ["GET", "/customers/count", undefined]
                : ["GET", `/customers/ext_${ext}`, undefined];
    const start = Date.now();
    let status = 0;
    let code: string | undefined;
    let retryAfter: string | null = null;
    try {
      const res = await fetch(`${api}${path}`, {
        method,
        headers: { "x-api-key": key, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      });
      status = res.status;
      retryAfter = res.headers.get("retry-after");
      const json = (await res.json().catch(() => undefined)) as { data?: { id?: string }; error?: { code?: string } } | undefined;
      code = json?.error?.code;
      if (status < 300 && op === "sale") sales.set(invoice, (body as unknown as { amount: number }).amount);
      if (status < 300 && op === "customer" && json?.data?.id !== undefined) customers.add(json.data.id);
    } catch {
      code = "NO_ANSWER";
    }
    samples.push({ op, start, end: Date.now(), status, code, retryAfter });
  };
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let k = c; running; k++) {
      await request(MIX[k % MIX.length]!);
      // A client whose request failed at once does not spin.
      const last = samples[samples.length - 1];
      if (last !== undefined && last.status !== 200 && last.status !== 201 && last.end - last.start < 5) await sleep(5);
    }
  });
  return {
    samples,
    sales,
    customers,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

// -- figures ------------------------------------------------------------------------------------

/** An answer about the request itself (2xx, or a 4xx such as a 404 for a customer not created yet). */
const answered = (s: Sample) => s.status >= 200 && s.status < 500;
/** The honest failure: 503 SERVICE_UNAVAILABLE with Retry-After. */
const honest = (s: Sample) => s.status === 503 && s.code === "SERVICE_UNAVAILABLE" && s.retryAfter !== null;

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Answers counted by "status CODE" (e.g. "503 SERVICE_UNAVAILABLE", "200"). */
export function byStatus(samples: readonly Sample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    const k = s.code === undefined ? String(s.status) : `${s.status} ${s.code}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

export interface FaultFigures {
  /** Requests answered between the fault and `settleMs` after the dependency's return. */
  readonly requests: number;
  readonly byStatus: Record<string, number>;
  /** Failures other than 503 SERVICE_UNAVAILABLE with Retry-After: a 500, no answer (must be 0). */
  readonly dishonest: number;
  /** From the fault to the first 503 answered (null: none). */
  readonly firstUnavailableMs: number | null;
  /**
   * How long the requests that needed the dependency and failed waited for their answer (p50,
   * p99, max): from the request, or from the fault for a request already in flight then.
   */
  readonly failedLatency: { readonly p50: number; readonly p99: number; readonly max: number };
  /** From the dependency's return to the end of the last failed request started after it (0: none failed). */
  readonly recoveryMs: number;
  /** Affected requests started after the return that failed. */
  readonly failedAfterReturn: number;
}

/**
 * The figures of one fault: `at` when it was injected, `back` when the dependency returned;
 * `affected` picks the operations that need it (all, for the database).
 */
export function figuresOf(samples: readonly Sample[], at: number, back: number, affected: (op: Op) => boolean, settleMs = 3000): FaultFigures {
  const during = samples.filter((s) => s.end >= at && s.start < back + settleMs);
  const failed = during.filter((s) => affected(s.op) && !answered(s) && s.start < back);
  const firstUnavailable = during.filter((s) => s.status === 503).map((s) => s.end - at);
  const after = samples.filter((s) => affected(s.op) && s.start >= back && s.start < back + settleMs);
  const failedAfter = after.filter((s) => !answered(s));
  const waited = failed.map((s) => s.end - Math.max(s.start, at));
  return {
    requests: during.length,
    byStatus: byStatus(during),
    dishonest: during.filter((s) => !answered(s) && !honest(s)).length,
    firstUnavailableMs: firstUnavailable.length === 0 ? null : Math.max(0, Math.min(...firstUnavailable)),
    failedLatency: { p50: percentile(waited, 50), p99: percentile(waited, 99), max: Math.max(0, ...waited) },
    recoveryMs: Math.max(0, ...failedAfter.map((s) => s.end - back)),
    failedAfterReturn: failedAfter.length,
  };
}

export interface Consistency {
  /** Acknowledged sales whose event is not in the database (must be 0). */
  readonly salesLost: number;
  /** Acknowledged customers not in the database (must be 0). */
  readonly customersLost: number;
  /** Revenue of the stored sales, and as the cohorts and LTV cohorts answer it. */
  readonly storedRevenue: number;
  readonly cohortRevenue: number;
  readonly ltvRevenue: number;
  /** Interrupted writes not yet recovered. */
  readonly pendingWrites: number;
}

/**
 * Checks what the load was told against the database, and the rollups against the stored
 * events, waiting up to `waitMs` for recovery to finish interrupted writes.
 */
export async function checkConsistency(cluster: ChaosCluster, workspaceId: string, load: Load, waitMs: number): Promise<Consistency> {
  const client = new MongoClient(cluster.mongodbUri);
  try {
    const an = client.db(`${cluster.dbPrefix}_analytics`);
    const cu = client.db(`${cluster.dbPrefix}_customers`);
    const ids = [...load.sales.keys()].map((inv) => `${workspaceId}:sale:${inv}`);
    let stored = 0;
    for (let i = 0; i < ids.length; i += 1000) stored += await an.collection("events").countDocuments({ _id: { $in: ids.slice(i, i + 1000) } as never });
    const customerIds = [...load.customers];
    let found = 0;
    for (let i = 0; i < customerIds.length; i += 1000) found += await cu.collection("customers").countDocuments({ _id: { $in: customerIds.slice(i, i + 1000) } as never });
    const deadline = Date.now() + waitMs;
    let pendingWrites = 0;
    let storedRevenue = 0;
    let cohortRevenue = 0;
    let ltvRevenue = 0;
    for (;;) {
      pendingWrites = await an.collection("write_ops").countDocuments({ workspaceId });
      pendingWrites += await an.collection("workspace_rebuilds").countDocuments({ _id: workspaceId as never });
      const sales = await an.collection("events").find({ workspaceId, type: "sale", customerId: { $ne: null } }, { projection: { amount: 1 } }).toArray();
      storedRevenue = sales.reduce((a, e) => a + Number(e["amount"] ?? 0), 0);
      const a = cluster.grpc("analytics", AnalyticsService);
      const cohorts = await a.getCohorts({ workspaceId, groupBy: "month" });
      cohortRevenue = cohorts.cohorts.reduce((s, c) => s + Number(c.revenue), 0);
      const ltv = await a.getLtvCohorts({ workspaceId, months: 24 });
      ltvRevenue = ltv.cohorts.reduce((s, c) => s + Number(c.cumulativeRevenue.at(-1) ?? 0n), 0);
      if ((pendingWrites === 0 && storedRevenue === cohortRevenue && storedRevenue === ltvRevenue) || Date.now() > deadline) break;
      await sleep(500);
    }
    return { salesLost: ids.length - stored, customersLost: customerIds.length - found, storedRevenue, cohortRevenue, ltvRevenue, pendingWrites };
  } finally {
    await client.close();
  }
}
