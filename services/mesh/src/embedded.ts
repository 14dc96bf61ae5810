/**
 * Embedded backends for the default run and the tests: FerretDB v1 on SQLite (a real
 * MongoDB-wire server) and redis-server, each a child process on a free loopback port.
 *
 * The host owns its children:
 * - Each runs under a small supervisor (a POSIX shell script, `SUPERVISOR` below) whose stdin
 *   is a pipe from the host. When the host goes away in any way — a clean exit, a crash,
 *   `kill -9` — the kernel closes that pipe, and the supervisor stops the server (SIGTERM,
 *   SIGKILL 5 s later). So no server outlives its host, and stopping one waits for it to exit.
 * - FerretDB's data directory carries a lock file naming its owner (the host's pid and the
 *   server's, with their start times so a reused pid is not mistaken for the owner). A start
 *   that finds a live owner refuses with `DataDirInUseError`, one line naming it; a dead
 *   owner's lock is taken over once its server is gone, never while it still runs. So two
 *   servers never write one data directory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A backend child process and how to reach it. */
export interface EmbeddedServer {
  readonly url: string;
  /** The server's own pid (not its supervisor's): what to signal to stop, pause or kill it. */
  readonly pid: number;
  stop(): Promise<void>;
}

/** The data directory belongs to another live process. The message is one line naming it. */
export class DataDirInUseError extends Error {
  override name = "DataDirInUseError";
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
    await sleep(50);
  }
}

/**
 * Runs "$@" as its child and stops it when its own stdin reaches EOF, i.e. when the host that
 * holds the other end of the pipe is gone. Prints the child's pid first; the child's stdout goes
 * to stderr. SIGTERM/SIGINT/SIGHUP are passed on. Exits with the child's status.
 */
const SUPERVISOR = `
exec 3<&0 </dev/null
"$@" 3<&- >&2 &
child=$!
echo "$child"
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
(
  while read -r _ <&3; do :; done
  kill -TERM "$child" 2>/dev/null
  sleep 5
  kill -KILL "$child" 2>/dev/null
) &
watcher=$!
exec 3<&-
rc=0
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  rc=$?
done
kill "$watcher" 2>/dev/null
exit "$rc"
`;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The start time of a process, where the system tells it (Linux: /proc); undefined elsewhere. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may itself hold spaces and parentheses; starttime is field 22.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** True when `pid` runs and is the process that was recorded (same start time, where known). */
function isSameProcess(pid: number | undefined, start: string | undefined): boolean {
  if (pid === undefined || !isAlive(pid)) return false;
  const now = startTimeOf(pid);
  return start === undefined || now === undefined || now === start;
}

interface LockOwner {
  readonly pid: number;
  readonly pidStart?: string;
  readonly serverPid?: number;
  readonly serverStart?: string;
  readonly since: string;
}

interface DirLock {
  /** Records the server started under the lock, so a successor waits for it. */
  setServer(pid: number): void;
  release(): void;
}

const LOCK_FILE = "linquid.lock";

function readOwner(path: string): { raw: string; owner: LockOwner | undefined } | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch {
    return undefined; // gone meanwhile
  }
  try {
    return { raw, owner: JSON.parse(raw) as LockOwner };
  } catch {
    return { raw, owner: undefined };
  }
}

function writeAtomically(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

/**
 * Takes the lock of `dir` for this process (see the module comment). `serverWaitMs`: how long
 * to wait for a dead owner's server to exit (its supervisor is stopping it).
 */
async function lockDir(dir: string, what: string, serverWaitMs = 10_000): Promise<DirLock> {
  const path = join(dir, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, ...optional("pidStart", startTimeOf(process.pid)), since: new Date().toISOString() };
  let content = JSON.stringify(me);
  const lock: DirLock = {
    setServer(pid) {
      content = JSON.stringify({ ...me, serverPid: pid, ...optional("serverStart", startTimeOf(pid)) });
      writeAtomically(path, content);
    },
    release() {
      if (readOwner(path)?.raw === content) unlinkSync(path);
    },
  };
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      writeFileSync(path, content, { flag: "wx" });
      return lock;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const found = readOwner(path);
    if (found === undefined) continue;
    const { raw, owner } = found;
    if (owner === undefined) {
      // Half written by a starting owner, or garbage: wait for the writer, then treat as stale.
      if (Date.now() - mtimeOf(path) < 2000) {
        await sleep(100);
        continue;
      }
    } else {
      if (owner.pid !== process.pid && isSameProcess(owner.pid, owner.pidStart)) {
        throw new DataDirInUseError(`${dir} is in use by process ${owner.pid} (since ${owner.since}); stop it, or set DATA_DIR to another directory`);
      }
      const deadline = Date.now() + serverWaitMs;
      while (isSameProcess(owner.serverPid, owner.serverStart) && Date.now() < deadline) await sleep(100);
      if (isSameProcess(owner.serverPid, owner.serverStart)) {
        throw new DataDirInUseError(`${dir} is in use by ${what} process ${owner.serverPid}, left running by process ${owner.pid}; stop it, or set DATA_DIR to another directory`);
      }
    }
    await takeOver(path, raw);
  }
  throw new DataDirInUseError(`${dir}: could not take its lock file ${LOCK_FILE}`);
}

function mtimeOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Removes a stale lock, unless another starter replaced it meanwhile; one starter at a time. */
async function takeOver(path: string, staleRaw: string): Promise<void> {
  const guard = `${path}.takeover`;
  try {
    writeFileSync(guard, String(process.pid), { flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    // Another starter is taking over; a guard left by one that died is cleared after a while.
    if (Date.now() - mtimeOf(guard) > 5000) unlinkSync(guard);
    await sleep(50);
    return;
  }
  try {
    if (readOwner(path)?.raw === staleRaw) unlinkSync(path);
  } finally {
    unlinkSync(guard);
  }
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

/** Starts `bin` under the supervisor and waits until it listens on `port`. */
async function startChild(what: string, bin: string, args: string[], port: number, cwd: string, env: Record<string, string> = {}): Promise<EmbeddedServer> {
  const child = spawn("/bin/sh", ["-c", SUPERVISOR, "linquid-supervise", bin, ...args], { cwd, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stderr!.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  });
  // The pipe is never written: its only message is its end, when this process goes away.
  child.stdin!.on("error", () => undefined);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const serverPid = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.once("error", (err) => reject(new Error(`${what}: cannot run ${bin}: ${err.message}`)));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n")[0]!;
      if (out.includes("\n")) resolve(Number(line));
    });
    void exited.then(() => reject(new Error(`${what} exited during start: ${output.trim().split("\n").slice(-3).join(" | ")}`)));
  });
  child.stdout!.resume();
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin!.end();
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      try {
        process.kill(serverPid, "SIGKILL");
      } catch {
        // gone already
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForPort(port, child, what, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: "", pid: serverPid, stop };
}

/**
 * Starts FerretDB v1 with the SQLite backend, data under `dataDir`, telemetry off. SQLite runs
 * in WAL mode (FerretDB's default) with `synchronous=NORMAL`: a commit survives the process
 * crashing, and the last commits before an operating-system crash or power loss may be lost —
 * the usual trade for a development database, and a third less time per write.
 * Throws DataDirInUseError when another live process owns `dataDir`'s FerretDB directory.
 */
/**
 * The embedded FerretDB's garbage-collection target. Its heap is small (tens of MB) and every
 * document it reads or writes is decoded into short-lived objects, so Go's default (100) spent
 * about a sixth of its CPU collecting under ingestion; 400 trades a few tens of MB for about 9 %
 * more TrackBatch events/s (1,044–1,084 → 1,158–1,169 on one 10,000-event load). GOGC in the
 * environment overrides it.
 */
const FERRETDB_GOGC = "400";

export async function startFerretDb(bin: string, dataDir: string, port?: number, extraArgs: string[] = []): Promise<EmbeddedServer> {
  if (!existsSync(bin)) throw new Error(`FerretDB binary not found at ${bin}: run \`npm run setup\`, or set MONGODB_URI`);
  const dir = join(dataDir, "ferretdb");
  mkdirSync(dir, { recursive: true });
  const lock = await lockDir(dir, "FerretDB");
  try {
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
    ], p, dir, { GOGC: process.env["GOGC"] ?? FERRETDB_GOGC });
    lock.setServer(server.pid);
    return {
      url: `mongodb://127.0.0.1:${p}/`,
      pid: server.pid,
      stop: async () => {
        await server.stop();
        lock.release();
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
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
