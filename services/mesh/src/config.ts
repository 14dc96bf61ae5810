/**
 * Mesh configuration: read from the environment once, at start, validated, then passed in.
 * A bad value throws a ConfigError whose message is one line naming the variable.
 */
import { isAbsolute, resolve } from "node:path";
import { checkPeerSchemes, tlsFilesFromEnv, type TlsFiles } from "./credentials.js";

/** Every plugin the mesh knows, in start order. */
export const ALL_PLUGINS = ["workspaces", "customers", "analytics", "gateway"] as const;
export type PluginName = (typeof ALL_PLUGINS)[number];

/** Plans and their defaults live with the workspaces service; these are only the overrides. */
export type Plan = "starter" | "pro" | "enterprise";

export interface MeshConfig {
  /** Plugins this process runs (MESH_PLUGINS, comma separated; default all). */
  readonly plugins: readonly PluginName[];
  /** Address every listener binds to (BIND_HOST). */
  readonly bindHost: string;
  /** gRPC/Connect port of the services this process serves (GRPC_PORT; 0 = any free port). */
  readonly grpcPort: number;
  /** REST gateway port (PORT; 0 = any free port). */
  readonly gatewayPort: number;
  /** Prometheus metrics port (METRICS_PORT, default 9464; 0 = any free port; "off" = no metrics listener). */
  readonly metricsPort: number | undefined;
  /** Base path of the REST API (API_BASE_PATH). */
  readonly apiBasePath: string;
  /** Where to reach each service not run in this process, e.g. CUSTOMERS_ADDR=http://customers:8090. */
  readonly serviceAddrs: Readonly<Partial<Record<PluginName, string>>>;
  /** MONGODB_URI; unset = start the embedded FerretDB. */
  readonly mongodbUri: string | undefined;
  /** Each plugin owns the database `${prefix}_${plugin}` (MONGODB_DB_PREFIX). */
  readonly mongodbDbPrefix: string;
  /** REDIS_URL; unset = start an embedded redis-server; "none" = run without Redis. */
  readonly redisUrl: string | undefined;
  readonly redisDisabled: boolean;
  /** Embedded backends keep their data here (DATA_DIR). */
  readonly dataDir: string;
  /** FerretDB binary for the embedded default (FERRETDB_BIN). */
  readonly ferretdbBin: string;
  /** redis-server binary for the embedded default (REDIS_SERVER_BIN). */
  readonly redisServerBin: string;
  /** Overrides every route's snapshot-cache TTL when set (CACHE_TTL_SECONDS; 0 disables caching). */
  readonly cacheTtlSeconds: number | undefined;
  /** How long the gateway may trust a resolved API key (AUTH_CACHE_TTL_MS, at most 5000). */
  readonly authCacheTtlMs: number;
  /** Default requests per hour per plan (RATE_LIMIT_STARTER, _PRO, _ENTERPRISE; "unlimited" allowed). */
  readonly planRateLimits: Readonly<Record<Plan, number | null>>;
  /** Largest REST request body in bytes (MAX_BODY_BYTES). */
  readonly maxBodyBytes: number;
  /** How long SIGTERM waits for in-flight requests (SHUTDOWN_TIMEOUT_MS). */
  readonly shutdownTimeoutMs: number;
  readonly logLevel: "debug" | "info" | "warn" | "error";
  /** OTLP endpoint; unset = no export (OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly otlpEndpoint: string | undefined;
  /**
   * Share of new traces recorded while spans are exported (OTEL_TRACES_SAMPLER_ARG, 0..1,
   * default 1); a trace the caller sampled, or not, keeps the caller's decision.
   */
  readonly traceSampleRatio: number;
  /**
   * Entries per bucket of the analytics timelines and hourly member lists (ANALYTICS_BUCKET_SIZE,
   * default 1000, 2..100000): the largest such document holds this many.
   */
  readonly analyticsBucketSize: number;
  /**
   * How long the marker of an interrupted write is left to its writer before recovery takes it
   * over (RECOVERY_AFTER_MS, default 60 s; at least the call's deadline in any case). Recovery
   * sweeps every 30 s, or every half of this when that is shorter.
   */
  readonly recoveryAfterMs: number;
  /**
   * Key that signs list cursors (CURSOR_SECRET, at least 32 characters); unset = a key the
   * customers plugin generates once and keeps in its database, shared by its replicas.
   */
  readonly cursorSecret: string | undefined;
  /**
   * The credential of the gRPC port and of calls to peers (TLS_CERT, TLS_KEY, TLS_CA: files,
   * read again every TLS_RELOAD_INTERVAL_MS); undefined = plaintext, open to any caller.
   * With it, peers' addresses are https:// and callers need certificates (credentials.ts).
   */
  readonly tls: TlsFiles | undefined;
}

