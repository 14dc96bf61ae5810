/**
 * The customers plugin's collections and every database access it makes (each through dbCall).
 *
 * `customers`: `_id` = customer id. PII (externalId, email, name, avatar, metadata) lives only
 * here; `metadataJson` keeps metadata as a JSON string so user keys such as "$x" or "a.b" never
 * reach the query language, and `search` holds lowercased copies of externalId, email and name
 * for literal substring search. `deletedAt` is null while the customer is live. `rev` counts
 * writes to the record (optimistic concurrency); `stats`/`statsVersion` belong to analytics.
 *
 * `customer_keys`: one identity key per (workspace, externalId), `_id` = `${workspaceId}:${externalId}`
 * → `{customerId, token, at}`. The unique `_id` is the uniqueness guard: no read-then-write on the
 * customers collection, no partial index, and `_id` equality is the one query FerretDB v1 hands to
 * SQLite (everything else is decoded and filtered document by document), so its cheapest path.
 *
 * Identity protocol (no transactions, so every step is one conditional single-document write):
 * - A key is VALID when its customer is live, in the key's workspace, and has the key's
 *   externalId. Only a valid key blocks an externalId.
 * - Writing a key (insert, or replace of a stale one) always sets a fresh `token`, and a replace
 *   is conditional on the token read (`{_id, token}`), so two writers never both win.
 * - Creating: claim the key for a new id, then insert the customer. Renaming: read the customer
 *   (rev r), claim the new key for it, then update it conditional on rev r, then delete the old
 *   key conditional on its token. So a live customer with externalId e always has key e. A claim
 *   whose rename then loses is never deleted by its writer (by then another rename of the same
 *   customer may have re-tokened and committed it); it is reused on retry or, stale, taken over.
 * - A key whose customer is missing or has another externalId may belong to a write in flight;
 *   while the key is younger than `keyGraceMs`, others wait and re-read. Older, it is taken over,
 *   but first the in-flight write is fenced off for good: a missing customer id is "poisoned"
 *   by inserting a deleted tombstone under it (the late insert then fails on the duplicate
 *   `_id` and its writer retries), and a customer with another externalId gets its `rev` bumped
 *   (`{externalId: {$ne: e}}`), which fails the late rename's conditional update. The time only
 *   decides who waits; correctness rests on the conditional writes.
 * - Deleting: mark the customer deleted and scrubbed (one conditional update), then delete its
 *   keys. A key left behind by a crash is stale (its customer is deleted) and is removed by the
 *   scrub sweeper before the customer's scrub counts as done.
 * Hence no crash between two writes can leave a permanently blocked externalId (stale keys are
 * taken over) or a half-visible customer (a customer is inserted only after its key is held, and
 * keys never make anything visible by themselves).
 *
 * Atomicity: the protocol needs each conditional single-document write to be atomic. MongoDB
 * guarantees that; FerretDB v1 does not for updates and deletes, so every such write also runs
 * under a per-document lock in this process (doc-locks.ts). Inserts need no lock.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { dbCall, ensureIndexes, insertIfAbsent, insertManyNew, newId } from "@linquid/mesh";
import type { Collection, Db, Filter, UpdateFilter } from "mongodb";
import { withDocLock } from "./doc-locks.js";
import { identityKeyId } from "./identity.js";
import { foldCase, literalPattern, searchTerms } from "./search.js";
import type { CustomerPatch, ListQuery } from "./validation.js";

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
  /** Deleted, but analytics' copy of the PII or a stale key may still exist. */
  scrubPending: boolean;
  /**
   * Created through the API, and analytics has not recorded the creation time yet (RegisterCustomer;
   * it is the first touch of a customer without touchpoints). Absent on stitched customers.
   */
  registerPending?: boolean;
  rev: number;
  /** Set on the deleted records that fence off a crashed or late insert (see above). */
  tombstone?: true;
}

interface KeyDoc {
  _id: string;
  customerId: string;
  token: string;
  at: Date;
}

