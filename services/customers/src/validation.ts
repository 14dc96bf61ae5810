/**
 * Input rules of the customers API. Each check adds a violation named by the field's REST
 * (JSON) name, so a caller sees every bad field at once; nothing is ever clamped.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Violations } from "@linquid/mesh";
import { COUNTRY_CODES } from "./countries.js";
import { charLength, externalIdIssue, hasControlChars } from "./identity.js";

/** Fields a caller may write, by JSON name. */
export const WRITABLE_FIELDS = ["externalId", "email", "name", "avatar", "country", "clickId", "metadata"] as const;
export type WritableField = (typeof WRITABLE_FIELDS)[number];

/**
 * A change to a customer's writable fields: an absent key leaves the field alone, `null`
 * clears it. Values are validated and normalized (country upper-cased).
 */
export interface CustomerPatch {
  externalId?: string;
  email?: string | null;
  name?: string | null;
  avatar?: string | null;
  country?: string | null;
  clickId?: string | null;
  metadata?: JsonObject | null;
}

export const LIMITS = {
  email: 254,
  name: 255,
  avatar: 2048,
  clickId: 255,
  search: 255,
  metadataKeys: 50,
  metadataBytes: 16 * 1024,
  pageSizeMax: 100,
  pageSizeDefault: 20,
} as const;

// Local part, "@", a domain with at least one dot; no spaces, at most one "@". Deliberately
// loose: the only sure check of an address is mail reaching it.
const EMAIL = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

/** Adds the violation of `externalId`, if any. */
export function checkExternalId(v: Violations, value: string): void {
  const issue = externalIdIssue(value);
  if (issue !== null) v.add("externalId", issue);
}

/** Validates one present field value; returns it normalized, or undefined after adding a violation. */
export function checkField(v: Violations, field: Exclude<WritableField, "externalId" | "metadata">, value: string): string | undefined {
  const issue = fieldIssue(field, value);
  if (issue !== null) {
    v.add(field, issue);
    return undefined;
  }
  return field === "country" ? value.toUpperCase() : value;
}

function fieldIssue(field: Exclude<WritableField, "externalId" | "metadata">, value: string): string | null {
  switch (field) {
    case "email":
      if (value.length > LIMITS.email) return `must be at most ${LIMITS.email} characters`;
      return EMAIL.test(value) && !hasControlChars(value) ? null : "must be an email address";
    case "name":
      if (charLength(value) > LIMITS.name) return `must be at most ${LIMITS.name} characters`;
      return hasControlChars(value) ? "must not contain control characters" : null;
    case "avatar":
      if (value.length > LIMITS.avatar) return `must be at most ${LIMITS.avatar} characters`;
      return isHttpUrl(value) ? null : "must be an http or https URL";
    case "country":
      // The ASCII check first: "ß".toUpperCase() is "SS", a country code.
      return /^[A-Za-z]{2}$/.test(value) && COUNTRY_CODES.has(value.toUpperCase()) ? null : "must be an ISO 3166-1 alpha-2 country code such as US";
    case "clickId":
      if (value === "" || charLength(value) > LIMITS.clickId) return `must be 1..${LIMITS.clickId} characters`;
      return hasControlChars(value) ? "must not contain control characters" : null;
  }
}

function isHttpUrl(value: string): boolean {
  if (hasControlChars(value) || /\s/.test(value)) return false;
  try {
    const u = new URL(value);
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
  } catch {
    return false;
  }
}

/** Validates metadata: a flat object of strings, finite numbers, booleans and nulls, within the limits. */
export function checkMetadata(v: Violations, value: JsonObject): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    v.add("metadata", "must be a JSON object");
    return;
  }
  const keys = Object.keys(value);
  if (keys.length > LIMITS.metadataKeys) v.add("metadata", `must have at most ${LIMITS.metadataKeys} keys`);
  for (const k of keys) {
    if (!isFlatValue(value[k])) {
      v.add(`metadata.${k}`, "must be a string, number, boolean or null (no nested objects or arrays)");
    }
  }
  if (v.empty && Buffer.byteLength(JSON.stringify(value), "utf8") > LIMITS.metadataBytes) {
    v.add("metadata", `must be at most ${LIMITS.metadataBytes} bytes as JSON`);
  }
}

function isFlatValue(x: JsonValue | undefined): boolean {
  if (x === null || typeof x === "string" || typeof x === "boolean") return true;
  return typeof x === "number" && Number.isFinite(x);
}

/** Validates the writable fields present in `input` into a patch (externalId excluded). */
export function checkOptionalFields(
  v: Violations,
  input: { email?: string | undefined; name?: string | undefined; avatar?: string | undefined; country?: string | undefined; clickId?: string | undefined; metadata?: JsonObject | undefined },
): CustomerPatch {
  const patch: CustomerPatch = {};
  for (const field of ["email", "name", "avatar", "country", "clickId"] as const) {
    const value = input[field];
    if (value === undefined) continue;
    const normalized = checkField(v, field, value);
    if (normalized !== undefined) patch[field] = normalized;
  }
  if (input.metadata !== undefined) {
    checkMetadata(v, input.metadata);
    patch.metadata = input.metadata;
  }
  return patch;
}

// update_mask paths arrive by JSON name; proto names are accepted too, as protobuf JSON does.
const MASK_ALIASES: Readonly<Record<string, WritableField>> = {
  externalId: "externalId",
  external_id: "externalId",
  email: "email",
  name: "name",
  avatar: "avatar",
  country: "country",
  clickId: "clickId",
  click_id: "clickId",
  metadata: "metadata",
};

/** The writable fields an update_mask names; unknown paths become violations. */
export function maskFields(v: Violations, paths: readonly string[]): Set<WritableField> {
  const out = new Set<WritableField>();
  for (const p of paths) {
    const f = Object.hasOwn(MASK_ALIASES, p) ? MASK_ALIASES[p] : undefined;
    if (f === undefined) v.add(p, "is not a writable field");
    else out.add(f);
  }
  return out;
}

export type SortOrder = "asc" | "desc";

export interface ListQuery {
  /** Undefined when not given (1 in page mode). */
  page: number | undefined;
  limit: number;
  sortOrder: SortOrder;
}

/** Checks a search term: at most 255 characters, no control characters; "" means none. */
export function checkSearch(v: Violations, search: string | undefined): string | undefined {
  if (search === undefined || search === "") return undefined;
  if (charLength(search) > LIMITS.search) v.add("search", `must be at most ${LIMITS.search} characters`);
  else if (hasControlChars(search)) v.add("search", "must not contain control characters");
  return search;
}

/** Checks the paging parameters of a list and fills in the defaults (filters: filters.ts). */
export function checkListQuery(v: Violations, req: { page?: number | undefined; limit?: number | undefined; sortOrder?: string | undefined }): ListQuery {
  const page = req.page;
  if (page !== undefined && (!Number.isInteger(page) || page < 1)) v.add("page", "must be an integer >= 1");
  const limit = req.limit ?? LIMITS.pageSizeDefault;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.pageSizeMax) v.add("limit", `must be an integer from 1 to ${LIMITS.pageSizeMax}`);
  const sortOrder = req.sortOrder ?? "desc";
  if (sortOrder !== "asc" && sortOrder !== "desc") v.add("sortOrder", "must be asc or desc");
  return { page, limit, sortOrder: sortOrder as SortOrder };
}

/** Checks the workspace id every request carries (the gateway fills it from the API key). */
export function checkWorkspaceId(v: Violations, workspaceId: string): void {
  if (workspaceId === "" || workspaceId.includes(":") || hasControlChars(workspaceId)) v.add("workspaceId", "is required");
}
