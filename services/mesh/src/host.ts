/**
 * The plugin host: runs any set of plugins in one process. All plugins in one process is
 * the embedded default and what the tests run; one plugin per pod is the Kubernetes layout.
 * Only configuration differs (MESH_PLUGINS, <NAME>_ADDR, MONGODB_URI, REDIS_URL).
 *
 * Start: backends (embedded FerretDB / redis-server when no URI is given) → plugins in
 * ALL_PLUGINS order → one HTTP/2 server speaking gRPC, gRPC-Web and Connect for every
 * service of this process, with grpc.health.v1. Stop runs the other way and waits.
 */
import { EventEmitter } from "node:events";
import type { SecureClientSessionOptions, ServerHttp2Session } from "node:http2";
import type { Server } from "node:net";
import { createClient, createContextValues, Code, ConnectError, type Client, type ConnectRouter, type Interceptor, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import { HealthCheckResponse_ServingStatus as Status, http } from "@linquid/contracts";
import type { Redis } from "ioredis";
import type { MongoClient } from "mongodb";
import { createAuthorizationInterceptor } from "./authorization.js";
import { ConfigError, type MeshConfig, type PluginName } from "./config.js";
import { watchCredentials } from "./credentials.js";
import { watchDatabase, withDatabaseWatch, type DatabaseWatch } from "./db-watch.js";
import { inheritDeadlines, withRpcDeadlines } from "./deadline.js";
import { withStreamCancellation } from "./streams.js";
import { DataDirInUseError, startFerretDb, startRedisServer, type EmbeddedServer } from "./embedded.js";
import { fromPeerError, isBrokenConnection } from "./errors.js";
import { createInProcessTransport } from "./in-process.js";
import { createGrpcListener } from "./grpc-listener.js";
import { createHealthRegistry } from "./health.js";
import { reflectionRoutes } from "./reflection.js";
import { createLogger, type Logger } from "./logger.js";
import { connectMongo, pluginDb } from "./mongo.js";
import { peerKey, peerOfRequest } from "./peer-identity.js";
import { pluginOfService, type Plugin, type PluginContext, type RunningPlugin } from "./plugin.js";
import { startMetricsServer } from "./metrics.js";
import { createRedis } from "./redis.js";
import { createRpcObserveInterceptor } from "./rpc-observe.js";
import { createClientTracingInterceptor, createServerTracingInterceptor } from "./rpc-tracing.js";

export interface Host {
  /** Base URL of this process's gRPC server; undefined when it serves no RPC service. */
  readonly grpcUrl: string | undefined;
  /** Base URL of the REST gateway when it runs here. */
  readonly gatewayUrl: string | undefined;
  /** Where the MongoDB of this process is (embedded or configured). */
  readonly mongodbUri: string | undefined;
  readonly redisUrl: string | undefined;
  /** Base URL of this process's metrics listener (text at `/metrics`); undefined when METRICS_PORT=off. */
  readonly metricsUrl: string | undefined;
  /** A client for any service, wired as a plugin's would be. */
  client<S extends DescService>(service: S): Client<S>;
  /** Stops plugins, servers, connections and child processes; safe to call twice. */
  stop(): Promise<void>;
}

export interface HostOptions {
  /** Plugins to run; default: import `@linquid/<name>` for each of config.plugins. */
  plugins?: readonly Plugin[];
  logger?: Logger;
}

/** Logs unexpected failures once, where they happen, with their cause. */
function createErrorLoggingInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.Internal || ce.code === Code.Unknown || ce.code === Code.Unavailable) {
        const cause = ce.cause instanceof Error ? { name: ce.cause.name, message: ce.cause.message } : undefined;
        logger.error("rpc failed", { rpc: `${req.service.typeName}/${req.method.name}`, code: Code[ce.code], message: ce.rawMessage, cause });
      }
      throw err;
    }
  };
}

/**
 * A method that changes nothing, so a call of it that got no answer may be sent again: declared
 * `idempotency_level = NO_SIDE_EFFECTS` or IDEMPOTENT, or mapped to an HTTP GET.
 */
