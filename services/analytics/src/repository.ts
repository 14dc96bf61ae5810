/**
 * The analytics plugin's collections (see README.md for the model):
 * - `events`: raw events, `_id` = the idempotency key (`${ws}:click:${clickId}`, ...);
 * - `click_owners`: `_id` = `${ws}:${clickId}` → the customer a click belongs to;
 * - `customer_totals`: `_id` = `${ws}:${customerId}`, the fold of the customer's events;
 * - `cohort_cells`, `cohort_day_cells`, `cohort_hour_cells`, `ltv_cells`: rollups kept with
 *   `$inc` upserts on deterministic `_id`s;
 * - `member_buckets`: hourly member lists, in buckets of a fixed size (bucket-lists.ts);
 * - `write_ops`: one marker per write in flight that changes totals and cells (write-ops.ts);
 * - `workspace_rebuilds`: `_id` = workspace id, the lease of a RebuildWorkspace in progress.
 * Every call goes through dbCall, which passes the RPC's remaining deadline as `maxTimeMS` and
 * maps driver errors to RPC codes. Bulk writes go in one call whatever their size.
 */
import type { AnyBulkWriteOperation, Collection, Db, Document, OptionalUnlessRequiredId } from "mongodb";
import { dbCall, dbStream, ensureIndexes, insertIfAbsent, insertManyNew } from "@linquid/mesh";
import type { IncomingEvent } from "./validation.js";
import { BucketLists, DEFAULT_BUCKET_SIZE, type ListDoc } from "./bucket-lists.js";
import type { Model } from "./attribution.js";
import type { AttributionDelta, ModelFigures, SaleRow } from "./attribution-cells.js";
import { parseTimeEntry, type CellDelta, type CohortDimension, type DayDimension, type AnchorMember, type TotalsState } from "./totals.js";

export interface EventDoc extends Omit<IncomingEvent, "keyed"> {
  workspaceId: string;
  /** The customer the event belongs to; null for a click nobody has claimed yet. */
  customerId: string | null;
  /** The ingestion that stored (or, for clicks, attached) the event. */
  opId: string;
  receivedAt: Date;
}

export interface ClickOwnerDoc {
  _id: string;
  workspaceId: string;
  clickId: string;
  customerId: string;
  claimedAt: Date;
}

export interface TotalsDoc extends TotalsState {
  _id: string;
  workspaceId: string;
  customerId: string;
  /** Incremented by every write; also the version of the stats pushed to customers. */
  version: number;
  /** The last ingestions folded in, so a recovered one is not folded twice. */
  recentOps: string[];
  updatedAt: Date;
}

/**
 * The list of the customers whose cohort anchor (first touch, else creation time) fell in one
 * UTC hour ("2026-01-05T13"): "<anchor ISO>|<customerId>" entries, so that the sub-hour edges
 * of a cohort range (its whole hours come from `cohort_hour_cells`) read the members of at most
 * a few hours instead of searching every customer's totals.
 */
export const membersOwner = (ws: string, hour: string) => `${ws}|${hour}`;

export interface CohortCellDoc {
  _id: string;
  workspaceId: string;
  dim: string;
  key: string | null;
  day?: string;
  customers: number;
  leads: number;
  sales: number;
  revenue: number;
  customersWithSale: number;
}

/** A cohort hour cell (totals.ts `hourCellId`): the customers anchored in one UTC hour with one (campaign, source) pair. */
export interface HourCellDoc {
  _id: string;
  workspaceId: string;
  /** "2026-01-05T13" (UTC) */
  hour: string;
  campaign: string | null;
  source: string | null;
  customers: number;
  leads: number;
  sales: number;
  revenue: number;
  customersWithSale: number;
}

/** The index of `cohort_hour_cells`; migrations.ts creates it (its absence marks data of an older build). */
export const HOUR_CELL_INDEX = "ws_hour";

export interface LtvCellDoc {
  _id: string;
  workspaceId: string;
  cohortMonth: string;
  offset: number;
  revenue: number;
}

/** What one sale currently credits in the workspace attribution cells (attribution-cells.ts); `_id` = the sale's event `_id`. */
export interface SaleCreditDoc {
  _id: string;
  workspaceId: string;
  customerId: string;
  day: string;
  /** Compare-and-set version: each change of `rows` is won by one writer, who moves the cells. */
  v: number;
  rows: SaleRow[];
}

/** A customer's attribution version (`_id` = `${ws}:${customerId}`), moved after every refresh of its sales' credits. */
export interface AttributionHeadDoc {
  _id: string;
  workspaceId: string;
  customerId: string;
  v: number;
  /** The refresh that moved it last (tells a writer whether its move of a bulk won). */
  by?: string;
}

