/**
 * Structured logs: one JSON object per line on stderr. Never log PII (emails, names,
 * external ids, metadata) or API keys; log ids (customer, workspace, request) instead.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

function errorFields(value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}

/** Creates a logger writing lines at or above `level`. */
export function createLogger(component: string, level: LogLevel = "info", write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const log = (lvl: LogLevel) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (rank[lvl] < rank[level]) return;
    const out: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, component, msg };
    for (const [k, v] of Object.entries(fields)) out[k] = errorFields(v);
    write(JSON.stringify(out) + "\n");
  };
  return {
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    child: (sub) => createLogger(`${component}.${sub}`, level, write),
  };
}