/** A configuration value that cannot be used; `message` is one line naming the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Readonly<Record<string, string | undefined>>;

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === "" ? fallback : v;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name}: expected an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name}: must be between ${min} and ${max}, got ${n}`);
  return n;
}

function ratio(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!/^\d*\.?\d+$/.test(raw) || n > 1) throw new ConfigError(`${name}: expected a number from 0 to 1, got "${raw}"`);
  return n;
}

function budget(env: Env, name: string, fallback: number): number | null {
  const raw = env[name];
  if (raw === "unlimited") return null;
  return int(env, name, fallback, 1, 1_000_000_000);
}

function url(env: Env, name: string, schemes: readonly string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name}: not a URL (expected ${schemes.map((s) => `${s}//...`).join(" or ")})`);
  }
  if (!schemes.includes(parsed.protocol)) {
    throw new ConfigError(`${name}: expected ${schemes.map((s) => `${s}//...`).join(" or ")}, got "${parsed.protocol}//..."`);
  }
  return raw;
}

/** Reads and validates the mesh configuration. Throws ConfigError on the first bad value. */
export function loadConfig(env: Env = process.env): MeshConfig {
  const pluginList = str(env, "MESH_PLUGINS", ALL_PLUGINS.join(","))
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  for (const p of pluginList) {
    if (!(ALL_PLUGINS as readonly string[]).includes(p)) {
      throw new ConfigError(`MESH_PLUGINS: unknown plugin "${p}" (known: ${ALL_PLUGINS.join(", ")})`);
    }
  }
  if (pluginList.length === 0) throw new ConfigError("MESH_PLUGINS: names no plugin");
  const plugins = ALL_PLUGINS.filter((p) => pluginList.includes(p));

  const serviceAddrs: Partial<Record<PluginName, string>> = {};
  for (const p of ALL_PLUGINS) {
    const v = url(env, `${p.toUpperCase()}_ADDR`, ["http:", "https:"]);
    if (v !== undefined) serviceAddrs[p] = v;
  }

  const tls = tlsFilesFromEnv(env);
  checkPeerSchemes(tls, serviceAddrs);

  const apiBasePath = str(env, "API_BASE_PATH", "/api");
  if (!/^(\/[A-Za-z0-9._~-]+)*$/.test(apiBasePath)) {
    throw new ConfigError(`API_BASE_PATH: expected a path like /api, got "${apiBasePath}"`);
  }

  const redisRaw = env["REDIS_URL"];
  const redisDisabled = redisRaw === "none";
  const dataDir = str(env, "DATA_DIR", ".data");
  const logLevel = str(env, "LOG_LEVEL", "info");
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL: expected debug, info, warn or error, got "${logLevel}"`);
  }
  const cacheTtlRaw = env["CACHE_TTL_SECONDS"];
  const cursorSecret = env["CURSOR_SECRET"];
  if (cursorSecret !== undefined && cursorSecret !== "" && cursorSecret.length < 32) throw new ConfigError("CURSOR_SECRET: must be at least 32 characters");

  return {
    plugins,
    bindHost: str(env, "BIND_HOST", "127.0.0.1"),
    grpcPort: int(env, "GRPC_PORT", 8090, 0, 65535),
    gatewayPort: int(env, "PORT", 8080, 0, 65535),
    metricsPort: env["METRICS_PORT"] === "off" ? undefined : int(env, "METRICS_PORT", 9464, 0, 65535),
    apiBasePath,
    serviceAddrs,
    mongodbUri: url(env, "MONGODB_URI", ["mongodb:", "mongodb+srv:"]),
    mongodbDbPrefix: str(env, "MONGODB_DB_PREFIX", "linquid"),
    redisUrl: redisDisabled ? undefined : url(env, "REDIS_URL", ["redis:", "rediss:"]),
    redisDisabled,
    dataDir: isAbsolute(dataDir) ? dataDir : resolve(dataDir),
    ferretdbBin: resolve(str(env, "FERRETDB_BIN", ".bin/ferretdb")),
    redisServerBin: str(env, "REDIS_SERVER_BIN", "redis-server"),
    cacheTtlSeconds: cacheTtlRaw === undefined || cacheTtlRaw === "" ? undefined : int(env, "CACHE_TTL_SECONDS", 0, 0, 86_400),
    authCacheTtlMs: int(env, "AUTH_CACHE_TTL_MS", 2000, 0, 5000),
    planRateLimits: {
      starter: budget(env, "RATE_LIMIT_STARTER", 100),
      pro: budget(env, "RATE_LIMIT_PRO", 1000),
      enterprise: budget(env, "RATE_LIMIT_ENTERPRISE", 10_000),
    },
    maxBodyBytes: int(env, "MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
    shutdownTimeoutMs: int(env, "SHUTDOWN_TIMEOUT_MS", 8000, 100, 60_000),
    logLevel: logLevel as MeshConfig["logLevel"],
    otlpEndpoint: url(env, "OTEL_EXPORTER_OTLP_ENDPOINT", ["http:", "https:"]),
    traceSampleRatio: ratio(env, "OTEL_TRACES_SAMPLER_ARG", 1),
    analyticsBucketSize: int(env, "ANALYTICS_BUCKET_SIZE", 1000, 2, 100_000),
    recoveryAfterMs: int(env, "RECOVERY_AFTER_MS", 60_000, 1000, 3_600_000),
    cursorSecret: cursorSecret === undefined || cursorSecret === "" ? undefined : cursorSecret,
    tls,
  };
}
