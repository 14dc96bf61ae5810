/** What the benchmark scripts share: settings from the environment, progress lines, percentiles, a mesh configuration. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, loadConfig, newId, startHost, type Host } from "@linquid/mesh";
import { MongoClient } from "mongodb";

/** A positive integer setting from the environment, or `fallback` when unset. */
export function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name}: expected a positive integer, got "${raw}"`);
  return Number(raw);
}

/** A progress line on stderr (stdout carries the results). */
export const say = (msg: string): void => void process.stderr.write(`bench: ${msg}\n`);

/** The p-th percentile of the samples, nearest-rank. */
export function pct(samples: readonly number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * A benchmark's mesh configuration: `env` over the process's environment, every port picked
 * free, metrics off unless METRICS_PORT is set, error logs only unless LOG_LEVEL is set.
 */
export function benchConfig(env: Record<string, string>): ReturnType<typeof loadConfig> {
  return loadConfig({
    ...process.env,
    GRPC_PORT: "0",
    PORT: "0",
    METRICS_PORT: process.env["METRICS_PORT"] ?? "0",
    LOG_LEVEL: process.env["LOG_LEVEL"] ?? "error",
    ...env,
  });
}

/**
 * A mesh of every plugin on a fresh data directory and database prefix, as the analytics
 * benchmarks run it, with a driver connection of the benchmark's own to its database.
 */
export async function startBenchMesh(dirPrefix: string): Promise<{ dataDir: string; config: ReturnType<typeof loadConfig>; host: Host; mongo: MongoClient }> {
  const dataDir = mkdtempSync(join(tmpdir(), dirPrefix));
  const config = benchConfig({
    MESH_PLUGINS: "workspaces,customers,analytics,gateway",
    DATA_DIR: dataDir,
    MONGODB_DB_PREFIX: `bench${newId("", 6).slice(1).toLowerCase()}`,
  });
  const host = await startHost(config, { logger: createLogger("bench", config.logLevel) });
  const mongo = new MongoClient(host.mongodbUri!, { retryWrites: false });
  await mongo.connect();
  return { dataDir, config, host, mongo };
}
