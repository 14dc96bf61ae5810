/**
 * The customers plugin's access to its customers: reads, the writes of the identity protocol
 * (create, update and rename, soft delete — see identity-keys.ts), and the stats analytics
 * sets. A write that owes analytics a follow-up records its marker first (follow-up-markers.ts).
 * Every database call goes through dbCall (deadline as `maxTimeMS`, errors translated).
 *
 * Nothing here holds a lock: every read-modify-write of a customer is one update conditional on
 * the `rev` it read, retried (re-read) when another writer got there first, so any number of
 * replicas may write the same customers.
 *
 * Writes also keep the live-customer counter (customer-counts.ts: announce, write, settle) and
 * the metadata index (metadata-index.ts: entries of new metadata before the write, the sync
 * after it, under a `metadata` follow-up marker). Reads of lists, counts and exports are in
 * customer-reads.ts.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { dbCall, ensureIndexes, mapLimit, insertIfAbsent, insertManyNew, newId, pauseBeforeRetry, type Logger } from "@linquid/mesh";
import type { Collection, Db, Filter, UpdateFilter } from "mongodb";
import { CustomerCounts } from "./customer-counts.js";
import { changes, deletedFields, isLiveIn, newCustomerDoc, type CustomerDoc, type MergeMode, type StatsDoc } from "./customer-doc.js";
import { CustomerReads, type ListPage, type PageStart } from "./customer-reads.js";
import type { CustomerFilters } from "./filters.js";
import { FollowUpMarkers } from "./follow-up-markers.js";
import { identityKeyId } from "./identity.js";
import { CONTENDED, IdentityKeys, newToken, type KeyDoc } from "./identity-keys.js";
import { metadataEntries, MetadataIndex } from "./metadata-index.js";
import type { CustomerPatch, SortOrder } from "./validation.js";

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
  /** At most `limit` live customers matching `filters` in `order`, from `start`; hasMore when more follow. */
  page(workspaceId: string, filters: CustomerFilters, order: SortOrder, start: PageStart, limit: number): Promise<ListPage>;
  /** Live customers matching `filters`. */
  count(workspaceId: string, filters: CustomerFilters): Promise<number>;
  /** Every live customer matching `filters`, oldest first, a batch at a time, each read when asked for. */
  walk(workspaceId: string, filters: CustomerFilters): AsyncGenerator<CustomerDoc[]>;
  setStats(workspaceId: string, customerId: string, stats: StatsDoc, version: number): Promise<StatsResult>;
  setStatsMany(workspaceId: string, items: ReadonlyArray<{ customerId: string; stats: StatsDoc; version: number }>): Promise<number>;
}

export interface RepositoryOptions {
  /** How long a key whose customer does not (yet) match may belong to a write in flight. */
  keyGraceMs?: number;
  /** How long one call may retry under contention before giving up with UNAVAILABLE. */
  contentionTimeoutMs?: number;
  /** How long after a write its follow-up becomes the sweepers' (follow-up-markers.ts). */
  followUpFirstDueMs?: number;
  logger?: Logger;
}

export class MongoCustomersRepository implements CustomersRepository {
  readonly customers: Collection<CustomerDoc>;
  readonly identity: IdentityKeys;
  readonly followUps: FollowUpMarkers;
  readonly counts: CustomerCounts;
  readonly metadata: MetadataIndex;
  readonly reads: CustomerReads;
  private readonly contentionTimeoutMs: number;
  private readonly logger: Logger | undefined;
  /** Whether the metadata index covers every customer (see backfillMetadata). */
  private metadataReady = false;

  constructor(db: Db, options: RepositoryOptions = {}) {
    this.customers = db.collection<CustomerDoc>("customers");
    this.identity = new IdentityKeys(db, this.customers, options.keyGraceMs ?? 3000);
    this.followUps = new FollowUpMarkers(db, options.followUpFirstDueMs === undefined ? {} : { firstDueMs: options.followUpFirstDueMs });
    this.contentionTimeoutMs = options.contentionTimeoutMs ?? 15_000;
    this.logger = options.logger;
    this.counts = new CustomerCounts(db, this.customers, this.logger);
    this.metadata = new MetadataIndex(db);
    this.reads = new CustomerReads(this.customers, this.metadata, this.counts, () => this.metadataReady);
  }

  /** The identity keys (`customer_keys`). */
  get keys(): Collection<KeyDoc> {
    return this.identity.keys;
  }