export const EMPTY_STATS: StatsDoc = { leads: 0, sales: 0, revenue: 0, currency: null, firstSeenAt: null, lastSeenAt: null };

/** How a create-or-find treats the fields of an existing customer. */
export type MergeMode =
  /** CreateCustomer: the given fields overwrite. */
  | "overwrite"
  /** StitchCustomer: the given fields only fill fields the customer does not have yet. */
  | "fill";

export type StatsResult = "applied" | "stale" | "not_found";

export interface CustomersRepository {
  /** The live customer with this id in this workspace. */
  findLive(workspaceId: string, customerId: string): Promise<CustomerDoc | null>;
  /** The live customer with this external id in this workspace. */
  findLiveByExternalId(workspaceId: string, externalId: string): Promise<CustomerDoc | null>;
  /** Creates the customer with this external id, or applies `patch` to the live one that has it. */
  upsertByExternalId(workspaceId: string, externalId: string, patch: CustomerPatch, mode: MergeMode): Promise<{ doc: CustomerDoc; created: boolean }>;
  /** `upsertByExternalId(…, "fill")` for many distinct external ids at once; results in order. */
  stitchMany(workspaceId: string, items: ReadonlyArray<{ externalId: string; patch: CustomerPatch }>): Promise<Array<{ doc: CustomerDoc; created: boolean }>>;
  /**
   * Applies `patch` to a live customer; null when it is not (or no longer) live.
   * Throws ALREADY_EXISTS when the new externalId belongs to another live customer.
   */
  update(workspaceId: string, customerId: string, patch: CustomerPatch): Promise<CustomerDoc | null>;
  /** Marks a live customer deleted, scrubs its PII and frees its externalId; null when not live. */
  softDelete(workspaceId: string, customerId: string): Promise<CustomerDoc | null>;
  list(workspaceId: string, query: ListQuery): Promise<{ docs: CustomerDoc[]; total: number }>;
  count(workspaceId: string, search: string | undefined): Promise<number>;
  setStats(workspaceId: string, customerId: string, stats: StatsDoc, version: number): Promise<StatsResult>;
}

/** What the follow-up sweepers need (retry-sweeper.ts). */
export interface FollowUpRepository {
  /** Deleted customers whose scrub is not finished yet, oldest first. */
  findScrubPending(limit: number): Promise<Array<{ customerId: string; workspaceId: string }>>;
  /** Removes every identity key that still points at a deleted customer, then clears scrubPending. */
  completeScrub(customerId: string): Promise<void>;
  /** Customers created through the API whose creation analytics has not recorded yet, oldest first. */
  findRegisterPending(limit: number): Promise<Array<{ customerId: string; workspaceId: string }>>;
  /** The creation time of a customer, live or deleted; null when there is no such customer. */
  createdAtOf(customerId: string): Promise<Date | null>;
  completeRegistration(customerId: string): Promise<void>;
}

export interface RepositoryOptions {
  /** How long a key whose customer does not (yet) match may belong to a write in flight. */
  keyGraceMs?: number;
  /** How long one call may retry under contention before giving up with UNAVAILABLE. */
  contentionTimeoutMs?: number;
}

// Transient by nature, so UNAVAILABLE (503, "retry shortly") rather than ABORTED.
const contended = () => new ConnectError("too many concurrent writes to this customer; retry", Code.Unavailable);

export class MongoCustomersRepository implements CustomersRepository, FollowUpRepository {
  readonly customers: Collection<CustomerDoc>;
  readonly keys: Collection<KeyDoc>;
  private readonly keyGraceMs: number;
  private readonly contentionTimeoutMs: number;
  private readonly dbName: string;

  constructor(db: Db, options: RepositoryOptions = {}) {
    this.dbName = db.databaseName;
    this.customers = db.collection<CustomerDoc>("customers");
    this.keys = db.collection<KeyDoc>("customer_keys");
    this.keyGraceMs = options.keyGraceMs ?? 3000;
    this.contentionTimeoutMs = options.contentionTimeoutMs ?? 15_000;
  }

