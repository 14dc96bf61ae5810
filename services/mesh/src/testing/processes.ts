/**
 * Mesh processes for tests and test tools (the fault-injection suite, `npm run chaos`):
 * `node services/mesh/src/main.ts` in a child process, as a pod runs it. Nothing here depends
 * on vitest, so scripts can use it too.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { createClientTracingInterceptor } from "../rpc-tracing.js";

/** A mesh running in a child process, as a replica in another pod runs. */
export interface MeshProcess {
  readonly pid: number;
  /** Base URL of its gRPC server (undefined when it serves no RPC service). */
  readonly grpcUrl: string;
  /** Base URL of its REST gateway, when it runs one. */
  readonly gatewayUrl: string | undefined;
  /** A client over real gRPC (HTTP/2) to it. */
  grpcClient<S extends DescService>(service: S): Client<S>;
  /** What it logged so far (JSON lines), for failure messages. */
  log(): string;
  /** Sends a signal (SIGKILL to crash it, SIGSTOP/SIGCONT to hang and resume it). */
  signal(signal: NodeJS.Signals): void;
  /** Resolves with its exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/**
 * Starts a mesh process with `env` (on top of PATH, HOME, ports 0, info logs, a 2 s shutdown)
 * and waits for its "mesh started" line.
 */
export async function spawnMesh(env: Record<string, string>): Promise<MeshProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
    env: {
      PATH: process.env["PATH"] ?? "",
      HOME: process.env["HOME"] ?? "/tmp",
      GRPC_PORT: "0",
      PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: "info",
      SHUTDOWN_TIMEOUT_MS: "2000",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  let up = false;
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const started = await new Promise<{ grpc: string; gateway?: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh process did not start within 30 s: ${log}`)), 30_000);
    child.stderr!.on("data", (d: Buffer) => {
      // The last 200 kB are kept once it runs (a long run logs a lot).
      log = up ? (log + d.toString()).slice(-200_000) : log + d.toString();
      if (up) return;
      // Whole lines only: a chunk may end inside one.
      const line = log.split("\n").slice(0, -1).find((l) => l.includes('"msg":"mesh started"'));
      if (line === undefined) return;
      up = true;
      clearTimeout(timer);
      resolve(JSON.parse(line) as { grpc: string; gateway?: string });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`mesh process exited with ${code}: ${log}`));
    });
  });
  return {
    pid: child.pid!,
    grpcUrl: started.grpc,
    gatewayUrl: started.gateway,
    grpcClient(service) {
      return createClient(service, createGrpcTransport({ baseUrl: started.grpc, interceptors: [createClientTracingInterceptor()] }));
    },
    log: () => log,
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGCONT"); // a stopped process would not see the SIGTERM
        child.kill("SIGTERM");
      }
      await exited;
    },
  };
}