  /**
   * The indexes each query shape needs, on MongoDB and the embedded database alike (customer-
   * reads.ts). `deletedAt` comes after the sort keys: an equality on null pins only its type
   * bracket on the embedded database, so an index with it before `createdAt` could not give
   * lists their order. `country` closes the first index so that a country condition is checked
   * on index entries even where that index is used, and so that SQLite, which plans without
   * statistics here, prefers the country index for a country and a creation-time range.
   */
  async ensureIndexes(): Promise<void> {
    await ensureIndexes(this.customers, [
      // lists, counts, searches, cursors and exports of a workspace, either order; creation-time bounds
      { key: { workspaceId: 1, createdAt: 1, _id: 1, deletedAt: 1, country: 1 }, name: "workspace_created_country" },
      // the same for one country
      { key: { workspaceId: 1, country: 1, createdAt: 1, _id: 1, deletedAt: 1 }, name: "workspace_country_created" },
      // customers the metadata index does not cover yet (the backfill)
      { key: { metadataIndexed: 1 }, name: "metadata_indexed" },
    ]);
    // Indexes of earlier versions: on the embedded database they would win over the ones above
    // and make pages sort the whole workspace.
    for (const name of ["workspace_live_created", "workspace_created"]) {
      await dbCall("customers", "dropIndexes", (o) => this.customers.dropIndex(name, o)).catch(() => undefined);
    }
    await this.identity.ensureIndexes();
    await this.followUps.ensureIndexes();
    await this.metadata.ensureIndexes();
  }

  /**
   * Gives customers written before the metadata index (or behind the service's back) their
   * entries, a batch at a time, each flagged with a write conditional on the `rev` read (a
   * customer written meanwhile is synced from its new state instead). Returns how many it
   * flagged; metadata filters read the index once a pass finds nothing left.
   */
  async backfillMetadata(batch = 200): Promise<number> {
    let done = 0;
    for (;;) {
      const docs = await dbCall("customers", "find", (o) => this.customers.find({ metadataIndexed: null } as unknown as Filter<CustomerDoc>, o).limit(batch).toArray());
      if (docs.length === 0) {
        this.metadataReady = true;
        return done;
      }
      this.metadataReady = false;
      await this.metadata.add(docs.flatMap((d) => metadataEntries(d)));
      for (const d of docs) {
        const res = await dbCall("customers", "updateOne", (o) => this.customers.updateOne({ _id: d._id, rev: d.rev, metadataIndexed: null } as unknown as Filter<CustomerDoc>, { $set: { metadataIndexed: true } }, o));
        if (res.matchedCount > 0) done++;
        else await this.metadata.sync(d._id, await this.findById(d._id));
      }
    }
  }

  /** A customer in whatever state (live, deleted, tombstone), or null. */
  findById(customerId: string): Promise<CustomerDoc | null> {
    return dbCall("customers", "findOne", (o) => this.customers.findOne({ _id: customerId }, o));
  }

  async findLive(workspaceId: string, customerId: string): Promise<CustomerDoc | null> {
    const doc = await this.findById(customerId);
    return isLiveIn(doc, workspaceId) ? doc : null;
  }

  async findLiveByExternalId(workspaceId: string, externalId: string): Promise<CustomerDoc | null> {
    const key = await this.identity.find(workspaceId, externalId);
    if (key === null) return null;
    const doc = await this.findLive(workspaceId, key.customerId);
    return doc !== null && doc.externalId === externalId ? doc : null;
  }