  /** The indexes MongoDB needs for each query shape (FerretDB accepts and ignores them). */
  async ensureIndexes(): Promise<void> {
    await ensureIndexes(this.customers, [
      // list/count/search of live customers, either sort order (walked backwards for desc)
      { key: { workspaceId: 1, deletedAt: 1, createdAt: 1, _id: 1 }, name: "workspace_live_created" },
      // the scrub sweeper
      { key: { scrubPending: 1 }, name: "scrub_pending" },
      { key: { registerPending: 1 }, name: "register_pending" },
    ]);
    await ensureIndexes(this.keys, [{ key: { customerId: 1 }, name: "customer" }]);
  }

  async findLive(workspaceId: string, customerId: string): Promise<CustomerDoc | null> {
    const doc = await dbCall("customers", "findOne", () => this.customers.findOne({ _id: customerId }));
    return doc !== null && doc.workspaceId === workspaceId && doc.deletedAt === null ? doc : null;
  }

  async findLiveByExternalId(workspaceId: string, externalId: string): Promise<CustomerDoc | null> {
    const key = await dbCall("customer_keys", "findOne", () => this.keys.findOne({ _id: identityKeyId(workspaceId, externalId) }));
    if (key === null) return null;
    const doc = await this.findLive(workspaceId, key.customerId);
    return doc !== null && doc.externalId === externalId ? doc : null;
  }

