/**
 * vitest global setup of the integration tier: one FerretDB (unless MONGODB_URI points at a
 * MongoDB) and one redis-server on free loopback ports, for the whole run. Test files keep
 * apart by database prefix and workspace, never by mocking.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { TestProject } from "vitest/node";
import { startFerretDb, startRedisServer, type EmbeddedServer } from "../embedded.js";

declare module "vitest" {
  export interface ProvidedContext {
    mongodbUri: string;
    redisUrl: string;
    ferretdbBin: string;
    redisServerBin: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = mkdtempSync(join(tmpdir(), "linquid-test-"));
  const servers: EmbeddedServer[] = [];
  const ferretdbBin = resolve(process.env["FERRETDB_BIN"] ?? ".bin/ferretdb");
  const redisServerBin = process.env["REDIS_SERVER_BIN"] ?? "redis-server";
  let mongodbUri = process.env["MONGODB_URI"];
  if (mongodbUri === undefined || mongodbUri === "") {
    const ferret = await startFerretDb(ferretdbBin, dataDir);
    servers.push(ferret);
    mongodbUri = ferret.url;
  }
  const redis = await startRedisServer(redisServerBin, dataDir);
  servers.push(redis);
  project.provide("mongodbUri", mongodbUri);
  project.provide("redisUrl", redis.url);
  project.provide("ferretdbBin", ferretdbBin);
  project.provide("redisServerBin", redisServerBin);
  return async () => {
    for (const s of servers.reverse()) await s.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
}
