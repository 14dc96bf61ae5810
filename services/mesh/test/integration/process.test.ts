/**
 * The mesh as an operator runs it: `node services/mesh/src/main.ts` in a child process.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@linquid/contracts";
import { afterAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { freePort } from "@linquid/mesh";

const node = process.execPath;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function runMain(env: Record<string, string>, command: string[] = [node, "--import", "tsx", "services/mesh/src/main.ts"]) {
  const child = spawn(command[0]!, command.slice(1), {
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, exited, stderr: () => stderr };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("mesh process", () => {
  it.each([
    ["MONGODB_URI", "nonsense"],
    ["GRPC_PORT", "eighty"],
    ["MESH_PLUGINS", "customers,billing"],
    ["REDIS_URL", "http://localhost:6379"],
  ])("fails fast with one clear line when %s=%s", async (name, value) => {
    const run = runMain({ [name]: value });
    const code = await run.exited;
    expect(code).toBe(2);
    const lines = run.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^linquid: configuration error: ${name}: `));
    expect(run.stderr()).not.toMatch(/\n\s+at /);
  });

  it("fails fast when the database cannot be reached", async () => {
    const port = await freePort();
    const run = runMain({ MONGODB_URI: `mongodb://127.0.0.1:${port}/`, MESH_PLUGINS: "workspaces", REDIS_URL: "none", GRPC_PORT: "0", METRICS_PORT: "0" });
    expect(await run.exited).toBe(2);
    expect(run.stderr().trim().split("\n").at(-1)).toMatch(/^linquid: configuration error: MONGODB_URI: cannot reach the database/);
  });

  it("starts embedded FerretDB and redis-server under `npm start`, serves health, leaves nothing running after SIGTERM, and restarts on its data", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "linquid-proc-"));
    dirs.push(dataDir);
    // Port 0: a port picked here beforehand could be taken by then by a server of another test.
    const env = {
      DATA_DIR: dataDir,
      GRPC_PORT: "0",
      PORT: "0",
      METRICS_PORT: "0",
      FERRETDB_BIN: inject("ferretdbBin"),
      REDIS_SERVER_BIN: inject("redisServerBin"),
      LOG_LEVEL: "info",
    };
    for (const round of [1, 2]) {
      const run = runMain(env, ["npm", "start"]);
      const deadline = Date.now() + 30_000;
      while (!run.stderr().includes('"msg":"mesh started"')) {
        if (Date.now() > deadline || run.child.exitCode !== null) throw new Error(`mesh did not start (round ${round}): ${run.stderr()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const logs = run
        .stderr()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const childPids = logs.filter((l) => typeof l["pid"] === "number").map((l) => l["pid"] as number);
      expect(childPids).toHaveLength(2); // FerretDB and redis-server

      const grpcUrl = logs.find((l) => l["msg"] === "mesh started")?.["grpc"];
      expect(grpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const health = createClient(Health, createGrpcTransport({ baseUrl: grpcUrl as string }));
      const services = (await health.list({})).statuses;
      expect(Object.keys(services).sort()).toEqual(
        ["", "linquid.analytics.v1.AnalyticsService", "linquid.customers.v1.CustomersService", "linquid.workspaces.v1.IdempotencyService", "linquid.workspaces.v1.WorkspacesService"].sort(),
      );
      for (const s of Object.values(services)) expect(s.status).toBe(Status.SERVING);

      const started = Date.now();
      run.child.kill("SIGTERM"); // npm forwards it to the mesh
      await run.exited;
      for (let i = 0; i < 100 && childPids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
      expect(Date.now() - started).toBeLessThan(10_000);
      for (const pid of childPids) expect(alive(pid)).toBe(false);
      expect(run.stderr()).toContain('"msg":"stopped"');
    }
  });

  it("owns its embedded backends: they die with it on kill -9; a second start on its data directory refuses with one line; the next start takes over", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "linquid-own-"));
    dirs.push(dataDir);
    // Two plugins are enough to need both backends, and start faster than four (the others are never called).
    const env = { DATA_DIR: dataDir, MESH_PLUGINS: "workspaces,gateway", CUSTOMERS_ADDR: "http://127.0.0.1:1", ANALYTICS_ADDR: "http://127.0.0.1:1", GRPC_PORT: "0", PORT: "0", METRICS_PORT: "0", FERRETDB_BIN: inject("ferretdbBin"), REDIS_SERVER_BIN: inject("redisServerBin"), LOG_LEVEL: "info" };
    const started = async (run: ReturnType<typeof runMain>) => {
      const deadline = Date.now() + 30_000;
      while (!run.stderr().includes('"msg":"mesh started"')) {
        if (Date.now() > deadline || run.child.exitCode !== null) throw new Error(`mesh did not start: ${run.stderr()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return run.stderr().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => typeof l["pid"] === "number").map((l) => l["pid"] as number);
    };

    const first = runMain(env);
    const pids = await started(first);
    expect(pids).toHaveLength(2); // FerretDB and redis-server

    // A second mesh on the same data directory: one line, exit 2, and the first one's servers untouched.
    const second = runMain(env);
    expect(await second.exited).toBe(2);
    const lines = second.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^linquid: configuration error: DATA_DIR: .* is in use by process ${first.child.pid}`));
    for (const pid of pids) expect(alive(pid)).toBe(true);

    // kill -9: no chance to clean up, yet its servers follow it.
    const killedAt = Date.now();
    first.child.kill("SIGKILL");
    await first.exited;
    for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(Date.now() - killedAt).toBeLessThan(5000);

    // The lock it left names a dead owner: the next start takes the directory over, with its data.
    const third = runMain(env);
    const again = await started(third);
    expect(again).toHaveLength(2);
    third.child.kill("SIGTERM");
    await third.exited;
    for (let i = 0; i < 100 && again.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    for (const pid of again) expect(alive(pid)).toBe(false);
  });
});
