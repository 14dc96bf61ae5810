/**
 * The `start`/`end` query parameters: ISO dates ("2026-04-01") or date-times
 * ("2026-04-01T10:00:00Z"), inclusive. A date as `end` means the whole day.
 */
import type { Violations } from "@linquid/mesh";

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})$/;

/** Milliseconds of an ISO date or date-time, or undefined when malformed. */
export function parseIsoBound(value: string, side: "start" | "end"): number | undefined {
  const d = DATE.exec(value);
  if (d !== null) {
    const ms = Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3]));
    const back = new Date(ms);
    if (back.getUTCFullYear() !== Number(d[1]) || back.getUTCMonth() !== Number(d[2]) - 1 || back.getUTCDate() !== Number(d[3])) return undefined;
    return side === "start" ? ms : ms + 86_400_000 - 1;
  }
  const t = DATE_TIME.exec(value);
  if (t === null) return undefined;
  const [, y, mo, da, h, mi, s] = t;
  if (Number(mo) < 1 || Number(mo) > 12 || Number(da) < 1 || Number(da) > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return undefined;
  const probe = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(da)));
  if (probe.getUTCDate() !== Number(da)) return undefined;
  return ms;
}

export interface TimeRange {
  /** Inclusive bounds in ms; undefined = open. */
  readonly start: number | undefined;
  readonly end: number | undefined;
}

/** Validates `start`/`end` into an inclusive range; adds violations for bad values. */
export function checkRange(v: Violations, start: string | undefined, end: string | undefined): TimeRange {
  let s: number | undefined;
  let e: number | undefined;
  if (start !== undefined && start !== "") {
    s = parseIsoBound(start, "start");
    if (s === undefined) v.add("start", "must be an ISO 8601 date (2026-04-01) or date-time (2026-04-01T10:00:00Z)");
  }
  if (end !== undefined && end !== "") {
    e = parseIsoBound(end, "end");
    if (e === undefined) v.add("end", "must be an ISO 8601 date (2026-04-01) or date-time (2026-04-01T10:00:00Z)");
  }
  if (s !== undefined && e !== undefined && s > e) v.add("start", "must not be after end");
  return { start: s, end: e };
}

/** Validates `start`/`end` as ISO dates (UTC days, inclusive): for reports kept per day, where a date-time cannot be answered exactly. */
export function checkDayRange(v: Violations, start: string | undefined, end: string | undefined): { startDay: string | undefined; endDay: string | undefined } {
  const day = (value: string | undefined, field: "start" | "end"): string | undefined => {
    if (value === undefined || value === "") return undefined;
    if (!DATE.test(value) || parseIsoBound(value, field) === undefined) {
      v.add(field, "must be an ISO 8601 date (2026-04-01), a UTC day");
      return undefined;
    }
    return value;
  };
  const startDay = day(start, "start");
  const endDay = day(end, "end");
  if (startDay !== undefined && endDay !== undefined && startDay > endDay) v.add("start", "must not be after end");
  return { startDay, endDay };
}
