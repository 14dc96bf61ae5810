/**
 * The read side of the customers lists: one page (by position or by page number), a count, and
 * the walk of an export — for any combination of filters, each read served from an index.
 *
 * Where the customers come from:
 * - without metadata filters, from `customers` through `{workspaceId, createdAt, _id,
 *   deletedAt}` (or `{workspaceId, country, …}` with a country): the equalities and
 *   `deletedAt: null` are answered by the index, the creation-time bounds and positions by
 *   keyset reads (keyset.ts); a search is a condition on each document the index yields;
 * - with metadata filters, from the metadata index (metadata-index.ts): the entries of the
 *   first metadata filter, in the same (createdAt, id) order, each customer fetched by `_id`
 *   and checked against every filter. Until the metadata index covers every customer (a
 *   backfill after an upgrade), from `customers` as above with the metadata checked on each.
 *
 * Either way the (createdAt, id) position of a customer is the same, so cursors are too.
 */
import { dbCall, readAhead } from "@linquid/mesh";
import type { Collection, Filter } from "mongodb";
import type { CustomerCounts } from "./customer-counts.js";
import type { CustomerDoc } from "./customer-doc.js";
import { isUnfiltered, matchesFilters, metadataTerm, type CustomerFilters } from "./filters.js";
import { readKeyset, type Direction, type KeysetSource } from "./keyset.js";
import type { MetadataIndex } from "./metadata-index.js";
import { foldCase, literalPattern } from "./search.js";
import type { SortOrder } from "./validation.js";

/** Where a page starts: after a position (a cursor), or at an offset (a page number). */
export type PageStart = { readonly from: { readonly t: number; readonly id: string; readonly span: number } } | { readonly skip: number };

export interface ListPage {
  readonly docs: CustomerDoc[];
  readonly hasMore: boolean;
  /** Creation time the page spanned, in ms (a hint for the read after it). */
  readonly spanMs: number;
}

/** Customers per export batch. */
export const EXPORT_BATCH = 500;

export class CustomerReads {
  constructor(
    private readonly customers: Collection<CustomerDoc>,
    private readonly metadata: MetadataIndex,
    private readonly counts: CustomerCounts,
    /** Whether the metadata index covers every customer (metadata-index.ts backfill). */
    private readonly metadataReady: () => boolean,
  ) {}

  /** The live customers of a workspace matching `f`, as a keyset source over `customers`. */
  customerSource(workspaceId: string, f: CustomerFilters): KeysetSource<CustomerDoc> {
    const exact: Filter<CustomerDoc> = f.country === undefined ? { workspaceId, deletedAt: null } : { workspaceId, country: f.country, deletedAt: null };
    const residual: Filter<CustomerDoc> | undefined = f.search === undefined ? undefined : { search: { $regex: literalPattern(foldCase(f.search)) } };
    return { collection: this.customers, exact, residual, timeField: "createdAt", idField: "_id" };
  }

  /** A page of at most `limit` customers, and whether more follow. */
  async page(workspaceId: string, f: CustomerFilters, order: SortOrder, start: PageStart, limit: number): Promise<ListPage> {
    const dir: Direction = order === "asc" ? 1 : -1;
    if ("skip" in start && start.skip > 0 && f.metadata.length === 0) return this.pageAtOffset(workspaceId, f, dir, start.skip, limit);
    const from = "from" in start ? start.from : undefined;
    const skip = "skip" in start ? start.skip : 0;
    const docs: CustomerDoc[] = [];
    let skipped = 0;
    let exhausted = true;
    for await (const batch of this.candidates(workspaceId, f, dir, from, limit + 1)) {
      for (const d of batch) {
        if (skipped < skip) skipped++;
        else docs.push(d);
      }
      if (docs.length > limit) {
        exhausted = false;
        break;
      }
    }
    const page = docs.slice(0, limit);
    const startT = from?.t ?? page[0]?.createdAt.getTime();
    const spanMs = page.length === 0 || startT === undefined ? 0 : Math.abs(page[page.length - 1]!.createdAt.getTime() - startT);
    return { docs: page, hasMore: !exhausted, spanMs };
  }