/** An attribution cell (attribution-cells.ts): a dimension's key, with every model's figures under the model's name. */
export type AttributionCellDoc = {
  _id: string;
  workspaceId: string;
  dim: string;
  key: string | null;
  day?: string;
  prev?: string;
} & { [model in Model]?: ModelFigures };

export type OpKind = "ingest" | "register" | "recalculate";

/** The marker of a write in flight (write-ops.ts). */
export interface OpDoc {
  _id: string;
  workspaceId: string;
  kind: OpKind;
  /** ingest: the events this op inserts or attaches. */
  eventIds: string[];
  /** recalculate (and a register marker written before registrations were batched): the customer. */
  customerId?: string;
  /** register: the customers whose creation times the op records. */
  customerIds?: string[];
  startedAt: Date;
  /** When recovery may take the op over (its writer presumed dead); a recovery lease moves it. */
  due: Date;
}

/**
 * The lease of a RebuildWorkspace in progress (write-ops.ts). One whose `until` has passed
 * belongs to a rebuild that died or failed midway, or was requested by recovery: either way
 * a rebuild is due, and the recovery sweeper runs it (recovery.ts).
 */
export interface RebuildLeaseDoc {
  _id: string;
  token: string;
  until: Date;
  /** How far the rebuild holding the lease has got (GetRebuildProgress). */
  progress?: RebuildProgress;
}

export interface RebuildProgress {
  phase: string;
  eventsDone: number;
  eventsTotal: number;
}

/** A change of a workspace's analytics that cached snapshots do not show (ListSnapshotInvalidations). */
export interface InvalidationDoc {
  _id: string;
  workspaceId: string;
  at: Date;
}

