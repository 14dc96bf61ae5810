/**
 * Entry point of every process of the mesh: `npm start` runs all plugins here; a pod runs
 * the ones MESH_PLUGINS names. Exit codes: 0 after a clean stop, 2 for bad configuration,
 * 1 when start fails otherwise. SIGTERM/SIGINT drain and stop within SHUTDOWN_TIMEOUT_MS.
 */
import { ConfigError, loadConfig, type MeshConfig } from "./config.js";
import { startHost, type Host } from "./host.js";
import { createLogger } from "./logger.js";
import { startTelemetry } from "./telemetry.js";

function fatal(message: string, code: number): never {
  process.stderr.write(`linquid: ${message}\n`);
  process.exit(code);
}

let config: MeshConfig;
try {
  config = loadConfig(process.env);
} catch (err) {
  fatal(err instanceof ConfigError ? `configuration error: ${err.message}` : String(err), 2);
}

const telemetry = startTelemetry({ serviceName: `linquid-${config.plugins.length === 1 ? config.plugins[0] : "mesh"}`, otlpEndpoint: config.otlpEndpoint, sampleRatio: config.traceSampleRatio });
const logger = createLogger("mesh", config.logLevel);

let host: Host;
try {
  host = await startHost(config, { logger });
} catch (err) {
  await telemetry.shutdown().catch(() => undefined);
  if (err instanceof ConfigError) fatal(`configuration error: ${err.message}`, 2);
  fatal(`start failed: ${(err as Error).message}`, 1);
}
logger.info("mesh started", { plugins: config.plugins, grpc: host.grpcUrl, gateway: host.gatewayUrl, metrics: host.metricsUrl });

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info("stopping", { signal });
  // A hard deadline: whatever hangs, the process is gone within the budget Kubernetes gives it.
  setTimeout(() => {
    logger.error("stop timed out; exiting");
    process.exit(1);
  }, config.shutdownTimeoutMs + 1500).unref();
  await host.stop();
  await telemetry.shutdown().catch(() => undefined);
  logger.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
