/**
 * The analytics plugin's collections (see README.md for the model):
 * - `events`: raw events, `_id` = the idempotency key (`${ws}:click:${clickId}`, ...);
 * - `click_owners`: `_id` = `${ws}:${clickId}` → the customer a click belongs to;
 * - `customer_totals`: `_id` = `${ws}:${customerId}`, the fold of the customer's events;
 * - `cohort_cells`, `cohort_day_cells`, `ltv_cells`: rollups kept with `$inc` upserts on
 *   deterministic `_id`s;
 * - `ingest_ops`: one marker per in-flight ingestion, deleted when it is fully applied.
 * Every call goes through dbCall, which maps driver errors to RPC codes.
 */
import type { AnyBulkWriteOperation, Collection, Db, Document, OptionalUnlessRequiredId } from "mongodb";
import { dbCall, insertIfAbsent, insertManyNew } from "@linquid/mesh";
import type { IncomingEvent } from "./validation.js";
import { parseTimeEntry, timeEntry, touchBefore, type CellDelta, type CohortDimension, type DayDimension, type AnchorMember, type TotalsState } from "./totals.js";

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
 * A customer's timeline: one entry, "<ISO time>|<event _id>", per event folded into its totals,
 * kept at write time so that a journey page costs two `_id` reads (this document, then the
 * page's events) however large the workspace's event collection grows.
 */
export interface TimelineDoc {
  _id: string;
  workspaceId: string;
  customerId: string;
  entries: string[];
}

/** The timeline entry of an event; entries sort like events by (at, _id) once parsed. */
export function timelineEntry(e: { at: Date; _id: string }): string {
  return timeEntry(e.at, e._id);
}

/**
 * The customers whose cohort anchor (first touch, else creation time) falls in one UTC hour:
 * "<anchor ISO>|<customerId>" entries, kept at write time, so that the partial boundary days of
 * a cohort range read at most 24 documents by `_id` instead of searching every customer's
 * totals. Hours, not days, keep each document small in a workspace that imports a day's worth
 * of millions of customers.
 */
export interface MembersDoc {
  _id: string;
  workspaceId: string;
  hour: string;
  entries: string[];
}

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

export interface LtvCellDoc {
  _id: string;
  workspaceId: string;
  cohortMonth: string;
  offset: number;
  revenue: number;
}

export interface OpDoc {
  _id: string;
  workspaceId: string;
  /** Events this op inserts or attaches. */
  eventIds: string[];
  startedAt: Date;
}

/** FerretDB v1 stops answering a bulk update of 100 or more existing documents; stay below. */
const BULK_CHUNK = 50;

function chunks<T>(list: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** A bulk of writes in chunks of BULK_CHUNK, one after another. */
async function bulkWriteChunked<T extends Document>(col: Collection<T>, ops: readonly AnyBulkWriteOperation<T>[], ordered: boolean): Promise<void> {
  for (const part of chunks(ops, BULK_CHUNK)) await dbCall(col.collectionName, "bulkWrite", () => col.bulkWrite(part, { ordered }));
}

/** Inserts new documents (a rebuild's), 1,000 per command. */
async function insertAll<T extends Document>(col: Collection<T>, docs: readonly T[]): Promise<void> {
  for (const part of chunks(docs, 1000)) await dbCall(col.collectionName, "insertMany", () => col.insertMany(part as OptionalUnlessRequiredId<T>[], { ordered: false }));
}

export class AnalyticsRepository {
  readonly events: Collection<EventDoc>;
  readonly owners: Collection<ClickOwnerDoc>;
  readonly totals: Collection<TotalsDoc>;
  readonly cohortCells: Collection<CohortCellDoc>;
  readonly dayCells: Collection<CohortCellDoc>;
  readonly ltvCells: Collection<LtvCellDoc>;
  readonly ops: Collection<OpDoc>;
  readonly timelines: Collection<TimelineDoc>;
  readonly members: Collection<MembersDoc>;
  constructor(db: Db) {
    this.events = db.collection<EventDoc>("events");
    this.owners = db.collection<ClickOwnerDoc>("click_owners");
    this.totals = db.collection<TotalsDoc>("customer_totals");
    this.cohortCells = db.collection<CohortCellDoc>("cohort_cells");
    this.dayCells = db.collection<CohortCellDoc>("cohort_day_cells");
    this.ltvCells = db.collection<LtvCellDoc>("ltv_cells");
    this.ops = db.collection<OpDoc>("ingest_ops");
    this.timelines = db.collection<TimelineDoc>("customer_timelines");
    this.members = db.collection<MembersDoc>("cohort_members");
  }

  /** Documents by `_id` (the embedded FerretDB answers `_id` and `_id: {$in}` from its index). */
  private async byIds<T extends { _id: string }>(col: Collection<T>, ids: readonly string[]): Promise<T[]> {
    if (ids.length === 0) return [];
    const out: T[] = [];
    for (const part of chunks(ids, 1000)) {
      out.push(...((await dbCall(col.collectionName, "find", () => col.find({ _id: { $in: part } } as never).toArray())) as T[]));
    }
    return out;
  }

  /** The workspace-prefixed indexes MongoDB needs for each query shape; one per command. */
  async ensureIndexes(): Promise<void> {
    const specs: Array<[Collection<never>, Document, string]> = [
      [this.events as never, { workspaceId: 1, customerId: 1, at: 1, _id: 1 }, "journey"],
      [this.cohortCells as never, { workspaceId: 1, dim: 1 }, "ws_dim"],
      [this.dayCells as never, { workspaceId: 1, dim: 1, day: 1 }, "ws_dim_day"],
      [this.ltvCells as never, { workspaceId: 1, cohortMonth: 1 }, "ws_month"],
      [this.ops as never, { startedAt: 1 }, "started"],
    ];
    for (const [col, keys, name] of specs) {
      await dbCall(col.collectionName, "createIndex", () => col.createIndex(keys, { name }));
    }
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
    return dbCall("events", "findOneAndUpdate", () =>
      this.events.findOneAndUpdate({ _id: id, customerId: null } as never, { $set: { customerId, opId } }, { returnDocument: "after" }),
    );
  }

  customerEvents(ws: string, customerId: string): Promise<EventDoc[]> {
    return dbCall("events", "find", () => this.events.find({ workspaceId: ws, customerId }).sort({ at: 1, _id: 1 }).toArray());
  }

  /**
   * A customer's events in (at, _id) order within [start, end], `limit` of them from `skip`
   * (limit 0: all), and how many there are in the range: read through its timeline.
   */
  async journey(ws: string, customerId: string, start: number | undefined, end: number | undefined, skip: number, limit: number): Promise<{ events: EventDoc[]; total: number }> {
    const doc = await dbCall("customer_timelines", "findOne", () => this.timelines.findOne({ _id: `${ws}:${customerId}` }));
    const entries = (doc?.entries ?? [])
      .map(parseTimeEntry)
      .filter((e) => (start === undefined || e.at.getTime() >= start) && (end === undefined || e.at.getTime() <= end))
      .sort((a, b) => (touchBefore(a, b) ? -1 : touchBefore(b, a) ? 1 : 0));
    const page = entries.slice(skip, limit === 0 ? undefined : skip + limit).map((e) => e.ref);
    const byId = new Map((await this.findEvents(page)).map((e) => [e._id, e]));
    return { events: page.map((id) => byId.get(id)).filter((e): e is EventDoc => e !== undefined), total: entries.length };
  }

  /** Adds events to their customers' timelines (idempotent: $addToSet). */
  async addToTimelines(ws: string, byCustomer: ReadonlyMap<string, readonly EventDoc[]>): Promise<void> {
    const ops: AnyBulkWriteOperation<TimelineDoc>[] = [...byCustomer].map(([customerId, events]) => ({
      updateOne: {
        filter: { _id: `${ws}:${customerId}` },
        update: { $addToSet: { entries: { $each: events.map(timelineEntry) } }, $setOnInsert: { workspaceId: ws, customerId } },
        upsert: true,
      },
    }));
    await bulkWriteChunked(this.timelines, ops, false);
  }

  /** Replaces a customer's timeline with exactly these events. */
  async setTimeline(ws: string, customerId: string, events: readonly EventDoc[]): Promise<void> {
    const doc = { workspaceId: ws, customerId, entries: events.map(timelineEntry) };
    await dbCall("customer_timelines", "replaceOne", () => this.timelines.replaceOne({ _id: `${ws}:${customerId}` }, doc, { upsert: true }));
  }

  insertTimelinesMany(docs: readonly TimelineDoc[]): Promise<void> {
    return insertAll(this.timelines, docs);
  }

  /** Removes PII from a customer's events; returns how many changed. */
  async scrub(ws: string, customerId: string): Promise<number> {
    const filter = {
      workspaceId: ws,
      customerId,
      $or: [{ email: { $exists: true } }, { name: { $exists: true } }, { metadata: { $exists: true } }, { externalId: { $exists: true } }],
    };
    const r = await dbCall("events", "updateMany", () =>
      this.events.updateMany(filter as never, { $unset: { email: "", name: "", metadata: "", externalId: "" } }),
    );
    return r.modifiedCount;
  }

  workspaceEvents(ws: string) {
    return this.events.find({ workspaceId: ws });
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
    const r = await dbCall("customer_totals", "replaceOne", () => this.totals.replaceOne({ _id, version: expectedVersion }, rest));
    return r.matchedCount === 1;
  }

  // -- anchor members ---------------------------------------------------------------------------

  /**
   * The customers anchored in [from, to] (milliseconds, within one day), from the member lists
   * of the hours it covers. Entries may be stale after a crash: callers check the totals.
   */
  async membersBetween(ws: string, from: number, to: number): Promise<string[]> {
    const ids: string[] = [];
    for (let t = from - (from % 3_600_000); t <= to; t += 3_600_000) ids.push(`${ws}|${new Date(t).toISOString().slice(0, 13)}`);
    const out: string[] = [];
    for (const doc of await this.byIds(this.members, ids)) {
      for (const e of doc.entries.map(parseTimeEntry)) {
        if (e.at.getTime() >= from && e.at.getTime() <= to) out.push(e.ref);
      }
    }
    return out;
  }

  /** Moves customers between member lists: $pull the old entry, $addToSet the new one. */
  async moveMembers(ws: string, moves: ReadonlyArray<{ before: AnchorMember | null; after: AnchorMember | null }>): Promise<void> {
    const ops: AnyBulkWriteOperation<MembersDoc>[] = [];
    for (const { before, after } of moves) {
      if (before?.entry === after?.entry) continue;
      if (before !== null) ops.push({ updateOne: { filter: { _id: `${ws}|${before.hour}` }, update: { $pull: { entries: before.entry } } } });
      if (after !== null) {
        ops.push({
          updateOne: { filter: { _id: `${ws}|${after.hour}` }, update: { $addToSet: { entries: after.entry }, $setOnInsert: { workspaceId: ws, hour: after.hour } }, upsert: true },
        });
      }
    }
    // Ordered: a customer moving within one hour has its old entry pulled before the new one is added.
    await bulkWriteChunked(this.members, ops, true);
  }

  insertMembersMany(docs: readonly MembersDoc[]): Promise<void> {
    return insertAll(this.members, docs);
  }

  workspaceTotals(ws: string) {
    return this.totals.find({ workspaceId: ws });
  }

  // -- cells ------------------------------------------------------------------------------------

  private cellCollection(name: CellDelta["collection"]): Collection<never> {
    return (name === "cohort_cells" ? this.cohortCells : name === "cohort_day_cells" ? this.dayCells : this.ltvCells) as never;
  }

  /** $inc upserts, in chunks the embedded FerretDB handles. */
  async applyDeltas(deltas: readonly CellDelta[]): Promise<void> {
    const byCollection = new Map<CellDelta["collection"], CellDelta[]>();
    for (const d of deltas) {
      const list = byCollection.get(d.collection) ?? [];
      list.push(d);
      byCollection.set(d.collection, list);
    }
    for (const [name, list] of byCollection) {
      const ops: AnyBulkWriteOperation<never>[] = list.map((d) => ({
        updateOne: { filter: { _id: d.id }, update: { $inc: d.inc, $set: d.fields } as never, upsert: true },
      }));
      await bulkWriteChunked(this.cellCollection(name), ops, false);
    }
  }

  cohortCellsOf(ws: string, dim: CohortDimension): Promise<CohortCellDoc[]> {
    return dbCall("cohort_cells", "find", () => this.cohortCells.find({ workspaceId: ws, dim }).toArray());
  }

  dayCellsOf(ws: string, dim: DayDimension, fromDay: string, toDay: string): Promise<CohortCellDoc[]> {
    return dbCall("cohort_day_cells", "find", () => this.dayCells.find({ workspaceId: ws, dim, day: { $gte: fromDay, $lte: toDay } }).toArray());
  }

  dayCellsByIds(ids: readonly string[]): Promise<CohortCellDoc[]> {
    return this.byIds(this.dayCells, ids);
  }

  ltvCellsOf(ws: string, months: readonly string[]): Promise<LtvCellDoc[]> {
    return dbCall("ltv_cells", "find", () => this.ltvCells.find({ workspaceId: ws, cohortMonth: { $in: [...months] } }).toArray());
  }

  monthCohortCells(ws: string, months: readonly string[]): Promise<CohortCellDoc[]> {
    return dbCall("cohort_cells", "find", () => this.cohortCells.find({ workspaceId: ws, dim: "month", key: { $in: [...months] } }).toArray());
  }

  async dropWorkspaceRollups(ws: string): Promise<void> {
    for (const col of [this.cohortCells, this.dayCells, this.ltvCells, this.totals, this.timelines, this.members] as unknown as Collection<never>[]) {
      await dbCall(col.collectionName, "deleteMany", () => col.deleteMany({ workspaceId: ws } as never));
    }
  }

  insertTotalsMany(docs: readonly TotalsDoc[]): Promise<void> {
    return insertAll(this.totals, docs);
  }

  // -- op markers -------------------------------------------------------------------------------

  async startOp(doc: OpDoc): Promise<void> {
    await dbCall("ingest_ops", "insertOne", () => this.ops.insertOne(doc));
  }

  async endOp(id: string): Promise<void> {
    await dbCall("ingest_ops", "deleteOne", () => this.ops.deleteOne({ _id: id }));
  }

  staleOps(before: Date): Promise<OpDoc[]> {
    return dbCall("ingest_ops", "find", () => this.ops.find({ startedAt: { $lt: before } }).limit(100).toArray());
  }
}

