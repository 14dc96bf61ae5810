/**
 * The filters of ListCustomers, CountCustomers and ExportCustomers: validation, a canonical
 * form (what a cursor is bound to), the check of one stored customer against them, and the
 * metadata terms the metadata index is keyed by.
 *
 * - `createdAfter` / `createdBefore`: ISO 8601 date-times with a `Z` or `±hh:mm` offset,
 *   exclusive. Creation times are stored in milliseconds, so a bound is kept as whole
 *   milliseconds that select exactly the same customers: after T ⇔ t > floor(T), before T ⇔
 *   t < ceil(T).
 * - `country`: ISO 3166-1 alpha-2 in either case, matched upper-case as stored.
 * - `metadata[<key>]=<value>`: at most 5 keys; a customer matches when its metadata has the key
 *   (an own key, so `__proto__` or `constructor` are keys like any other) and the value written
 *   as text equals the filter's: a string as itself, a number as JSON writes it (`30`, `1.5`),
 *   `true`/`false`, `null`.
 */
import { createHash } from "node:crypto";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Violations } from "@linquid/mesh";
import { COUNTRY_CODES } from "./countries.js";
import { metadataOf, type CustomerDoc } from "./customer-doc.js";
import { foldCase } from "./search.js";
import { checkSearch } from "./validation.js";

/** Metadata keys one request may filter by. */
export const MAX_METADATA_FILTERS = 5;
/** Longest metadata filter key or value, in characters: a customer's whole metadata is at most 16 KiB. */
const MAX_METADATA_FILTER_CHARS = 16 * 1024;

export interface CustomerFilters {
  /** Undefined = no search. */
  readonly search: string | undefined;
  /** Exclusive bounds on the creation time, in epoch milliseconds. */
  readonly createdAfter: number | undefined;
  readonly createdBefore: number | undefined;
  /** Upper-case alpha-2. */
  readonly country: string | undefined;
  /** [key, value] pairs, sorted by key. */
  readonly metadata: ReadonlyArray<readonly [string, string]>;
}

export const NO_FILTERS: CustomerFilters = { search: undefined, createdAfter: undefined, createdBefore: undefined, country: undefined, metadata: [] };

/** The filter fields of a request, as the contract has them. */
export interface FilterFields {
  search?: string | undefined;
  createdAfter?: string | undefined;
  createdBefore?: string | undefined;
  country?: string | undefined;
  metadata?: { [key: string]: string } | undefined;
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-](\d{2}):(\d{2}))$/;
const DATE_TIME_ISSUE = "must be an ISO 8601 date-time such as 2026-04-01T10:00:00Z";

/**
 * An ISO 8601 date-time as epoch milliseconds, with the sub-millisecond remainder rounded
 * the way `round` says; undefined when malformed or not a real instant (2026-02-30).
 */
export function parseDateTime(value: string, round: "floor" | "ceil"): number | undefined {
  const m = DATE_TIME.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s, frac = "", zone, oh, om] = m;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const midnight = new Date(Date.UTC(year, month - 1, day));
  if (midnight.getUTCMonth() !== month - 1 || midnight.getUTCDate() !== day) return undefined;
  if (zone !== "Z" && (Number(oh) > 23 || Number(om) > 59)) return undefined;
  const offsetMs = zone === "Z" ? 0 : (zone!.startsWith("-") ? -1 : 1) * (Number(oh) * 60 + Number(om)) * 60_000;
  // Date.UTC maps years 0..99 to 1900..1999; setUTCFullYear does not.
  const at = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  at.setUTCFullYear(year);
  const digits = frac.padEnd(9, "0");
  const wholeMs = Number(digits.slice(0, 3));
  const rest = Number(digits.slice(3));
  const ms = at.getTime() - offsetMs + wholeMs + (round === "ceil" && rest > 0 ? 1 : 0);
  return Number.isFinite(ms) ? ms : undefined;
}

/** The text a metadata value is matched as. */
export function metadataText(value: JsonValue | undefined): string | undefined {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "boolean":
      return JSON.stringify(value);
    default:
      return undefined;
  }
}