export function isSafeMethod(method: DescMethod): boolean {
  if (method.idempotency === Idempotency.NO_SIDE_EFFECTS || method.idempotency === Idempotency.IDEMPOTENT) return true;
  return hasOption(method, http) && getOption(method, http).pattern.case === "get";
}

/**
 * Calls to a service in another process: a call that got no answer (the connection broke, was
 * refused or stopped answering PINGs: the peer crashed, restarted or hangs) fails with
 * Unavailable, never as an internal error; a safe unary call whose connection broke under it is
 * sent once more on a fresh connection (a restarted peer or another replica may answer). Only a
 * break that came quickly is retried: a connection torn down after its PING went unanswered
 * (the peer hangs) would hang the retry as long again.
 */
export function createPeerFailureInterceptor(peer: string): Interceptor {
  return (next) => async (req) => {
    const started = Date.now();
    try {
      return await next(req);
    } catch (err) {
      const aborted = req.signal.aborted;
      const quick = Date.now() - started < PEER_PING.pingTimeoutMs;
      if (req.stream || aborted || !quick || !isSafeMethod(req.method) || !isBrokenConnection(err, aborted)) throw fromPeerError(err, peer, aborted);
      try {
        return await next(req);
      } catch (again) {
        throw fromPeerError(again, peer, req.signal.aborted);
      }
    }
  };
}

/**
 * HTTP/2 keep-alive towards other services: while calls are open, a PING every second that must
 * be answered within a second, so a peer that hangs (stopped, wedged) fails its calls with
 * Unavailable within 2 s instead of at their deadline.
 */
export const PEER_PING = { pingIntervalMs: 1000, pingTimeoutMs: 1000 } as const;

/**
 * connect-node's session manager, with every session it opens holding an 'error' listener for
 * its whole life. A session whose PING timed out is destroyed with an error; when that happens
 * after the manager has let go of it (it replaced or verified the connection meanwhile), node
 * emits the error with no listener left, which ends the process: a hung peer would crash its
 * callers. The error still reaches the streams and the manager as before. (connect-node 2.2.0:
 * the sessions pass through the manager's `setState`.)
 */
class PeerSessionManager extends Http2SessionManager {}
{
  type State = { t: string; conn?: unknown };
  const base = (Http2SessionManager.prototype as unknown as { setState(this: unknown, s: State): void }).setState;
  (PeerSessionManager.prototype as unknown as { setState(this: unknown, s: State): void }).setState = function (this: unknown, state: State) {
    if (state.t === "ready" && state.conn instanceof EventEmitter && state.conn.listenerCount("error") < 10) state.conn.on("error", () => undefined);
    base.call(this, state);
  };
}

/**
 * The transport to a service in another process: gRPC with PINGs, peer failures translated;
 * `tls`: the session options that dial it with this process's certificate (credentials.ts).
 */
function createPeerTransport(peer: string, baseUrl: string, interceptors: Interceptor[], tls?: SecureClientSessionOptions): Transport {
  return createGrpcTransport({
    baseUrl,
    interceptors: [...interceptors, createPeerFailureInterceptor(peer)],
    defaultTimeoutMs: 15_000,
    sessionManager: new PeerSessionManager(baseUrl, PEER_PING, tls),
  });
}

/** A transport that builds the real one on first use, so plugins may depend on each other in any order. */
function lazyTransport(make: () => Transport): Transport {
  let t: Transport | undefined;
  const get = () => (t ??= make());
  return {
    unary: (...args) => get().unary(...args),
    stream: (...args) => get().stream(...args),
  };
}

async function loadPlugins(names: readonly PluginName[]): Promise<Plugin[]> {
  const out: Plugin[] = [];
  for (const name of names) {
    const mod = (await import(`@linquid/${name}`)) as { default?: Plugin };
    if (mod.default?.name !== name) throw new Error(`@linquid/${name} has no default-exported plugin named "${name}"`);
    out.push(mod.default);
  }
  return out;
}

