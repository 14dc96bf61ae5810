/**
 * Structured logs: one JSON object per line on stderr, written by pino — `time` (ISO),
 * `level`, `component`, `msg`, the fields, and `traceId`/`spanId` of the span active where the
 * line is written (so a line joins its request's trace). LOG_LEVEL picks the lowest level
 * written; a level below it costs a no-op call.
 *
 * Never log PII (emails, names, external ids, metadata) or API keys and tokens; log ids
 * (customer, workspace, request, key id) instead. As a second line of defence, top-level
 * fields under those names are censored whatever a caller passes.
 */
import { isMainThread } from "node:worker_threads";
import { trace } from "@opentelemetry/api";
import { pino, type DestinationStream, type Logger as Pino } from "pino";

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger for a part of this one: `component` becomes `<component>.<sub>`. */
  child(component: string): Logger;
}

/** Field names that never reach a log line with their value. */
const CENSORED = ["email", "name", "externalId", "metadata", "key", "apiKey", "keyHash", "authorization", "x-api-key", "token", "password", "secret"];

function errorFields(value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}

/** The ids of the active span, when there is a real one. */
function traceIds(): { traceId?: string; spanId?: string } {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const sc = span.spanContext();
  return trace.isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : {};
}

/**
 * One stderr stream per process, shared by every logger, so lines of different loggers never
 * interleave mid-line. Asynchronous (lines written while a write is pending are coalesced into
 * the next one; flushed at exit) on the main thread; synchronous in worker threads, where no
 * exit hook can flush.
 */
let stderr: DestinationStream | undefined;
function stderrStream(): DestinationStream {
  return (stderr ??= pino.destination({ dest: 2, sync: !isMainThread }));
}

function root(level: LogLevel, write: ((line: string) => void) | undefined): Pino {
  return pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: traceIds,
      redact: { paths: CENSORED.map((k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`)), censor: "[censored]" },
    },
    write === undefined ? stderrStream() : { write },
  );
}

function wrap(p: Pino, component: string, base: Pino): Logger {
  const at = (lvl: LogLevel) => {
    if (!p.isLevelEnabled(lvl)) return () => undefined;
    return (msg: string, fields?: Record<string, unknown>) => {
      if (fields === undefined) return p[lvl](msg);
      const out: Record<string, unknown> = {};
      for (const k in fields) out[k] = errorFields(fields[k]);
      p[lvl](out, msg);
    };
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (sub) => {
      const name = `${component}.${sub}`;
      return wrap(base.child({ component: name }), name, base);
    },
  };
}

/**
 * Creates a logger writing lines at or above `level` to stderr, or to `write` (one call per
 * line, synchronously: tests capture lines this way).
 */
export function createLogger(component: string, level: LogLevel = "info", write?: (line: string) => void): Logger {
  const base = root(level, write);
  return wrap(base.child({ component }), component, base);
}