  /**
   * A page by number, without metadata filters: one query whose offset the index skips (entries
   * only, no documents read). A bound on the near side of the walk (`createdBefore` in
   * descending order) makes it a range the query sorts; cursors avoid that (keyset.ts).
   */
  private async pageAtOffset(workspaceId: string, f: CustomerFilters, dir: Direction, skip: number, limit: number): Promise<ListPage> {
    const source = this.customerSource(workspaceId, f);
    const near = dir < 0 ? f.createdBefore : f.createdAfter;
    const far = dir < 0 ? f.createdAfter : f.createdBefore;
    // The far bound is where the walk stops: a condition only when the query reads documents
    // anyway (a search) or sorts a range anyway (a near bound); otherwise rows past it are cut.
    const farInQuery = source.residual !== undefined || near !== undefined;
    const createdAt: Record<string, Date> = {};
    if (f.createdAfter !== undefined && (dir > 0 || farInQuery)) createdAt["$gt"] = new Date(f.createdAfter);
    if (f.createdBefore !== undefined && (dir < 0 || farInQuery)) createdAt["$lt"] = new Date(f.createdBefore);
    const filter: Filter<CustomerDoc> = { ...source.exact, ...(source.residual ?? {}), ...(Object.keys(createdAt).length > 0 ? { createdAt } : {}) };
    let docs = await dbCall("customers", "find", (o) =>
      this.customers
        .find(filter, o)
        .sort({ createdAt: dir, _id: dir })
        .skip(skip)
        .limit(limit + 1)
        .toArray(),
    );
    if (far !== undefined && !farInQuery) docs = docs.filter((d) => (dir < 0 ? d.createdAt.getTime() > far : d.createdAt.getTime() < far));
    const page = docs.slice(0, limit);
    const spanMs = page.length < 2 ? 0 : Math.abs(page[page.length - 1]!.createdAt.getTime() - page[0]!.createdAt.getTime());
    return { docs: page, hasMore: docs.length > limit, spanMs };
  }

  /** Live customers matching `f`: the counter, the index, or (metadata with other filters) a walk. */
  async count(workspaceId: string, f: CustomerFilters): Promise<number> {
    if (isUnfiltered(f)) return this.counts.count(workspaceId);
    if (f.metadata.length === 0) {
      const source = this.customerSource(workspaceId, f);
      const createdAt = { ...(f.createdAfter === undefined ? {} : { $gt: new Date(f.createdAfter) }), ...(f.createdBefore === undefined ? {} : { $lt: new Date(f.createdBefore) }) };
      const filter: Filter<CustomerDoc> = { ...source.exact, ...(source.residual ?? {}), ...(Object.keys(createdAt).length > 0 ? { createdAt } : {}) };
      return dbCall("customers", "countDocuments", (o) => this.customers.countDocuments(filter, o));
    }
    if (f.metadata.length === 1 && f.search === undefined && f.country === undefined && this.metadataReady()) {
      const [key, value] = f.metadata[0]!;
      return this.metadata.count(workspaceId, metadataTerm(key, value), f.createdAfter, f.createdBefore);
    }
    let n = 0;
    for await (const batch of this.candidates(workspaceId, f, 1, undefined, EXPORT_BATCH)) n += batch.length;
    return n;
  }

  /**
   * Every live customer matching `f`, oldest first, one batch per step. The next batch is read
   * while the caller writes this one (one batch ahead, no more): the database and the caller's
   * formatting run side by side instead of taking turns.
   */
  walk(workspaceId: string, f: CustomerFilters): AsyncGenerator<CustomerDoc[]> {
    return readAhead(this.candidates(workspaceId, f, 1, undefined, EXPORT_BATCH));
  }

  /**
   * The customers matching `f` in `dir` order after `from`, in batches (possibly empty) of
   * documents already checked against every filter; each batch is read when asked for.
   */
  private async *candidates(workspaceId: string, f: CustomerFilters, dir: Direction, from: { t: number; id: string; span: number } | undefined, batch: number): AsyncGenerator<CustomerDoc[]> {
    const byMetadata = f.metadata.length > 0 && this.metadataReady();
    const source = byMetadata ? this.metadata.source(workspaceId, metadataTerm(...f.metadata[0]!)) : this.customerSource(workspaceId, f);
    let position = from === undefined ? undefined : { t: from.t, id: from.id };
    let span = from?.span;
    let size = batch;
    for (;;) {
      const read = await readKeyset(source as unknown as KeysetSource<{ createdAt: Date }>, { dir, after: f.createdAfter, before: f.createdBefore, from: position, spanHint: span }, size);
      const docs = byMetadata ? await this.fetch(read.docs.map((e) => (e as unknown as { customerId: string }).customerId)) : (read.docs as unknown as CustomerDoc[]);
      const matching = docs.filter((d) => matchesFilters(d, workspaceId, f));
      yield matching;
      if (read.exhausted || read.docs.length === 0) return;
      const last = read.docs[read.docs.length - 1]! as unknown as Record<string, unknown>;
      position = { t: (last["createdAt"] as Date).getTime(), id: last[source.idField] as string };
      // The next read looks a quarter further than this one spanned: usually one window.
      span = Math.max(1, Math.ceil(read.spanMs * 1.25));
      // Candidates that were not answers: read more at a time (up to an export batch).
      if (matching.length < docs.length) size = Math.min(EXPORT_BATCH, size * 2);
    }
  }

  /** Customers by id, in the order of `ids` (missing ones left out). */
  private async fetch(ids: readonly string[]): Promise<CustomerDoc[]> {
    if (ids.length === 0) return [];
    // An `_id` `$in`: look-ups in the `_id` index on both databases.
    const found = await dbCall("customers", "find", (o) => this.customers.find({ _id: { $in: [...ids] } }, o).toArray());
    const byId = new Map(found.map((d) => [d._id, d]));
    return ids.flatMap((id) => byId.get(id) ?? []);
  }
}
