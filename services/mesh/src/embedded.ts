/**
 * Embedded backends for the default run and the tests: FerretDB v1 on SQLite (a real
 * MongoDB-wire server) and redis-server, each a child process on a free loopback port.
 * Stopping one waits for it to exit, so nothing is left behind.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";

/** A backend child process and how to reach it. */
export interface EmbeddedServer {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** A port nothing listens on right now. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr !== null ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, what: string, output: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited during start (${child.exitCode ?? child.signalCode}): ${output().trim().split("\n").slice(-3).join(" | ")}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const sock = createConnection({ port, host: "127.0.0.1" });
      sock.once("connect", () => { sock.destroy(); resolve(true); });
      sock.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startChild(what: string, bin: string, args: string[], port: number, cwd: string): Promise<EmbeddedServer & { child: ChildProcess }> {
  const child = spawn(bin, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  let output = "";
  child.stderr?.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  return new Promise((resolve, reject) => {
    child.once("error", (err) => reject(new Error(`${what}: cannot run ${bin}: ${err.message}`)));
    waitForPort(port, child, what, () => output).then(
      () => resolve({ url: "", pid: child.pid ?? 0, stop, child }),
      async (err: unknown) => {
        await stop();
        reject(err);
      },
    );
  });
}

/**
 * Starts FerretDB v1 with the SQLite backend, data under `dataDir`, telemetry off. SQLite runs
 * in WAL mode (FerretDB's default) with `synchronous=NORMAL`: a commit survives the process
 * crashing, and the last commits before an operating-system crash or power loss may be lost —
 * the usual trade for a development database, and a third less time per write.
 */
export async function startFerretDb(bin: string, dataDir: string, port?: number, extraArgs: string[] = []): Promise<EmbeddedServer> {
  if (!existsSync(bin)) throw new Error(`FerretDB binary not found at ${bin}: run \`npm run setup\`, or set MONGODB_URI`);
  const dir = join(dataDir, "ferretdb");
  mkdirSync(dir, { recursive: true });
  const p = port ?? (await freePort());
  const server = await startChild("FerretDB", bin, [
    "--handler=sqlite",
    `--sqlite-url=file:${dir}/?_pragma=synchronous(normal)`,
    `--listen-addr=127.0.0.1:${p}`,
    "--debug-addr=127.0.0.1:0",
    `--state-dir=${dir}`,
    "--telemetry=disable",
    "--log-level=warn",
    ...extraArgs,
  ], p, dir);
  return { url: `mongodb://127.0.0.1:${p}/`, pid: server.pid, stop: server.stop };
}

/** Starts a redis-server that keeps nothing on disk. */
export async function startRedisServer(bin: string, dataDir: string, port?: number): Promise<EmbeddedServer> {
  const dir = join(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  const p = port ?? (await freePort());
  const server = await startChild("redis-server", bin, [
    "--bind", "127.0.0.1", "--port", String(p), "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "",
  ], p, dir);
  return { url: `redis://127.0.0.1:${p}`, pid: server.pid, stop: server.stop };
}
