/**
 * RED metrics of the process, in one prom-client registry, served as Prometheus/OpenMetrics
 * text on a port of their own (METRICS_PORT, default 9464; 0 = any free port; "off" = none),
 * apart from the REST and gRPC ports so that a NetworkPolicy can open it to the scraper alone.
 *
 * prom-client rather than the OpenTelemetry metrics SDK: Prometheus is what scrapes us, and
 * prom-client brings the standard process and Node.js runtime metrics (CPU, memory, event loop
 * lag, GC) and exemplars, which the OpenTelemetry JS SDK has neither of; its counters and
 * histograms are plain objects updated in place (a label hash and an add), cheap enough for
 * every request and RPC.
 *
 * Labels are bounded sets only: route templates (never raw paths), RPC and command names from
 * the code, status and error codes. Never workspace ids, keys or anything a caller sent.
 * The registry is the process's: several meshes in one process (tests) share it.
 */
import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Counter, Histogram, Registry, type OpenMetricsContentType } from "prom-client";

/**
 * OpenMetrics, so that the request duration histogram can carry exemplars (the trace id of a
 * request that fell in a bucket): a latency spike on a dashboard leads to its traces and logs.
 */
export const registry = new Registry<OpenMetricsContentType>();
registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);

/** Seconds; from a cached read (~1 ms) to the 15 s deadline of a call. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15];
/** Seconds; database and Redis commands. */
const COMMAND_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const registers = [registry];

/** REST answers by route template ("unmatched" when no route matched), method, HTTP status and error code ("" on success). */
export const httpRequests = new Counter({
  name: "linquid_http_requests_total",
  help: "REST requests answered by the gateway, by route template, method, status and error code.",
  labelNames: ["route", "method", "status", "code"] as const,
  registers,
});

/** Time to the answer (its first byte for streamed answers), by route template and method. */
export const httpDuration = new Histogram({
  name: "linquid_http_request_duration_seconds",
  help: "Time from a REST request's arrival to its answer (first byte of streamed answers), by route template and method.",
  labelNames: ["route", "method"] as const,
  buckets: LATENCY_BUCKETS,
  enableExemplars: true,
  registers,
});

/** RPCs served, in-process or over gRPC, by service, method and gRPC code. */
export const rpcHandled = new Counter({
  name: "linquid_rpc_server_handled_total",
  help: "RPCs served (in-process and over gRPC), by service, method and gRPC status code.",
  labelNames: ["service", "method", "code"] as const,
  registers,
});

export const rpcDuration = new Histogram({
  name: "linquid_rpc_server_duration_seconds",
  help: "Time an RPC took to serve (to its last message for streams), by service and method.",
  labelNames: ["service", "method"] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const mongoDuration = new Histogram({
  name: "linquid_mongodb_operation_duration_seconds",
  help: "MongoDB operations (each dbCall: one driver call, with its cursor's batches), by collection, operation and outcome (ok, duplicate, timeout, unavailable, error).",
  labelNames: ["collection", "operation", "outcome"] as const,
  buckets: COMMAND_BUCKETS,
  registers,
});

export const redisDuration = new Histogram({
  name: "linquid_redis_command_duration_seconds",
  help: "Redis call durations, by command and outcome (ok, error).",
  labelNames: ["command", "outcome"] as const,
  buckets: COMMAND_BUCKETS,
  registers,
});

export const cacheLookups = new Counter({
  name: "linquid_snapshot_cache_lookups_total",
  help: "Snapshot cache lookups of cacheable REST reads, by route template and result (hit, miss).",
  labelNames: ["route", "result"] as const,
  registers,
});

export const rateLimitRefusals = new Counter({
  name: "linquid_rate_limit_refusals_total",
  help: "REST requests refused with 429 RATE_LIMITED, by route template.",
  labelNames: ["route"] as const,
  registers,
});

export const eventsIngested = new Counter({
  name: "linquid_events_ingested_total",
  help: "Tracked events by type (click, lead, sale) and outcome (stored, duplicate, rejected).",
  labelNames: ["type", "outcome"] as const,
  registers,
});

let defaultsOn = false;
/** Process and runtime metrics (process_*, nodejs_*), once per process. */
function collectDefaults(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: registry });
}

/** Seconds since `startMs` (a performance.now() reading). */
export function secondsSince(startMs: number): number {
  return (performance.now() - startMs) / 1000;
}

export interface MetricsServer {
  /** `http://host:port`; the text is at `${url}/metrics`. */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Serves the registry at `/metrics` on `host:port` (port 0 = any free port). Rejects when
 * the port cannot be bound.
 */
export async function startMetricsServer(port: number, host: string): Promise<MetricsServer> {
  collectDefaults();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("metrics are at GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? undefined : text),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
  // A scraper keeps its connection; idle ones must not hold a stop.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const actual = typeof addr === "object" && addr !== null ? addr.port : port;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${actual}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
