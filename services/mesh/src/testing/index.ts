/**
 * Helpers for the integration tier: a whole mesh (every plugin, or the ones asked for) on
 * the run's FerretDB/MongoDB and Redis, on free ports, in a database namespace of its own,
 * with workspaces and API keys made through the real WorkspacesService.
 */
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { WorkspacesService } from "@linquid/contracts";
import { MongoClient, type Db } from "mongodb";
import { inject } from "vitest";
import { loadConfig, type MeshConfig } from "../config.js";
import { startHost, type Host } from "../host.js";
import { newId } from "../ids.js";
import { createClientTracingInterceptor } from "../rpc-tracing.js";
import { createLogger } from "../logger.js";
import { contractOf } from "./contract.js";
import { spawnMesh, type MeshProcess } from "./processes.js";

export interface TestMesh {
  readonly host: Host;
  readonly config: MeshConfig;
  /** `${gatewayUrl}${apiBasePath}` */
  readonly api: string;
  /** A client over real gRPC (HTTP/2) to this mesh's server. */
  grpcClient<S extends DescService>(service: S): Client<S>;
  /** Creates a workspace and one key with `scopes`; returns its id and plaintext key. */
  workspace(options?: { plan?: string; scopes?: string[]; currency?: string; rateLimit?: number | "unlimited" }): Promise<{ id: string; key: string; keyId: string }>;
  /**
   * Calls the REST API with a key; body is JSON-encoded unless a string. The answer is checked
   * against the OpenAPI document the gateway serves (contract.ts): a difference throws, failing the test.
   */
  request(method: string, path: string, options?: { key?: string; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; body: any; text: string }>;
  stop(): Promise<void>;
}

export const ALL_SCOPES = ["links:read", "links:create", "links:update", "links:delete", "analytics:read", "events:write"];

/**
 * Starts a mesh for a test file. `env` overrides the test defaults (all plugins, ports 0, error
 * logs only); `log` receives each line it logs (JSON) instead of stderr.
 */
export async function startTestMesh(env: Record<string, string> = {}, options: { log?: (line: string) => void } = {}): Promise<TestMesh> {
  const config = loadConfig({
    MONGODB_URI: inject("mongodbUri"),
    REDIS_URL: inject("redisUrl"),
    FERRETDB_BIN: inject("ferretdbBin"),
    REDIS_SERVER_BIN: inject("redisServerBin"),
    MONGODB_DB_PREFIX: `t${newId("", 8).slice(1).toLowerCase()}`,
    GRPC_PORT: "0",
    PORT: "0",
    METRICS_PORT: "0",
    LOG_LEVEL: process.env["TEST_LOG_LEVEL"] ?? "error",
    SHUTDOWN_TIMEOUT_MS: "2000",
    ...env,
  });
  const host = await startHost(config, { logger: createLogger("test-mesh", config.logLevel, options.log) });
  const transports: Array<ReturnType<typeof createGrpcTransport>> = [];
  const api = `${host.gatewayUrl ?? ""}${config.apiBasePath}`;
  const contract = host.gatewayUrl === undefined ? undefined : await contractOf(api);
  const mesh: TestMesh = {
    host,
    config,
    api,
    grpcClient(service) {
      if (host.grpcUrl === undefined) throw new Error("this mesh serves no gRPC");
      const t = createGrpcTransport({ baseUrl: host.grpcUrl, interceptors: [createClientTracingInterceptor()] });
      transports.push(t);
      return createClient(service, t);
    },
    async workspace(options = {}) {
      const ws = host.client(WorkspacesService);
      const created = await ws.createWorkspace({
        name: "test",
        plan: options.plan ?? "pro",
        ...(options.currency !== undefined ? { currency: options.currency } : {}),
        ...(options.rateLimit === "unlimited" ? { unlimited: true } : options.rateLimit !== undefined ? { rateLimit: BigInt(options.rateLimit) } : { unlimited: true }),
      });
      const id = created.workspace!.id;
      const key = await ws.createApiKey({ workspaceId: id, scopes: options.scopes ?? ALL_SCOPES });
      return { id, key: key.key, keyId: key.apiKey!.id };
    },
    async request(method, path, options = {}) {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
      if (options.key !== undefined) headers["x-api-key"] = options.key;
      let body: string | undefined;
      if (options.body !== undefined) {
        body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
        headers["content-type"] ??= "application/json";
      }
      const res = await fetch(`${api}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const problems = contract?.problems(method.toUpperCase(), path, { status: res.status, headers: res.headers, text }) ?? [];
      if (problems.length > 0) {
        throw new Error(`the answer differs from the OpenAPI document (GET ${config.apiBasePath}/openapi.json): ${method} ${path} → ${res.status}: ${problems.join("; ")}\n${text.slice(0, 500)}`);
      }
      return { status: res.status, headers: res.headers, body: parsed, text };
    },
    async stop() {
      await host.stop();
    },
  };
  return mesh;
}

/** A plugin's own database in a test mesh, through a client of the test's own (to inspect or damage it). */
export async function pluginDatabase(mesh: TestMesh, plugin: string): Promise<{ db: Db; close: () => Promise<void> }> {
  const client = new MongoClient(mesh.host.mongodbUri!);
  await client.connect();
  return { db: client.db(`${mesh.config.mongodbDbPrefix}_${plugin}`), close: () => client.close() };
}

export type { MeshProcess } from "./processes.js";
export { contractOf, type ContractChecker } from "./contract.js";
export { spawnMesh } from "./processes.js";

/**
 * Replicas of `main`'s plugins: `count` mesh processes on `main`'s database prefix, each with
 * `env` added (which plugins, where the others are), and a gRPC client of `service` for `main`
 * and each replica, `main` first.
 */
export async function startReplicas<S extends DescService>(
  main: TestMesh,
  count: number,
  env: Record<string, string>,
  service: S,
): Promise<{ replicas: MeshProcess[]; clients: Array<Client<S>> }> {
  const replicas = await Promise.all(
    Array.from({ length: count }, () => startMeshProcess({ MONGODB_DB_PREFIX: main.config.mongodbDbPrefix, ...env })),
  );
  return { replicas, clients: [main.grpcClient(service), ...replicas.map((r) => r.grpcClient(service))] };
}

/**
 * Starts `node services/mesh/src/main.ts` in a child process on the run's database and free
 * ports, without Redis. `env` picks its plugins and wiring; pass another mesh's
 * `config.mongodbDbPrefix` as MONGODB_DB_PREFIX to make it a replica of that mesh's plugins.
 */
export function startMeshProcess(env: Record<string, string>): Promise<MeshProcess> {
  return spawnMesh({ MONGODB_URI: inject("mongodbUri"), REDIS_URL: "none", ...env });
}
