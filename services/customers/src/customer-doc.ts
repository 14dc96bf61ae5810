/**
 * The stored customer document (`customers`, `_id` = customer id) and the pure functions over
 * it: a new document, the changes a patch makes, the filter of live customers. No database
 * access here.
 *
 * PII (externalId, email, name, avatar, metadata) lives only in this document; `metadataJson`
 * keeps metadata as a JSON string so user keys such as "$x" or "a.b" never reach the query
 * language, and `search` holds lowercased copies of externalId, email and name for literal
 * substring search. `deletedAt` is null while the customer is live. `rev` counts writes to the
 * record (the condition of every read-modify-write); `stats`/`statsVersion` belong to analytics.
 * The metadata index (metadata-index.ts) and the live-customer counter (customer-counts.ts)
 * follow these documents in collections of their own.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { foldCase, literalPattern, searchTerms } from "./search.js";
import type { CustomerPatch } from "./validation.js";
import type { Filter } from "mongodb";

export interface StatsDoc {
  leads: number;
  sales: number;
  /** Minor units of `currency`. */
  revenue: number;
  currency: string | null;
  firstSeenAt: Date | null;
  lastSeenAt: Date | null;
}

export interface CustomerDoc {
  _id: string;
  workspaceId: string;
  /** Null once deleted. */
  externalId: string | null;
  email: string | null;
  name: string | null;
  avatar: string | null;
  country: string | null;
  clickId: string | null;
  metadataJson: string | null;
  search: string[];
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
  stats: StatsDoc;
  /** Version of `stats` as given by analytics; null until analytics first writes. */
  statsVersion: number | null;
  rev: number;
  /** Set on the deleted records that fence off a crashed or late insert (identity-keys.ts). */
  tombstone?: true;
  /**
   * True once the metadata index holds the entries of this customer's metadata
   * (metadata-index.ts); absent on customers written before the index, until a backfill.
   */
  metadataIndexed?: true;
}

export const EMPTY_STATS: StatsDoc = { leads: 0, sales: 0, revenue: 0, currency: null, firstSeenAt: null, lastSeenAt: null };

/** How a create-or-find treats the fields of an existing customer. */
export type MergeMode =
  /** CreateCustomer: the given fields overwrite. */
  | "overwrite"
  /** StitchCustomer: the given fields only fill fields the customer does not have yet. */
  | "fill";

/** True when `doc` is a live customer of `workspaceId`. */
export function isLiveIn(doc: CustomerDoc | null | undefined, workspaceId: string): doc is CustomerDoc {
  return doc != null && doc.deletedAt === null && doc.workspaceId === workspaceId;
}

/** The filter of ListCustomers/CountCustomers: live customers of a workspace, optionally matching a search. */
export function liveFilter(workspaceId: string, search: string | undefined): Filter<CustomerDoc> {
  const filter: Filter<CustomerDoc> = { workspaceId, deletedAt: null };
  if (search !== undefined) filter.search = { $regex: literalPattern(foldCase(search)) };
  return filter;
}

/** A new live customer document. */
export function newCustomerDoc(id: string, workspaceId: string, externalId: string, patch: CustomerPatch, now: Date): CustomerDoc {
  const doc: CustomerDoc = {
    _id: id,
    workspaceId,
    externalId,
    email: patch.email ?? null,
    name: patch.name ?? null,
    avatar: patch.avatar ?? null,
    country: patch.country ?? null,
    clickId: patch.clickId ?? null,
    metadataJson: patch.metadata == null ? null : JSON.stringify(patch.metadata),
    search: [],
    createdAt: now,
    updatedAt: now,
    deletedAt: null,
    stats: { ...EMPTY_STATS },
    statsVersion: null,
    rev: 0,
    // With metadata, the writer adds its index entries first and then sets the flag.
    ...(patch.metadata == null ? { metadataIndexed: true as const } : {}),
  };
  doc.search = searchTerms(doc);
  return doc;
}

/** A deleted record under `customerId` whose only purpose is to make a late insert of that id fail. */
export function tombstoneDoc(customerId: string, workspaceId: string, now: Date): CustomerDoc {
  return { ...newCustomerDoc(customerId, workspaceId, "", {}, now), externalId: null, search: [], deletedAt: now, tombstone: true, metadataIndexed: true };
}

/** The `$set` of a soft delete: the record stays, its PII and search copies go. */
export function deletedFields(now: Date): Partial<CustomerDoc> {
  return { deletedAt: now, updatedAt: now, externalId: null, email: null, name: null, avatar: null, metadataJson: null, search: [], metadataIndexed: true };
}

/** The metadata object of a document (null when none). */
export function metadataOf(doc: Pick<CustomerDoc, "metadataJson">): JsonObject | null {
  return doc.metadataJson === null ? null : (JSON.parse(doc.metadataJson) as JsonObject);
}

/**
 * The `$set` that applies `patch` to `cur` (with `search` recomputed), or null when nothing
 * would change. In "fill" mode only fields `cur` does not have yet are written.
 */
export function changes(cur: CustomerDoc, patch: CustomerPatch, mode: MergeMode): Partial<CustomerDoc> | null {
  const set: Partial<CustomerDoc> = {};
  const next = { ...cur };
  const put = <K extends "externalId" | "email" | "name" | "avatar" | "country" | "clickId" | "metadataJson">(k: K, v: CustomerDoc[K]) => {
    if (mode === "fill" && cur[k] !== null) return;
    if (cur[k] === v) return;
    set[k] = v;
    next[k] = v;
  };
  if (patch.externalId !== undefined) put("externalId", patch.externalId);
  for (const k of ["email", "name", "avatar", "country", "clickId"] as const) {
    const v = patch[k];
    if (v !== undefined) put(k, v);
  }
  if (patch.metadata !== undefined) put("metadataJson", patch.metadata === null ? null : JSON.stringify(patch.metadata));
  if (Object.keys(set).length === 0) return null;
  // The writer of new metadata keeps the index in step (customers-repository.ts).
  if (set.metadataJson !== undefined) set.metadataIndexed = true;
  const search = searchTerms(next);
  if (search.join("\u0000") !== cur.search.join("\u0000")) set.search = search;
  return set;
}