/** Validates the filter fields of a request; adds violations named by their REST names. */
export function checkFilters(v: Violations, req: FilterFields): CustomerFilters {
  const search = checkSearch(v, req.search);
  let createdAfter: number | undefined;
  let createdBefore: number | undefined;
  if (req.createdAfter !== undefined) {
    createdAfter = parseDateTime(req.createdAfter, "floor");
    if (createdAfter === undefined) v.add("createdAfter", DATE_TIME_ISSUE);
  }
  if (req.createdBefore !== undefined) {
    createdBefore = parseDateTime(req.createdBefore, "ceil");
    if (createdBefore === undefined) v.add("createdBefore", DATE_TIME_ISSUE);
  }
  if (createdAfter !== undefined && createdBefore !== undefined && createdAfter >= createdBefore) v.add("createdAfter", "must be before createdBefore");
  let country: string | undefined;
  if (req.country !== undefined) {
    // The ASCII check first: "ß".toUpperCase() is "SS", a country code.
    if (/^[A-Za-z]{2}$/.test(req.country) && COUNTRY_CODES.has(req.country.toUpperCase())) country = req.country.toUpperCase();
    else v.add("country", "must be an ISO 3166-1 alpha-2 country code such as US");
  }
  const metadata: Array<[string, string]> = [];
  const entries = Object.entries(req.metadata ?? {});
  if (entries.length > MAX_METADATA_FILTERS) v.add("metadata", `at most ${MAX_METADATA_FILTERS} keys`);
  for (const [key, value] of entries) {
    const field = `metadata[${key}]`;
    if (key === "") v.add(field, "the key must not be empty");
    else if (key.length > MAX_METADATA_FILTER_CHARS || value.length > MAX_METADATA_FILTER_CHARS) v.add(field, `key and value must be at most ${MAX_METADATA_FILTER_CHARS} characters`);
    else metadata.push([key, value]);
  }
  metadata.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { search, createdAfter, createdBefore, country, metadata };
}

/** True when no filter is given: the whole live list. */
export function isUnfiltered(f: CustomerFilters): boolean {
  return f.search === undefined && f.createdAfter === undefined && f.createdBefore === undefined && f.country === undefined && f.metadata.length === 0;
}

/** A stable text of the filters, for binding a cursor to them. */
export function canonicalFilters(f: CustomerFilters): string {
  return JSON.stringify([f.search ?? null, f.createdAfter ?? null, f.createdBefore ?? null, f.country ?? null, f.metadata]);
}

/** Whether a stored customer is live in `workspaceId` and matches every filter. */
export function matchesFilters(doc: CustomerDoc, workspaceId: string, f: CustomerFilters): boolean {
  if (doc.workspaceId !== workspaceId || doc.deletedAt !== null) return false;
  const t = doc.createdAt.getTime();
  if (f.createdAfter !== undefined && !(t > f.createdAfter)) return false;
  if (f.createdBefore !== undefined && !(t < f.createdBefore)) return false;
  if (f.country !== undefined && doc.country !== f.country) return false;
  if (f.search !== undefined) {
    const needle = foldCase(f.search);
    if (!doc.search.some((s) => s.includes(needle))) return false;
  }
  if (f.metadata.length > 0) {
    const meta: JsonObject | null = metadataOf(doc);
    if (meta === null) return false;
    for (const [k, want] of f.metadata) if (!Object.hasOwn(meta, k) || metadataText(meta[k]) !== want) return false;
  }
  return true;
}

/**
 * The index term of one metadata key and value: a hash, so keys such as `$where`, `a.b` or
 * `__proto__` are only ever data, and a term has a fixed size whatever the key and value.
 */
export function metadataTerm(key: string, text: string): string {
  return createHash("sha256").update(JSON.stringify([key, text])).digest("base64url").slice(0, 24);
}

/** The index terms of a metadata object (one per key whose value can be matched). */
export function metadataTerms(metadata: JsonObject | null): string[] {
  if (metadata === null) return [];
  const out = new Set<string>();
  for (const [k, value] of Object.entries(metadata)) {
    const text = metadataText(value);
    if (text !== undefined) out.add(metadataTerm(k, text));
  }
  return [...out];
}