/** Starts the plugins of `config` and everything they need. On failure, stops what started and throws. */
export async function startHost(config: MeshConfig, options: HostOptions = {}): Promise<Host> {
  const logger = options.logger ?? createLogger("mesh", config.logLevel);
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn("error during stop", { error: err });
      }
    }
  };

  try {
    // The gRPC port's and peer calls' certificate, when configured; checked before anything starts.
    const credentials = config.tls === undefined ? undefined : watchCredentials(config.tls, logger.child("tls"));
    if (credentials !== undefined) cleanups.push(async () => credentials.stop());
    const plugins = options.plugins ?? (await loadPlugins(config.plugins));
    const local = new Set<string>(plugins.map((p) => p.name));

    // Backends.
    let mongo: MongoClient | undefined;
    let dbWatch: DatabaseWatch | undefined;
    let mongodbUri = config.mongodbUri;
    if (plugins.some((p) => p.needs.mongo)) {
      if (mongodbUri === undefined) {
        let ferret: EmbeddedServer;
        try {
          ferret = await startFerretDb(config.ferretdbBin, config.dataDir);
        } catch (err) {
          if (err instanceof DataDirInUseError) throw new ConfigError(`DATA_DIR: ${err.message}`);
          throw err;
        }
        cleanups.push(() => ferret.stop());
        mongodbUri = ferret.url;
        logger.info("embedded FerretDB started", { url: ferret.url, pid: ferret.pid });
      }
      try {
        mongo = await connectMongo(mongodbUri);
      } catch (err) {
        throw new ConfigError(`MONGODB_URI: cannot reach the database (${(err as Error).message})`);
      }
      const client = mongo;
      cleanups.push(() => client.close());
      const w = watchDatabase(mongodbUri, { logger: logger.child("db-watch") });
      dbWatch = w;
      cleanups.push(() => w.stop());
    }
    let redis: Redis | undefined;
    let redisUrl = config.redisUrl;
    if (plugins.some((p) => p.needs.redis) && !config.redisDisabled) {
      if (redisUrl === undefined) {
        try {
          const server = await startRedisServer(config.redisServerBin, config.dataDir);
          cleanups.push(() => server.stop());
          redisUrl = server.url;
          logger.info("embedded redis-server started", { url: server.url, pid: server.pid });
        } catch (err) {
          logger.warn("no Redis: running uncached with per-process rate limits", { error: (err as Error).message });
        }
      }
      if (redisUrl !== undefined) {
        const client = createRedis(redisUrl, logger.child("redis"));
        redis = client;
        cleanups.push(async () => {
          client.disconnect();
        });
      }
    }

    // RPC wiring.
    const clientInterceptors = [createClientTracingInterceptor()];
    // Access lines and metrics inside the tracing one, so that they carry the RPC's span.
    const serverInterceptors = [createServerTracingInterceptor(), createRpcObserveInterceptor(logger.child("rpc")), createErrorLoggingInterceptor(logger.child("rpc"))];
    const running: RunningPlugin[] = [];
    const registrations: Array<(router: ConnectRouter) => void> = [];
    // Every handler runs in the deadline scope of its call (deadline.ts); those of plugins with
    // a database fail fast while it does not answer (db-watch.ts).
    const allRoutes = (router: ConnectRouter) => {
      // Streaming handlers also stop when their call is cancelled (streams.ts).
      const scoped = withRpcDeadlines(withStreamCancellation(router));
      for (const register of registrations) register(scoped);
    };
    const inProcess = inheritDeadlines(
      lazyTransport(() => createInProcessTransport(allRoutes, { clientInterceptors, serverInterceptors })),
    );
    const remote = new Map<string, Transport>();
    const transportFor = (service: DescService): Transport => {
      const owner = pluginOfService(service);
      if (local.has(owner)) return inProcess;
      let t = remote.get(owner);
      if (t === undefined) {
        const baseUrl = config.serviceAddrs[owner as PluginName];
        if (baseUrl === undefined) {
          throw new ConfigError(`${owner.toUpperCase()}_ADDR: required, the ${owner} plugin does not run in this process`);
        }
        t = inheritDeadlines(createPeerTransport(owner, baseUrl, clientInterceptors, credentials?.clientSessionOptions()));
        remote.set(owner, t);
      }
      return t;
    };
    const client = <S extends DescService>(service: S): Client<S> => createClient(service, transportFor(service));

    // Plugins.
    const health = createHealthRegistry();
    let gatewayUrl: string | undefined;
    for (const plugin of plugins) {
      const ctx: PluginContext = {
        config,
        logger: logger.child(plugin.name),
        get db() {
          if (mongo === undefined || !plugin.needs.mongo) throw new Error(`plugin ${plugin.name} did not declare needs.mongo`);
          return pluginDb(mongo, config.mongodbDbPrefix, plugin.name);
        },
        redis: plugin.needs.redis ? redis : undefined,
        client,
      };
      const r = await plugin.start(ctx);
      running.push(r);
      const routes = r.routes;
      const watch = plugin.needs.mongo === true ? dbWatch : undefined;
      if (routes !== undefined) registrations.push(watch === undefined ? routes : (router) => routes(withDatabaseWatch(router, watch)));
      cleanups.push(() => r.stop());
      if (r.url !== undefined) gatewayUrl = r.url;
    }

    // gRPC server for the services of this process.
    let grpcUrl: string | undefined;
    const services = running.flatMap((r) => r.services ?? []);
    if (services.length > 0) {
      // With a credential, the port takes mutual TLS and checks each caller against the
      // contracts' access policies (authorization.ts); calls within this process are not checked.
      const server: Server = createGrpcListener(
        connectNodeAdapter({
          routes: (router) => {
            allRoutes(router);
            health.routes(router);
            reflectionRoutes(router, services);
          },
          interceptors: credentials === undefined ? serverInterceptors : [...serverInterceptors, createAuthorizationInterceptor(logger.child("auth"))],
          ...(credentials === undefined ? {} : { contextValues: (req) => createContextValues().set(peerKey, peerOfRequest(req)) }),
        }),
        credentials,
      );
      const sessions = new Set<ServerHttp2Session>();
      server.on("session", (s) => {
        sessions.add(s);
        s.once("close", () => sessions.delete(s));
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", (err) => reject(new ConfigError(`GRPC_PORT: cannot listen on ${config.bindHost}:${config.grpcPort} (${err.message})`)));
        server.listen(config.grpcPort, config.bindHost, () => resolve());
      });
      const addr = server.address();
      grpcUrl = `${credentials === undefined ? "http" : "https"}://${config.bindHost}:${typeof addr === "object" && addr !== null ? addr.port : config.grpcPort}`;
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            for (const s of services) health.set(s.typeName, Status.NOT_SERVING);
            health.set("", Status.NOT_SERVING);
            server.close(() => resolve());
            for (const s of sessions) s.close();
            setTimeout(() => {
              for (const s of sessions) s.destroy();
            }, config.shutdownTimeoutMs).unref();
          }),
      );
      for (const s of services) health.set(s.typeName, Status.SERVING);
      health.set("", Status.SERVING);
      logger.info("serving gRPC", { url: grpcUrl, services: services.map((s) => s.typeName), mutualTls: credentials === undefined ? "off" : credentials.current().identity });
    }

    let metricsUrl: string | undefined;
    if (config.metricsPort !== undefined) {
      const metrics = await startMetricsServer(config.metricsPort, config.bindHost).catch((err: Error) => {
        throw new ConfigError(`METRICS_PORT: cannot listen on ${config.bindHost}:${config.metricsPort} (${err.message})`);
      });
      cleanups.push(() => metrics.stop());
      metricsUrl = metrics.url;
      logger.info("serving metrics", { url: `${metricsUrl}/metrics` });
    }

    let stopping: Promise<void> | undefined;
    return {
      grpcUrl,
      gatewayUrl,
      mongodbUri,
      redisUrl,
      metricsUrl,
      client,
      stop: () => (stopping ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
