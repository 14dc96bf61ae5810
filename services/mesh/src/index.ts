/** The runtime every plugin shares. */
export { serviceAddress, type ServiceName } from "./addresses.js";
export { ALL_PLUGINS, ConfigError, loadConfig, type MeshConfig, type Plan, type PluginName } from "./config.js";
export { pauseBeforeRetry } from "./contention.js";
export { DEFAULT_TIMEOUT_MS, dbTimeout, inheritDeadlines, inheritedTimeoutMs, remainingMs, runDetached, runWithDeadline, withRpcDeadlines } from "./deadline.js";
export { fromMongoError, fromPeerError, isBrokenConnection, isDuplicateKeyError, isPeerUnreachable, isTimeLimitError, isUnavailable, isUnreachableError, unavailable } from "./errors.js";
export { watchDatabase, withDatabaseWatch, type DatabaseWatch, type DatabaseWatchOptions } from "./db-watch.js";
export { DataDirInUseError, freePort, startFerretDb, startRedisServer, type EmbeddedServer } from "./embedded.js";
export { createPeerFailureInterceptor, isSafeMethod, startHost, type Host, type HostOptions } from "./host.js";
export { newId, seededRandom } from "./ids.js";
export { createLogger, type Logger, type LogLevel } from "./logger.js";
export { connectMongo, dbCall, dbStream, ensureIndexes, insertIfAbsent, insertManyNew, pluginDb, type DbOptions } from "./mongo.js";
export { pluginOfService, type Plugin, type PluginContext, type RunningPlugin } from "./plugin.js";
export { createRedis, redisCall, redisReady } from "./redis.js";
export { createClientTracingInterceptor, createServerTracingInterceptor } from "./rpc-tracing.js";
export { startTelemetry, type Telemetry, type TelemetryOptions } from "./telemetry.js";
export { badRequest, invalidArgument, violationsIn, violationsOf, Violations, type FieldViolation } from "./validation.js";
