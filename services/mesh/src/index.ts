/** The runtime every plugin shares. */
export { ALL_PLUGINS, ConfigError, loadConfig, type MeshConfig, type Plan, type PluginName } from "./config.js";
export { pauseBeforeRetry } from "./contention.js";
export { DEFAULT_TIMEOUT_MS, dbTimeout, inheritDeadlines, inheritedTimeoutMs, remainingMs, runDetached, runWithDeadline, withRpcDeadlines } from "./deadline.js";
export { fromMongoError, isDuplicateKeyError, isTimeLimitError, isUnreachableError } from "./errors.js";
export { freePort, startFerretDb, startRedisServer, type EmbeddedServer } from "./embedded.js";
export { startHost, type Host, type HostOptions } from "./host.js";
export { newId } from "./ids.js";
export { createLogger, type Logger, type LogLevel } from "./logger.js";
export { connectMongo, dbCall, dbStream, ensureIndexes, insertIfAbsent, insertManyNew, pluginDb, type DbOptions } from "./mongo.js";
export { pluginOfService, type Plugin, type PluginContext, type RunningPlugin } from "./plugin.js";
export { createRedis, redisCall, redisReady } from "./redis.js";
export { createClientTracingInterceptor, createServerTracingInterceptor } from "./rpc-tracing.js";
export { startTelemetry, type Telemetry, type TelemetryOptions } from "./telemetry.js";
export { badRequest, invalidArgument, violationsIn, violationsOf, Violations, type FieldViolation } from "./validation.js";