  async upsertByExternalId(workspaceId: string, externalId: string, patch: CustomerPatch, mode: MergeMode): Promise<{ doc: CustomerDoc; created: boolean }> {
    const deadline = Date.now() + this.contentionTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const id = newId("cus");
      const claim = await this.claimKey(workspaceId, externalId, id, deadline);
      if (claim.kind === "held") {
        const holder = claim.customer;
        const set = changes(holder, patch, mode);
        if (set === null) return { doc: holder, created: false };
        const updated = await this.updateAtRev(holder, set);
        if (updated !== null) return { doc: updated, created: false };
      } else {
        const now = new Date();
        // Created through the API ("overwrite"): analytics must learn its creation time.
        // Stitched ones ("fill") are created by analytics for an event it is storing.
        const doc = { ...newCustomerDoc(id, workspaceId, externalId, patch, now), ...(mode === "overwrite" ? { registerPending: true } : {}) };
        if (await insertIfAbsent(this.customers, doc)) return { doc, created: true };
        // Otherwise the id was poisoned by a writer that took the key over; start again.
      }
      await backoff(attempt, deadline);
    }
  }

  /**
   * The common cases of a bulk stitch in a few round trips, each step one the protocol allows:
   * a valid key whose customer needs no filling is the "held" answer (read only); absent keys
   * are claimed with one insertMany and their customers inserted with another. Whatever else
   * (a stale or contended key, a customer to fill in, a lost insert) takes the one-by-one path.
   */
  async stitchMany(workspaceId: string, items: ReadonlyArray<{ externalId: string; patch: CustomerPatch }>): Promise<Array<{ doc: CustomerDoc; created: boolean }>> {
    const out: Array<{ doc: CustomerDoc; created: boolean }> = new Array(items.length);
    if (items.length === 0) return out;
    const keyIds = items.map((it) => identityKeyId(workspaceId, it.externalId));
    const keys = new Map((await dbCall("customer_keys", "find", () => this.keys.find({ _id: { $in: keyIds } }).toArray())).map((k) => [k._id, k]));
    const holderIds = [...new Set([...keys.values()].map((k) => k.customerId))];
    const holders = new Map(
      holderIds.length === 0 ? [] : (await dbCall("customers", "find", () => this.customers.find({ _id: { $in: holderIds } }).toArray())).map((c) => [c._id, c]),
    );
    const slow: number[] = [];
    const absent: number[] = [];
    items.forEach((it, i) => {
      const key = keys.get(keyIds[i]!);
      if (key === undefined) return void absent.push(i);
      const holder = holders.get(key.customerId);
      const valid = holder !== undefined && holder.deletedAt === null && holder.workspaceId === workspaceId && holder.externalId === it.externalId;
      if (valid && changes(holder, it.patch, "fill") === null) out[i] = { doc: holder, created: false };
      else slow.push(i);
    });
    if (absent.length > 0) {
      const now = new Date();
      const claims = absent.map((i) => ({ i, key: { _id: keyIds[i]!, customerId: newId("cus"), token: randomBytes(12).toString("base64url"), at: now } }));
      const takenKeys = await insertManyNew(this.keys, claims.map((c) => c.key));
      const claimed = claims.filter((c) => !takenKeys.has(c.key._id));
      slow.push(...claims.filter((c) => takenKeys.has(c.key._id)).map((c) => c.i));
      const docs = claimed.map((c) => newCustomerDoc(c.key.customerId, workspaceId, items[c.i]!.externalId, items[c.i]!.patch, now));
      const takenIds = await insertManyNew(this.customers, docs);
      claimed.forEach((c, k) => {
        if (takenIds.has(docs[k]!._id)) slow.push(c.i); // poisoned meanwhile: start again
        else out[c.i] = { doc: docs[k]!, created: true };
      });
    }
    await mapLimit(slow, 8, async (i) => {
      out[i] = await this.upsertByExternalId(workspaceId, items[i]!.externalId, items[i]!.patch, "fill");
    });
    return out;
  }

  async update(workspaceId: string, customerId: string, patch: CustomerPatch): Promise<CustomerDoc | null> {
    const deadline = Date.now() + this.contentionTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const cur = await this.findLive(workspaceId, customerId);
      if (cur === null) return null;
      const set = changes(cur, patch, "overwrite");
      if (set === null) return cur;
      const oldExternalId = cur.externalId!;
      const renaming = set.externalId !== undefined && set.externalId !== oldExternalId;
      let oldKey: KeyDoc | null = null;
      if (renaming) {
        const newExternalId = set.externalId!;
        oldKey = await dbCall("customer_keys", "findOne", () => this.keys.findOne({ _id: identityKeyId(workspaceId, oldExternalId) }));
        const claim = await this.claimKey(workspaceId, newExternalId, customerId, deadline);
        if (claim.kind === "held") {
          throw new ConnectError("externalId already belongs to another customer", Code.AlreadyExists);
        }
      }
      const updated = await this.updateAtRev(cur, set);
      if (updated !== null) {
        if (renaming && oldKey !== null && oldKey.customerId === customerId) {
          const token = oldKey.token;
          await this.writeKey(oldKey._id, "deleteOne", () => this.keys.deleteOne({ _id: oldKey._id, token }));
        }
        return updated;
      }
      // Lost the race for the record. The claim stays: deleting it by its token is not safe, as
      // another rename of this customer to the same externalId may have re-tokened it and then
      // committed, making it valid. Left alone, it is either used by the retry or, stale, taken over.
      await backoff(attempt, deadline);
    }
  }

  async softDelete(workspaceId: string, customerId: string): Promise<CustomerDoc | null> {
    const now = new Date();
    const before = await this.writeCustomer(customerId, "findOneAndUpdate", () =>
      this.customers.findOneAndUpdate(
        { _id: customerId, workspaceId, deletedAt: null },
        {
          $set: {
            deletedAt: now,
            updatedAt: now,
            externalId: null,
            email: null,
            name: null,
            avatar: null,
            metadataJson: null,
            search: [],
            scrubPending: true,
          },
          $inc: { rev: 1 },
        },
        { returnDocument: "before" },
      ),
    );
    if (before === null) return null;
    if (before.externalId !== null) {
      const keyId = identityKeyId(workspaceId, before.externalId);
      // Every key pointing at a deleted customer is stale, so this delete is safe whatever its token.
      await this.writeKey(keyId, "deleteOne", () => this.keys.deleteOne({ _id: keyId, customerId }));
    }
    return before;
  }

  async list(workspaceId: string, query: ListQuery): Promise<{ docs: CustomerDoc[]; total: number }> {
    const filter = liveFilter(workspaceId, query.search);
    const dir = query.sortOrder === "asc" ? 1 : -1;
    const [docs, total] = await Promise.all([
      dbCall("customers", "find", () =>
        this.customers
          .find(filter)
          .sort({ createdAt: dir, _id: dir })
          .skip((query.page - 1) * query.limit)
          .limit(query.limit)
          .toArray(),
      ),
      this.count(workspaceId, query.search),
    ]);
    return { docs, total };
  }

  count(workspaceId: string, search: string | undefined): Promise<number> {
    return dbCall("customers", "countDocuments", () => this.customers.countDocuments(liveFilter(workspaceId, search)));
  }

  async setStats(workspaceId: string, customerId: string, stats: StatsDoc, version: number): Promise<StatsResult> {
    const res = await this.writeCustomer(customerId, "updateOne", () =>
      this.customers.updateOne({ _id: customerId, workspaceId, statsVersion: { $not: { $gte: version } } }, { $set: { stats, statsVersion: version } }),
    );
    if (res.matchedCount > 0) return "applied";
    const exists = await dbCall("customers", "findOne", () => this.customers.findOne({ _id: customerId, workspaceId }, { projection: { _id: 1 } }));
    return exists === null ? "not_found" : "stale";
  }

  async findScrubPending(limit: number): Promise<Array<{ customerId: string; workspaceId: string }>> {
    const docs = await dbCall("customers", "find", () =>
      this.customers.find({ scrubPending: true }, { projection: { _id: 1, workspaceId: 1 } }).sort({ deletedAt: 1 }).limit(limit).toArray(),
    );
    return docs.map((d) => ({ customerId: d._id, workspaceId: d.workspaceId }));
  }

  async completeScrub(customerId: string): Promise<void> {
    // One conditional delete per key rather than deleteMany, which FerretDB runs as a query
    // followed by deletes by _id: a key taken over in between would be lost.
    const keys = await dbCall("customer_keys", "find", () => this.keys.find({ customerId }, { projection: { _id: 1 } }).toArray());
    for (const { _id } of keys) await this.writeKey(_id, "deleteOne", () => this.keys.deleteOne({ _id, customerId }));
    await this.writeCustomer(customerId, "updateOne", () =>
      this.customers.updateOne({ _id: customerId, deletedAt: { $ne: null }, scrubPending: true }, { $set: { scrubPending: false } }),
    );
  }

  async findRegisterPending(limit: number): Promise<Array<{ customerId: string; workspaceId: string }>> {
    const docs = await dbCall("customers", "find", () =>
      this.customers.find({ registerPending: true }, { projection: { _id: 1, workspaceId: 1 } }).sort({ createdAt: 1 }).limit(limit).toArray(),
    );
    return docs.map((d) => ({ customerId: d._id, workspaceId: d.workspaceId }));
  }

  async createdAtOf(customerId: string): Promise<Date | null> {
    const doc = await dbCall("customers", "findOne", () => this.customers.findOne({ _id: customerId }, { projection: { createdAt: 1 } }));
    return doc?.createdAt ?? null;
  }

  async completeRegistration(customerId: string): Promise<void> {
    await this.writeCustomer(customerId, "updateOne", () => this.customers.updateOne({ _id: customerId, registerPending: true }, { $set: { registerPending: false } }));
  }

  /** A conditional write to one customer, atomic also on FerretDB (see doc-locks.ts). */
  private writeCustomer<T>(customerId: string, operation: string, fn: () => Promise<T>): Promise<T> {
    return withDocLock(`${this.dbName}/customers/${customerId}`, () => dbCall("customers", operation, fn));
  }

  /** A conditional write to one identity key, atomic also on FerretDB (see doc-locks.ts). */
  private writeKey<T>(keyId: string, operation: string, fn: () => Promise<T>): Promise<T> {
    return withDocLock(`${this.dbName}/customer_keys/${keyId}`, () => dbCall("customer_keys", operation, fn));
  }

  /** Applies `set` if the record is still at the revision it was read at. */
  private updateAtRev(cur: CustomerDoc, set: Partial<CustomerDoc>): Promise<CustomerDoc | null> {
    return this.writeCustomer(cur._id, "findOneAndUpdate", () =>
      this.customers.findOneAndUpdate(
        { _id: cur._id, rev: cur.rev, deletedAt: null },
        { $set: { ...set, updatedAt: new Date() }, $inc: { rev: 1 } } as UpdateFilter<CustomerDoc>,
        { returnDocument: "after" },
      ),
    );
  }

  /**
   * Makes the key of (workspace, externalId) point at `target`, unless a valid key points at
   * another live customer ("held"). See the protocol at the top of this file.
   */
  private async claimKey(
    workspaceId: string,
    externalId: string,
    target: string,
    deadline: number,
  ): Promise<{ kind: "claimed"; token: string } | { kind: "held"; customer: CustomerDoc }> {
    const _id = identityKeyId(workspaceId, externalId);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await backoff(attempt, deadline);
      const token = randomBytes(12).toString("base64url");
      const key = await dbCall("customer_keys", "findOne", () => this.keys.findOne({ _id }));
      if (key === null) {
        if (await insertIfAbsent(this.keys, { _id, customerId: target, token, at: new Date() })) return { kind: "claimed", token };
        continue;
      }
      if (key.customerId !== target) {
        const holder = await dbCall("customers", "findOne", () => this.customers.findOne({ _id: key.customerId }));
        const live = holder !== null && holder.deletedAt === null && holder.workspaceId === workspaceId;
        if (live && holder.externalId === externalId) return { kind: "held", customer: holder };
        if (!live && holder !== null) {
          // Deleted (for good) or another workspace's: stale, nothing in flight can revive it.
        } else if (Date.now() - key.at.getTime() < this.keyGraceMs) {
          continue; // probably a create or rename in flight: wait for it
        } else if (holder === null) {
          if (!(await this.poison(key.customerId, workspaceId))) continue; // it was inserted meanwhile
        } else {
          const fenced = await this.writeCustomer(key.customerId, "updateOne", () =>
            this.customers.updateOne({ _id: key.customerId, deletedAt: null, externalId: { $ne: externalId } }, { $inc: { rev: 1 } }),
          );
          if (fenced.matchedCount === 0) continue; // it changed meanwhile: re-evaluate
        }
      }
      // Stale, or already ours (a retry): take it over with a fresh token.
      const res = await this.writeKey(_id, "replaceOne", () =>
        this.keys.replaceOne({ _id, token: key.token } as Filter<KeyDoc>, { customerId: target, token, at: new Date() }),
      );
      if (res.matchedCount > 0) return { kind: "claimed", token };
    }
  }

  /** Inserts a deleted tombstone under a customer id so a late insert of it fails; false if it exists. */
  private async poison(customerId: string, workspaceId: string): Promise<boolean> {
    const now = new Date();
    const tomb: CustomerDoc = {
      ...newCustomerDoc(customerId, workspaceId, "", {}, now),
      externalId: null,
      search: [],
      deletedAt: now,
      tombstone: true,
    };
    return insertIfAbsent(this.customers, tomb);
  }
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
    scrubPending: false,
    rev: 0,
  };
  doc.search = searchTerms(doc);
  return doc;
}

/** The metadata object of a document (null when none). */
export function metadataOf(doc: CustomerDoc): JsonObject | null {
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
  const search = searchTerms(next);
  if (search.join("\u0000") !== cur.search.join("\u0000")) set.search = search;
  return set;
}

/** Waits a little (jittered, growing) before a retry; UNAVAILABLE once past the deadline. */
async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function backoff(attempt: number, deadline: number): Promise<void> {
  if (Date.now() >= deadline) throw contended();
  const ms = Math.min(50, 2 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random());
  await sleep(ms);
}