  async upsertByExternalId(workspaceId: string, externalId: string, patch: CustomerPatch, mode: MergeMode): Promise<{ doc: CustomerDoc; created: boolean }> {
    const deadline = Date.now() + this.contentionTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const id = newId("cus");
      const claim = await this.identity.claim(workspaceId, externalId, id, deadline);
      if (claim.kind === "held") {
        const holder = claim.customer;
        const set = changes(holder, patch, mode);
        if (set === null) return { doc: holder, created: false };
        const updated = await this.updateAtRev(holder, set);
        if (updated !== null) return { doc: updated, created: false };
      } else {
        // Created through the API ("overwrite"): analytics must learn its creation time, so the
        // registration is owed before the customer exists. Stitched ones ("fill") are created
        // by analytics for an event it is storing.
        if (mode === "overwrite") await this.followUps.mark("register", workspaceId, id);
        const doc = newCustomerDoc(id, workspaceId, externalId, patch, new Date());
        const created = await this.insertCounted(doc);
        if (created) return { doc, created: true };
        // Otherwise the id was poisoned by a writer that took the key over; start again.
      }
      await pauseBeforeRetry(attempt, deadline, CONTENDED);
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
    const keys = await this.identity.findMany(keyIds);
    const holderIds = [...new Set([...keys.values()].map((k) => k.customerId))];
    const holders = new Map(
      holderIds.length === 0 ? [] : (await dbCall("customers", "find", (o) => this.customers.find({ _id: { $in: holderIds } }, o).toArray())).map((c) => [c._id, c]),
    );
    const slow: number[] = [];
    const absent: number[] = [];
    items.forEach((it, i) => {
      const key = keys.get(keyIds[i]!);
      if (key === undefined) return void absent.push(i);
      const holder = holders.get(key.customerId);
      if (isLiveIn(holder, workspaceId) && holder.externalId === it.externalId && changes(holder, it.patch, "fill") === null) out[i] = { doc: holder, created: false };
      else slow.push(i);
    });
    if (absent.length > 0) {
      const now = new Date();
      const claims = absent.map((i) => ({ i, key: { _id: keyIds[i]!, customerId: newId("cus"), token: newToken(), at: now } }));
      const takenKeys = await this.identity.claimAbsent(claims.map((c) => c.key));
      const claimed = claims.filter((c) => !takenKeys.has(c.key._id));
      slow.push(...claims.filter((c) => takenKeys.has(c.key._id)).map((c) => c.i));
      const docs = claimed.map((c) => newCustomerDoc(c.key.customerId, workspaceId, items[c.i]!.externalId, items[c.i]!.patch, now));
      await this.counts.begin(workspaceId, docs.length);
      const takenIds = await insertManyNew(this.customers, docs);
      await this.counts.settle(workspaceId, docs.length, docs.length - takenIds.size);
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
        oldKey = await this.identity.find(workspaceId, oldExternalId);
        const claim = await this.identity.claim(workspaceId, set.externalId!, customerId, deadline);
        if (claim.kind === "held") throw new ConnectError("externalId already belongs to another customer", Code.AlreadyExists);
      }
      const updated = await this.updateAtRev(cur, set);
      if (updated !== null) {
        if (renaming && oldKey !== null && oldKey.customerId === customerId) await this.identity.releaseRenamed(oldKey);
        return updated;
      }
      // Lost the race for the record. The claim stays: deleting it by its token is not safe, as
      // another rename of this customer to the same externalId may have re-tokened it and then
      // committed, making it valid. Left alone, it is either used by the retry or, stale, taken over.
      await pauseBeforeRetry(attempt, deadline, CONTENDED);
    }
  }

  async softDelete(workspaceId: string, customerId: string): Promise<CustomerDoc | null> {
    const deadline = Date.now() + this.contentionTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const cur = await this.findLive(workspaceId, customerId);
      if (cur === null) return null;
      // The scrub is owed before the delete can happen; the delete is conditional on the rev
      // read, so a sweeper that finds the marker of a delete that never happened can fence it
      // off by bumping the rev (follow-ups.ts).
      await this.followUps.mark("scrub", workspaceId, customerId);
      const now = new Date();
      await this.counts.begin(workspaceId, 1);
      const before = await dbCall("customers", "findOneAndUpdate", (o) =>
        this.customers.findOneAndUpdate({ _id: customerId, rev: cur.rev, deletedAt: null }, { $set: deletedFields(now), $inc: { rev: 1 } }, { ...o, returnDocument: "before" }),
      );
      await this.counts.settle(workspaceId, 1, before === null ? 0 : -1);
      if (before !== null) {
        if (before.externalId !== null) await this.identity.releaseOfDeleted(identityKeyId(workspaceId, before.externalId), customerId);
        // The scrub follow-up repeats this after a crash (follow-ups.ts).
        await this.metadata.sync(customerId, null);
        return before;
      }
      await pauseBeforeRetry(attempt, deadline, CONTENDED);
    }
  }

  page(workspaceId: string, filters: CustomerFilters, order: SortOrder, start: PageStart, limit: number): Promise<ListPage> {
    return this.reads.page(workspaceId, filters, order, start, limit);
  }

  count(workspaceId: string, filters: CustomerFilters): Promise<number> {
    return this.reads.count(workspaceId, filters);
  }

  walk(workspaceId: string, filters: CustomerFilters): AsyncGenerator<CustomerDoc[]> {
    return this.reads.walk(workspaceId, filters);
  }

  async setStats(workspaceId: string, customerId: string, stats: StatsDoc, version: number): Promise<StatsResult> {
    const res = await dbCall("customers", "updateOne", (o) =>
      this.customers.updateOne({ _id: customerId, workspaceId, statsVersion: { $not: { $gte: version } } }, { $set: { stats, statsVersion: version } }, o),
    );
    if (res.matchedCount > 0) return "applied";
    const exists = await dbCall("customers", "findOne", (o) => this.customers.findOne({ _id: customerId, workspaceId }, { ...o, projection: { _id: 1 } }));
    return exists === null ? "not_found" : "stale";
  }

  /** setStats for many customers in one unordered bulk of conditional updates; how many were applied. */
  async setStatsMany(workspaceId: string, items: ReadonlyArray<{ customerId: string; stats: StatsDoc; version: number }>): Promise<number> {
    if (items.length === 0) return 0;
    const ops = items.map(({ customerId, stats, version }) => ({
      updateOne: { filter: { _id: customerId, workspaceId, statsVersion: { $not: { $gte: version } } }, update: { $set: { stats, statsVersion: version } } },
    }));
    const res = await dbCall("customers", "bulkWrite", (o) => this.customers.bulkWrite(ops as never, { ...o, ordered: false }));
    return res.matchedCount;
  }

  /**
   * Bumps the rev of a customer still live at the rev it was read at, so a delete or rename
   * that read it earlier fails its conditional update; false when it changed meanwhile.
   */
  async fence(cur: CustomerDoc): Promise<boolean> {
    const res = await dbCall("customers", "updateOne", (o) => this.customers.updateOne({ _id: cur._id, rev: cur.rev, deletedAt: null }, { $inc: { rev: 1 } }, o));
    return res.matchedCount > 0;
  }

  /**
   * Applies `set` if the record is still at the revision it was read at. New metadata gets its
   * index entries first and the sync after, under a `metadata` marker (metadata-index.ts).
   */
  private async updateAtRev(cur: CustomerDoc, set: Partial<CustomerDoc>): Promise<CustomerDoc | null> {
    const write = () =>
      dbCall("customers", "findOneAndUpdate", (o) =>
        this.customers.findOneAndUpdate(
          { _id: cur._id, rev: cur.rev, deletedAt: null },
          { $set: { ...set, updatedAt: new Date() }, $inc: { rev: 1 } } as UpdateFilter<CustomerDoc>,
          { ...o, returnDocument: "after" },
        ),
      );
    if (set.metadataJson === undefined) return write();
    const token = await this.followUps.mark("metadata", cur.workspaceId, cur._id);
    await this.metadata.add(metadataEntries({ ...cur, metadataJson: set.metadataJson }));
    const updated = await write();
    await this.syncMetadata(cur.workspaceId, cur._id, token);
    return updated;
  }

  /**
   * Inserts a new customer, announced to the counter; with metadata, its index entries go
   * first. False when the id exists (poisoned).
   */
  private async insertCounted(doc: CustomerDoc): Promise<boolean> {
    const entries = metadataEntries(doc);
    let token: string | undefined;
    if (doc.metadataJson !== null) {
      token = await this.followUps.mark("metadata", doc.workspaceId, doc._id);
      await this.metadata.add(entries);
      doc.metadataIndexed = true;
    }
    await this.counts.begin(doc.workspaceId, 1);
    const inserted = await insertIfAbsent(this.customers, doc);
    await this.counts.settle(doc.workspaceId, 1, inserted ? 1 : 0);
    if (token !== undefined) {
      if (inserted) await this.followUps.remove("metadata", doc._id, token);
      else await this.syncMetadata(doc.workspaceId, doc._id, token);
    }
    return inserted;
  }

  /**
   * Syncs a customer's metadata index entries with its stored state and removes the marker
   * (if still the caller's). A failure leaves the marker to the sweeper and is not the write's.
   */
  async syncMetadata(workspaceId: string, customerId: string, token: string | undefined): Promise<void> {
    try {
      await this.metadata.sync(customerId, await this.findById(customerId));
      await this.followUps.remove("metadata", customerId, token);
    } catch (err) {
      this.logger?.warn("metadata index sync pending; the sweeper will finish it", { workspaceId, customerId, error: err instanceof Error ? err.message : String(err) });
    }
  }
}