function chunks<T>(list: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** A bulk of writes in one call (the driver splits what exceeds a command's limits). */
async function bulkWrite<T extends Document>(col: Collection<T>, ops: readonly AnyBulkWriteOperation<T>[], ordered: boolean): Promise<void> {
  if (ops.length === 0) return;
  await dbCall(col.collectionName, "bulkWrite", (o) => col.bulkWrite(ops as AnyBulkWriteOperation<T>[], { ...o, ordered }));
}

/** Inserts new documents (a rebuild's) in one call. */
async function insertAll<T extends Document>(col: Collection<T>, docs: readonly T[]): Promise<void> {
  if (docs.length === 0) return;
  await dbCall(col.collectionName, "insertMany", (o) => col.insertMany(docs as OptionalUnlessRequiredId<T>[], { ...o, ordered: false }));
}

/**
 * The projection of an attribution cell onto one model's figures: a report reads one model of
 * many cells, and the other four stay out of the reply and its decoding.
 */
const modelFigures = (model: Model) => ({ key: 1, [model]: 1 });

export class AnalyticsRepository {
  readonly events: Collection<EventDoc>;
  readonly owners: Collection<ClickOwnerDoc>;
  readonly totals: Collection<TotalsDoc>;
  readonly cohortCells: Collection<CohortCellDoc>;
  readonly dayCells: Collection<CohortCellDoc>;
  readonly hourCells: Collection<HourCellDoc>;
  readonly ltvCells: Collection<LtvCellDoc>;
  readonly ops: Collection<OpDoc>;
  readonly rebuilds: Collection<RebuildLeaseDoc>;
  readonly invalidations: Collection<InvalidationDoc>;
  readonly saleCredits: Collection<SaleCreditDoc>;
  readonly attributionHeads: Collection<AttributionHeadDoc>;
  readonly attributionCells: Collection<AttributionCellDoc>;
  readonly attributionDayCells: Collection<AttributionCellDoc>;
  readonly attributionReturnCells: Collection<AttributionCellDoc>;
  /** Hourly anchor member lists (`membersOwner`). */
  readonly members: BucketLists;
  /** `bucketSize`: entries per member bucket (ANALYTICS_BUCKET_SIZE). */
  constructor(
    private readonly db: Db,
    bucketSize: number = DEFAULT_BUCKET_SIZE,
  ) {
    this.events = db.collection<EventDoc>("events");
    this.owners = db.collection<ClickOwnerDoc>("click_owners");
    this.totals = db.collection<TotalsDoc>("customer_totals");
    this.cohortCells = db.collection<CohortCellDoc>("cohort_cells");
    this.dayCells = db.collection<CohortCellDoc>("cohort_day_cells");
    this.hourCells = db.collection<HourCellDoc>("cohort_hour_cells");
    this.ltvCells = db.collection<LtvCellDoc>("ltv_cells");
    this.ops = db.collection<OpDoc>("write_ops");
    this.rebuilds = db.collection<RebuildLeaseDoc>("workspace_rebuilds");
    this.invalidations = db.collection<InvalidationDoc>("snapshot_invalidations");
    this.saleCredits = db.collection<SaleCreditDoc>("sale_credits");
    this.attributionHeads = db.collection<AttributionHeadDoc>("attribution_heads");
    this.attributionCells = db.collection<AttributionCellDoc>("attribution_cells");
    this.attributionDayCells = db.collection<AttributionCellDoc>("attribution_day_cells");
    this.attributionReturnCells = db.collection<AttributionCellDoc>("attribution_return_cells");
    this.members = new BucketLists(db.collection<ListDoc>("member_buckets"), bucketSize);
  }

  /** Documents by `_id`, 1,000 ids per query (an `_id` look-up on every backend). */
  private async byIds<T extends { _id: string }>(col: Collection<T>, ids: readonly string[]): Promise<T[]> {
    if (ids.length === 0) return [];
    const out: T[] = [];
    for (const part of chunks(ids, 1000)) {
      out.push(...((await dbCall(col.collectionName, "find", (o) => col.find({ _id: { $in: part } } as never, o).toArray())) as T[]));
    }
    return out;
  }

  /** Drops an index an older build created and this one does not (nothing when there is none). */
  async dropRetiredIndex<T extends Document>(col: Collection<T>, name: string): Promise<void> {
    if ((await this.indexNames(col)).includes(name)) await dbCall(col.collectionName, "dropIndex", (o) => col.dropIndex(name, o));
  }

  /** Drops a collection an older build kept and this one does not; false when there is none. */
  async dropRetired(name: string): Promise<boolean> {
    const found = await dbCall(name, "listCollections", (o) => this.db.listCollections({ name }, { ...o, nameOnly: true }).toArray());
    if (found.length === 0) return false;
    await dbCall(name, "drop", (o) => this.db.dropCollection(name, o));
    return true;
  }

  /** The workspace-prefixed indexes MongoDB needs for each query shape; one per command. */
  async ensureIndexes(): Promise<void> {
    // a customer's events in time order: the journey, recalculation, attribution
    await ensureIndexes(this.events, [{ key: { workspaceId: 1, customerId: 1, at: 1, _id: 1 }, name: "journey" }]);
    await ensureIndexes(this.cohortCells, [{ key: { workspaceId: 1, dim: 1 }, name: "ws_dim" }]);
    await ensureIndexes(this.dayCells, [{ key: { workspaceId: 1, dim: 1, day: 1 }, name: "ws_dim_day" }]);
    // cohort_hour_cells (workspaceId, hour): created by migrations.ts once older data has its
    // rebuilds requested (ensureHourCellIndex), as the index's absence is how it finds that data.
    await ensureIndexes(this.ltvCells, [{ key: { workspaceId: 1, cohortMonth: 1 }, name: "ws_month" }]);
    await ensureIndexes(this.attributionCells, [{ key: { workspaceId: 1, dim: 1 }, name: "ws_dim" }]);
    await ensureIndexes(this.attributionDayCells, [{ key: { workspaceId: 1, dim: 1, day: 1 }, name: "ws_dim_day" }]);
    // `prev` in the key: a range report's condition on it is answered from the index, so only the
    // cells it counts are read (a quarter of a 90-day range's at 100,000 events)
    await ensureIndexes(this.attributionReturnCells, [{ key: { workspaceId: 1, dim: 1, day: 1, prev: 1 }, name: "ws_dim_day_prev" }]);
    // a rebuild's drop
    await ensureIndexes(this.saleCredits, [{ key: { workspaceId: 1 }, name: "workspace" }]);
    await ensureIndexes(this.attributionHeads, [{ key: { workspaceId: 1 }, name: "workspace" }]);
    await this.members.ensureIndexes();
    // recovery finds due markers; a rebuild waits for the markers of its workspace
    await ensureIndexes(this.ops, [
      { key: { due: 1 }, name: "due" },
      { key: { workspaceId: 1 }, name: "workspace" },
    ]);
    // recovery finds rebuilds that are due (died midway, failed, or requested)
    await ensureIndexes(this.rebuilds, [{ key: { until: 1 }, name: "until" }]);
    // the invalidation channel is read and pruned by time
    await ensureIndexes(this.invalidations, [{ key: { at: 1 }, name: "at" }]);
  }

  // -- events -----------------------------------------------------------------------------------

  /** Inserts what is new; returns the _ids that were already stored (replays). */
  insertEvents(docs: readonly EventDoc[]): Promise<Set<string>> {
    return insertManyNew(this.events, docs);
  }

  findEvents(ids: readonly string[]): Promise<EventDoc[]> {
    return this.byIds(this.events as never, ids) as Promise<EventDoc[]>;
  }

  /** Gives an unclaimed stored click to its owner; the click as it was, or null when none was attached. */
  async attachClick(id: string, customerId: string, opId: string): Promise<EventDoc | null> {
    return dbCall("events", "findOneAndUpdate", (o) =>
      this.events.findOneAndUpdate({ _id: id, customerId: null } as never, { $set: { customerId, opId } }, { ...o, returnDocument: "after" }),
    );
  }

  customerEvents(ws: string, customerId: string): Promise<EventDoc[]> {
    return dbCall("events", "find", (o) => this.events.find({ workspaceId: ws, customerId }, o).sort({ at: 1, _id: 1 }).toArray());
  }

  /**
   * A customer's events in (at, _id) order within [start, end], `limit` of them from `skip`
   * (limit 0: all), and how many there are in the range: a page and a count on the `journey`
   * index, whatever the customer's number of events.
   */
  async journey(ws: string, customerId: string, start: number | undefined, end: number | undefined, skip: number, limit: number): Promise<{ events: EventDoc[]; total: number }> {
    const filter: Document = { workspaceId: ws, customerId };
    if (start !== undefined || end !== undefined) {
      filter["at"] = { ...(start !== undefined ? { $gte: new Date(start) } : {}), ...(end !== undefined ? { $lte: new Date(end) } : {}) };
    }
    const [events, total] = await Promise.all([
      dbCall("events", "find", (o) => {
        const cursor = this.events.find(filter as never, o).sort({ at: 1, _id: 1 }).skip(skip);
        return (limit === 0 ? cursor : cursor.limit(limit)).toArray();
      }),
      dbCall("events", "countDocuments", (o) => this.events.countDocuments(filter as never, o)),
    ]);
    return { events, total };
  }

  /** Customers' clicks and sales (what attribution credits), on the `journey` index. */
  customersClicksAndSales(ws: string, customerIds: readonly string[]): Promise<EventDoc[]> {
    if (customerIds.length === 0) return Promise.resolve([]);
    const customerId = customerIds.length === 1 ? customerIds[0]! : { $in: [...new Set(customerIds)] };
    return dbCall("events", "find", (o) => this.events.find({ workspaceId: ws, customerId, type: { $in: ["click", "sale"] } } as never, o).toArray());
  }

  /** Removes PII from a customer's events; returns how many changed. */
  async scrub(ws: string, customerId: string): Promise<number> {
    const filter = {
      workspaceId: ws,
      customerId,
      $or: [{ email: { $exists: true } }, { name: { $exists: true } }, { metadata: { $exists: true } }, { externalId: { $exists: true } }],
    };
    const r = await dbCall("events", "updateMany", (o) => this.events.updateMany(filter as never, { $unset: { email: "", name: "", metadata: "", externalId: "" } }, o));
    return r.modifiedCount;
  }

  /** Every event of a workspace, streamed (a rebuild's scan). */
  workspaceEvents(ws: string): AsyncGenerator<EventDoc> {
    return dbStream("events", "find", (o) => this.events.find({ workspaceId: ws }, o));
  }

  // -- click owners -----------------------------------------------------------------------------

  async findOwners(ws: string, clickIds: readonly string[]): Promise<Map<string, string>> {
    const docs = await this.byIds(this.owners, [...new Set(clickIds)].map((c) => `${ws}:${c}`));
    return new Map(docs.map((d) => [d.clickId, d.customerId]));
  }

  /** Claims clicks for customers; a click already claimed keeps its owner. Returns the ones this call claimed. */
  async claimClicks(docs: readonly ClickOwnerDoc[]): Promise<Set<string>> {
    const taken = await insertManyNew(this.owners, docs);
    return new Set(docs.filter((d) => !taken.has(d._id)).map((d) => d.clickId));
  }

  // -- totals -----------------------------------------------------------------------------------

  async findTotals(ws: string, customerIds: readonly string[]): Promise<Map<string, TotalsDoc>> {
    const docs = await this.byIds(this.totals, [...new Set(customerIds)].map((c) => `${ws}:${c}`));
    return new Map(docs.map((d) => [d.customerId, d]));
  }

  /** Writes a totals doc if it is still at `expectedVersion` (0 = not stored yet). False on conflict. */
  async writeTotals(doc: TotalsDoc, expectedVersion: number): Promise<boolean> {
    if (expectedVersion === 0) return insertIfAbsent(this.totals, doc);
    const { _id, ...rest } = doc;
    const r = await dbCall("customer_totals", "replaceOne", (o) => this.totals.replaceOne({ _id, version: expectedVersion }, rest, o));
    return r.matchedCount === 1;
  }

  /**
   * Writes many totals documents, each if it is still at its expected version, in at most two
   * commands: an insert of the first versions (a duplicate key = another writer was first) and a
   * bulk of conditional replaces. Returns the customers whose first version was taken by another
   * writer, and how many replaces matched (which ones, the caller finds out by reading).
   */
  async writeTotalsMany(writes: ReadonlyArray<{ doc: TotalsDoc; expectedVersion: number }>): Promise<{ insertLost: Set<string>; replaced: number }> {
    const inserts = writes.filter((w) => w.expectedVersion === 0).map((w) => w.doc);
    const replaces = writes.filter((w) => w.expectedVersion !== 0);
    const [taken, replaced] = await Promise.all([
      insertManyNew(this.totals, inserts),
      replaces.length === 0
        ? Promise.resolve(0)
        : dbCall("customer_totals", "bulkWrite", async (o) => {
            const ops: AnyBulkWriteOperation<TotalsDoc>[] = replaces.map(({ doc: { _id, ...rest }, expectedVersion }) => ({
              replaceOne: { filter: { _id, version: expectedVersion }, replacement: rest },
            }));
            return (await this.totals.bulkWrite(ops, { ...o, ordered: false })).matchedCount;
          }),
    ]);
    return { insertLost: new Set(inserts.filter((d) => taken.has(d._id)).map((d) => d.customerId)), replaced };
  }

  // -- anchor members ---------------------------------------------------------------------------

  /**
   * The customers anchored in any of the intervals [from, to] (milliseconds), from the member
   * lists of the hours they cover, in one read. Lists keep the anchors customers had before (a
   * late event moves a first touch): callers check candidates against the totals.
   */
  async membersBetween(ws: string, intervals: ReadonlyArray<readonly [number, number]>): Promise<string[]> {
    const owners = new Set<string>();
    for (const [from, to] of intervals) {
      for (let t = from - (from % 3_600_000); t <= to; t += 3_600_000) owners.add(membersOwner(ws, new Date(t).toISOString().slice(0, 13)));
    }
    if (owners.size === 0) return [];
    const out = new Set<string>();
    for (const e of (await this.members.read([...owners])).map(parseTimeEntry)) {
      const at = e.at.getTime();
      if (intervals.some(([from, to]) => at >= from && at <= to)) out.add(e.ref);
    }
    return [...out];
  }

  /**
   * Adds customers' new anchors to the member lists of their hours. Old anchors stay listed:
   * entries are only ever added, so concurrent moves cannot lose a current one, and a customer's
   * anchor moves rarely (a late first touch, the first event after registration).
   */
  addMembers(ws: string, members: ReadonlyArray<AnchorMember>): Promise<void> {
    const byHour = new Map<string, string[]>();
    for (const m of members) {
      const owner = membersOwner(ws, m.hour);
      const list = byHour.get(owner) ?? [];
      list.push(m.entry);
      byHour.set(owner, list);
    }
    return this.members.append(ws, byHour);
  }

  /** Inserts whole member lists, by hour (a rebuild's, after its drop). */
  insertMembersMany(ws: string, entriesOf: ReadonlyMap<string, readonly string[]>): Promise<void> {
    return insertAll(this.members.col, this.members.docsOf(ws, new Map([...entriesOf].map(([hour, entries]) => [membersOwner(ws, hour), entries]))));
  }

  /** Every totals document of a workspace, streamed (a rebuild's scan). */
  workspaceTotals(ws: string): AsyncGenerator<TotalsDoc> {
    return dbStream("customer_totals", "find", (o) => this.totals.find({ workspaceId: ws }, o));
  }

  // -- cells ------------------------------------------------------------------------------------

  private cellCollection(name: CellDelta["collection"]): Collection<never> {
    const cols = { cohort_cells: this.cohortCells, cohort_day_cells: this.dayCells, cohort_hour_cells: this.hourCells, ltv_cells: this.ltvCells };
    return cols[name] as never;
  }

  /** $inc upserts, one bulkWrite per collection, the collections at once. */
  async applyDeltas(deltas: readonly CellDelta[]): Promise<void> {
    const byCollection = new Map<CellDelta["collection"], CellDelta[]>();
    for (const d of deltas) {
      const list = byCollection.get(d.collection) ?? [];
      list.push(d);
      byCollection.set(d.collection, list);
    }
    await Promise.all(
      [...byCollection].map(([name, list]) => {
        const ops: AnyBulkWriteOperation<never>[] = list.map((d) => ({
          updateOne: { filter: { _id: d.id }, update: { $inc: d.inc, $set: d.fields } as never, upsert: true },
        }));
        return bulkWrite(this.cellCollection(name), ops, false);
      }),
    );
  }

  cohortCellsOf(ws: string, dim: CohortDimension): Promise<CohortCellDoc[]> {
    return dbCall("cohort_cells", "find", (o) => this.cohortCells.find({ workspaceId: ws, dim }, o).toArray());
  }

  dayCellsOf(ws: string, dim: DayDimension, fromDay: string, toDay: string): Promise<CohortCellDoc[]> {
    return dbCall("cohort_day_cells", "find", (o) => this.dayCells.find({ workspaceId: ws, dim, day: { $gte: fromDay, $lte: toDay } }, o).toArray());
  }

  dayCellsByIds(ids: readonly string[]): Promise<CohortCellDoc[]> {
    return this.byIds(this.dayCells, ids);
  }

  /** The hour cells of [fromHour, toHour] ("2026-01-05T13", inclusive), through the (workspaceId, hour) index. */
  hourCellsBetween(ws: string, fromHour: string, toHour: string): Promise<HourCellDoc[]> {
    return dbCall("cohort_hour_cells", "find", (o) => this.hourCells.find({ workspaceId: ws, hour: { $gte: fromHour, $lte: toHour } }, o).toArray());
  }

  /** Whether `cohort_hour_cells` has its index yet (false too while the collection does not exist). */
  /** The names of a collection's indexes; none when the collection does not exist yet. */
  async indexNames<T extends Document>(col: Collection<T>): Promise<string[]> {
    return dbCall(col.collectionName, "listIndexes", async (o) => {
      try {
        return (await col.listIndexes(o).toArray()).map((i) => i["name"] as string);
      } catch (err) {
        if ((err as { code?: unknown }).code === 26) return []; // NamespaceNotFound: no collection yet
        throw err;
      }
    });
  }

  async hasHourCellIndex(): Promise<boolean> {
    return (await this.indexNames(this.hourCells)).includes(HOUR_CELL_INDEX);
  }

  async ensureHourCellIndex(): Promise<void> {
    await ensureIndexes(this.hourCells, [{ key: { workspaceId: 1, hour: 1 }, name: HOUR_CELL_INDEX }]);
  }

  /** The workspaces that have day cells (one scan of `cohort_day_cells`; the migration's). */
  async workspacesWithDayCells(): Promise<string[]> {
    const rows = await dbCall("cohort_day_cells", "aggregate", (o) => this.dayCells.aggregate<{ _id: string }>([{ $group: { _id: "$workspaceId" } }], o).toArray());
    return rows.map((r) => r._id);
  }

  ltvCellsOf(ws: string, months: readonly string[]): Promise<LtvCellDoc[]> {
    return dbCall("ltv_cells", "find", (o) => this.ltvCells.find({ workspaceId: ws, cohortMonth: { $in: [...months] } }, o).toArray());
  }

  monthCohortCells(ws: string, months: readonly string[]): Promise<CohortCellDoc[]> {
    return dbCall("cohort_cells", "find", (o) => this.cohortCells.find({ workspaceId: ws, dim: "month", key: { $in: [...months] } }, o).toArray());
  }

  async dropWorkspaceRollups(ws: string): Promise<void> {
    const attribution = [this.saleCredits, this.attributionHeads, this.attributionCells, this.attributionDayCells, this.attributionReturnCells];
    for (const col of [this.cohortCells, this.dayCells, this.hourCells, this.ltvCells, this.totals, this.members.col, ...attribution] as unknown as Collection<never>[]) {
      await dbCall(col.collectionName, "deleteMany", (o) => col.deleteMany({ workspaceId: ws } as never, o));
    }
  }

  insertTotalsMany(docs: readonly TotalsDoc[]): Promise<void> {
    return insertAll(this.totals, docs);
  }

  // -- workspace attribution (attribution-rollups.ts) -------------------------------------------

  async findAttributionHeads(ws: string, customerIds: readonly string[]): Promise<Map<string, number>> {
    const docs = await this.byIds(this.attributionHeads, customerIds.map((c) => `${ws}:${c}`));
    return new Map(docs.map((d) => [d.customerId, d.v]));
  }

  /**
   * Moves customers' attribution versions from the ones read (0 = none yet) to the next, as
   * refresh `token`, in at most two commands (an insert of first versions, a bulk of conditional
   * updates); returns the customers whose move won. When some update did not match, the heads are
   * read back: a move counts as won only while the head still carries it (one moved on by another
   * writer since counts as lost, and its refresh runs again, which is harmless).
   */
  async moveAttributionHeads(ws: string, moves: ReadonlyArray<{ customerId: string; expected: number }>, token: string): Promise<Set<string>> {
    const inserts = moves.filter((m) => m.expected === 0);
    const updates = moves.filter((m) => m.expected !== 0);
    const [taken, matched] = await Promise.all([
      insertManyNew(this.attributionHeads, inserts.map((m) => ({ _id: `${ws}:${m.customerId}`, workspaceId: ws, customerId: m.customerId, v: 1, by: token }))),
      updates.length === 0
        ? Promise.resolve(0)
        : dbCall("attribution_heads", "bulkWrite", async (o) => {
            const ops: AnyBulkWriteOperation<AttributionHeadDoc>[] = updates.map((m) => ({
              updateOne: { filter: { _id: `${ws}:${m.customerId}`, v: m.expected }, update: { $set: { v: m.expected + 1, by: token } } },
            }));
            return (await this.attributionHeads.bulkWrite(ops, { ...o, ordered: false })).matchedCount;
          }),
    ]);
    const won = new Set(inserts.filter((m) => !taken.has(`${ws}:${m.customerId}`)).map((m) => m.customerId));
    if (matched === updates.length) for (const m of updates) won.add(m.customerId);
    else {
      const now = new Map((await this.byIds(this.attributionHeads, updates.map((m) => `${ws}:${m.customerId}`))).map((d) => [d.customerId, d]));
      for (const m of updates) if (now.get(m.customerId)?.by === token && now.get(m.customerId)?.v === m.expected + 1) won.add(m.customerId);
    }
    return won;
  }

  findSaleCredits(saleIds: readonly string[]): Promise<SaleCreditDoc[]> {
    return this.byIds(this.saleCredits, saleIds);
  }

  /** Inserts first credits of sales in one command; returns the `_id`s another writer stored first. */
  insertSaleCreditsNew(docs: readonly SaleCreditDoc[]): Promise<Set<string>> {
    return insertManyNew(this.saleCredits, docs);
  }

  /** Replaces a sale's credits if they are still at version `expected`; false when another writer was first. */
  async replaceSaleCredits(doc: SaleCreditDoc, expected: number): Promise<boolean> {
    const { _id, ...rest } = doc;
    const r = await dbCall("sale_credits", "replaceOne", (o) => this.saleCredits.replaceOne({ _id, v: expected }, rest, o));
    return r.matchedCount === 1;
  }

  insertSaleCreditsMany(docs: readonly SaleCreditDoc[]): Promise<void> {
    return insertAll(this.saleCredits, docs);
  }

  insertAttributionHeadsMany(docs: readonly AttributionHeadDoc[]): Promise<void> {
    return insertAll(this.attributionHeads, docs);
  }

  /** $inc upserts of attribution cells, one bulkWrite per collection, the collections at once. */
  async applyAttributionDeltas(deltas: readonly AttributionDelta[]): Promise<void> {
    const cols = { attribution_cells: this.attributionCells, attribution_day_cells: this.attributionDayCells, attribution_return_cells: this.attributionReturnCells };
    await Promise.all(
      (Object.keys(cols) as Array<keyof typeof cols>).map((name) => {
        const ops: AnyBulkWriteOperation<AttributionCellDoc>[] = deltas
          .filter((d) => d.collection === name)
          .map((d) => ({ updateOne: { filter: { _id: d.id }, update: { $inc: d.inc, $set: d.fields } as never, upsert: true } }));
        return bulkWrite(cols[name], ops, false);
      }),
    );
  }

  attributionCellsOf(ws: string, dim: string, model: Model): Promise<AttributionCellDoc[]> {
    return dbCall("attribution_cells", "find", (o) => this.attributionCells.find({ workspaceId: ws, dim }, { ...o, projection: modelFigures(model) }).toArray());
  }

  attributionDayCellsOf(ws: string, dim: string, fromDay: string, toDay: string, model: Model): Promise<AttributionCellDoc[]> {
    return dbCall("attribution_day_cells", "find", (o) =>
      this.attributionDayCells.find({ workspaceId: ws, dim, day: { $gte: fromDay, $lte: toDay } }, { ...o, projection: modelFigures(model) }).toArray(),
    );
  }

  /** Return cells of the days in range whose previous day is before `fromDay` (attribution-cells.ts). */
  attributionReturnCellsOf(ws: string, dim: string, fromDay: string, toDay: string, model: Model): Promise<AttributionCellDoc[]> {
    return dbCall("attribution_return_cells", "find", (o) =>
      this.attributionReturnCells.find({ workspaceId: ws, dim, day: { $gte: fromDay, $lte: toDay }, prev: { $lt: fromDay } }, { ...o, projection: modelFigures(model) }).toArray(),
    );
  }

  // -- op markers and rebuild leases (write-ops.ts) --------------------------------------------

  async insertOp(doc: OpDoc): Promise<void> {
    await dbCall("write_ops", "insertOne", (o) => this.ops.insertOne(doc, o));
  }

  async deleteOp(id: string): Promise<void> {
    await dbCall("write_ops", "deleteOne", (o) => this.ops.deleteOne({ _id: id }, o));
  }

  /** Markers due for recovery, oldest first (the `due` index). */
  dueOps(now: Date, limit: number): Promise<OpDoc[]> {
    return dbCall("write_ops", "find", (o) => this.ops.find({ due: { $lte: now } }, o).sort({ due: 1 }).limit(limit).toArray());
  }

  /** Moves a marker's `due` if it is still the one read; false when another process moved it (or it is gone). */
  async moveOpDue(op: OpDoc, due: Date): Promise<boolean> {
    const r = await dbCall("write_ops", "updateOne", (o) => this.ops.updateOne({ _id: op._id, due: op.due }, { $set: { due } }, o));
    return r.matchedCount > 0;
  }

  /** The markers of a workspace's writes (the `workspaceId` index). */
  workspaceOps(ws: string): Promise<OpDoc[]> {
    return dbCall("write_ops", "find", (o) => this.ops.find({ workspaceId: ws }, { ...o, projection: { eventIds: 0 } }).toArray());
  }

  /** Deletes a marker if it is still due at `due` (nobody leased it since it was read). */
  async deleteOpIfDue(op: OpDoc): Promise<boolean> {
    const r = await dbCall("write_ops", "deleteOne", (o) => this.ops.deleteOne({ _id: op._id, due: op.due }, o));
    return r.deletedCount > 0;
  }

  findRebuildLease(ws: string): Promise<RebuildLeaseDoc | null> {
    return dbCall("workspace_rebuilds", "findOne", (o) => this.rebuilds.findOne({ _id: ws }, o));
  }

  insertRebuildLease(doc: RebuildLeaseDoc): Promise<boolean> {
    return insertIfAbsent(this.rebuilds, doc);
  }

  /** Replaces the lease held under `token` (a take-over of an expired one, or a renewal); false when it changed. */
  async replaceRebuildLease(ws: string, token: string, next: Omit<RebuildLeaseDoc, "_id">): Promise<boolean> {
    const r = await dbCall("workspace_rebuilds", "replaceOne", (o) => this.rebuilds.replaceOne({ _id: ws, token }, next, o));
    return r.matchedCount > 0;
  }

  /** Extends the lease held under `token`; false when it changed (taken over). */
  async renewRebuildLease(ws: string, token: string, until: Date): Promise<boolean> {
    const r = await dbCall("workspace_rebuilds", "updateOne", (o) => this.rebuilds.updateOne({ _id: ws, token }, { $set: { until } }, o));
    return r.matchedCount > 0;
  }

  async setRebuildProgress(ws: string, token: string, progress: RebuildProgress): Promise<void> {
    await dbCall("workspace_rebuilds", "updateOne", (o) => this.rebuilds.updateOne({ _id: ws, token }, { $set: { progress } }, o));
  }

  /** How many events a workspace has (a count on the `journey` index). */
  countWorkspaceEvents(ws: string): Promise<number> {
    return dbCall("events", "countDocuments", (o) => this.events.countDocuments({ workspaceId: ws }, o));
  }

  async deleteRebuildLease(ws: string, token: string): Promise<void> {
    await dbCall("workspace_rebuilds", "deleteOne", (o) => this.rebuilds.deleteOne({ _id: ws, token }, o));
  }

  /** Leases whose time has passed: rebuilds that are due (the `until` index). */
  dueRebuilds(now: Date, limit: number): Promise<RebuildLeaseDoc[]> {
    return dbCall("workspace_rebuilds", "find", (o) => this.rebuilds.find({ until: { $lte: now } }, o).sort({ until: 1 }).limit(limit).toArray());
  }

  /** Lets the lease held under `token` expire now, so the rebuild is due again; false when it changed. */
  async expireRebuildLease(ws: string, token: string, now: Date): Promise<boolean> {
    const r = await dbCall("workspace_rebuilds", "updateOne", (o) => this.rebuilds.updateOne({ _id: ws, token }, { $set: { until: now } }, o));
    return r.matchedCount > 0;
  }

  // -- the snapshot invalidation channel (ListSnapshotInvalidations) ----------------------------

  async insertInvalidation(doc: InvalidationDoc): Promise<void> {
    await dbCall("snapshot_invalidations", "insertOne", (o) => this.invalidations.insertOne(doc, o));
  }

  /** Entries recorded at or after `since`, oldest first (the `at` index). */
  invalidationsSince(since: Date, limit: number): Promise<InvalidationDoc[]> {
    return dbCall("snapshot_invalidations", "find", (o) => this.invalidations.find({ at: { $gte: since } }, o).sort({ at: 1 }).limit(limit).toArray());
  }

  async deleteInvalidationsBefore(before: Date): Promise<void> {
    await dbCall("snapshot_invalidations", "deleteMany", (o) => this.invalidations.deleteMany({ at: { $lt: before } }, o));
  }
}
