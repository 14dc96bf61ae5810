/**
 * Keyset reads in (time, id) order: the next `n` documents after a position, each read
 * served from an index that starts with the read's equalities and goes on with (time, id).
 *
 * A read without a starting position is one query: the equalities, the sort and a limit. A
 * bound on the far side of the walk (`createdAfter` in descending order) is not a condition of
 * that query but the point where the walk stops, so the query stays an index-order scan that
 * stops after `n` entries.
 *
 * A read from a position (a cursor, or `createdBefore` in descending order) reads bounded
 * windows of time: `[edge - span, edge)` in descending order, then the window beyond, and so
 * on. Each window is first counted with a limit (index entries only), and narrowed while it
 * holds too many; only then are its documents fetched and sorted. So a read costs about the
 * same at any depth of any list. Why windows rather than one `time < edge` query: on the
 * embedded database (FerretDB on SQLite, scripts/ferretdb/README.md) a range condition on the
 * field a query also sorts by makes SQLite sort the whole range rather than walk the index in
 * order (`USE TEMP B-TREE FOR ORDER BY` in `explain`): SQLite does not see that the field's
 * type bracket, pinned by the range, is constant in the ORDER BY. The first page of a list
 * deep in a million customers would sort half a million rows. On MongoDB each window is an
 * index range scan, as the single query would be. The span of each read is handed on
 * (cursor.ts) so the next one usually takes a single window.
 */
import { dbCall } from "@linquid/mesh";
import type { Collection, Document, Filter, Sort } from "mongodb";

export type Direction = 1 | -1;

export interface KeysetSource<T extends Document> {
  readonly collection: Collection<T>;
  /** Equalities the index answers exactly (the fields it starts with), never on the time field. */
  readonly exact: Filter<T>;
  /** Conditions checked on each document the index yields (a search); undefined = none. */
  readonly residual: Filter<T> | undefined;
  /** The time field (a Date) and the id field (a string) the index goes on with. */
  readonly timeField: string;
  readonly idField: string;
}

export interface KeysetRange {
  readonly dir: Direction;
  /** Exclusive bounds on the time field, epoch ms. */
  readonly after: number | undefined;
  readonly before: number | undefined;
  /** Go on strictly after this (time, id), in `dir` order. */
  readonly from: { readonly t: number; readonly id: string } | undefined;
  /** How much time the first window spans, in ms (default one hour). */
  readonly spanHint: number | undefined;
}

export interface KeysetRead<T> {
  readonly docs: T[];
  /** True when nothing follows the last document within the range. */
  readonly exhausted: boolean;
  /** The time the read covered, from its start (or its first document) to its last document, in ms. */
  readonly spanMs: number;
}

const DEFAULT_SPAN_MS = 3_600_000;
/** Dates stay within what a JavaScript Date holds. */
const MAX_TIME = 8_640_000_000_000_000;

/**
 * The condition of one window: after `edge` (strictly; ties at its time broken by id when it
 * has one) up to `far` (inclusive), or up to the exclusive `stop` bound (none: to the end).
 * [far, edge) in descending order, (edge, far] in ascending order.
 */
export function keysetWindow(
  timeField: string,
  idField: string,
  dir: Direction,
  edge: { readonly t: number; readonly id: string | undefined },
  end: { readonly far: number } | { readonly stop: number | undefined },
): Filter<Document> {
  const farCond =
    "far" in end ? { [dir < 0 ? "$gte" : "$lte"]: new Date(end.far) } : end.stop === undefined ? {} : { [dir < 0 ? "$gt" : "$lt"]: new Date(end.stop) };
  const edgeOp = dir < 0 ? "$lt" : "$gt";
  return edge.id === undefined
    ? { [timeField]: { ...farCond, [edgeOp]: new Date(edge.t) } }
    : { [timeField]: { ...farCond, [dir < 0 ? "$lte" : "$gte"]: new Date(edge.t) }, $or: [{ [timeField]: { [edgeOp]: new Date(edge.t) } }, { [idField]: { [edgeOp]: edge.id } }] };
}

/** Reads the next `n` documents of `source` within `range`. */
export async function readKeyset<T extends Document>(source: KeysetSource<T>, range: KeysetRange, n: number): Promise<KeysetRead<T>> {
  const { dir } = range;
  const start = range.from?.t ?? (dir < 0 ? range.before : range.after);
  return start === undefined ? readFromEnd(source, range, n) : readWindows(source, range, start, n);
}

function sortOf(source: KeysetSource<Document>, dir: Direction): Sort {
  return { [source.timeField]: dir, [source.idField]: dir };
}

function timeOf<T extends Document>(source: KeysetSource<T>, doc: T): number {
  return (doc[source.timeField] as Date).getTime();
}

function find<T extends Document>(source: KeysetSource<T>, filter: Filter<T>, dir: Direction, limit: number): Promise<T[]> {
  const c = source.collection;
  return dbCall(c.collectionName, "find", (o) =>
    c
      .find(filter, o)
      .sort(sortOf(source as unknown as KeysetSource<Document>, dir))
      .limit(limit)
      // The whole read in the first reply: without it the driver asks for a first batch of
      // 101 and fetches the rest with getMore round trips (five for an export batch of 500).
      .batchSize(limit)
      .toArray() as Promise<T[]>,
  );
}

/** From the first document in `dir` order: one index-order query. */
async function readFromEnd<T extends Document>(source: KeysetSource<T>, range: KeysetRange, n: number): Promise<KeysetRead<T>> {
  const { dir } = range;
  const timeField = source.timeField;
  const stop = dir < 0 ? range.after : range.before;
  let filter: Filter<T> = source.exact;
  if (source.residual !== undefined) {
    // With a condition the index cannot answer, the database reads documents until it has
    // `n` matches; the stop bound keeps it from reading past the range.
    filter = { ...source.exact, ...source.residual };
    if (stop !== undefined) filter = { ...filter, [timeField]: dir < 0 ? { $gt: new Date(stop) } : { $lt: new Date(stop) } };
  }
  let docs = await find(source, filter, dir, n);
  let exhausted = docs.length < n;
  if (stop !== undefined) {
    const inRange = (d: T) => (dir < 0 ? timeOf(source, d) > stop : timeOf(source, d) < stop);
    const cut = docs.findIndex((d) => !inRange(d));
    if (cut >= 0) {
      docs = docs.slice(0, cut);
      exhausted = true;
    }
  }
  const spanMs = docs.length < 2 ? 0 : Math.abs(timeOf(source, docs[docs.length - 1]!) - timeOf(source, docs[0]!));
  return { docs, exhausted, spanMs };
}

/** From a position: windows of time, each counted (bounded) before it is fetched. */
async function readWindows<T extends Document>(source: KeysetSource<T>, range: KeysetRange, start: number, n: number): Promise<KeysetRead<T>> {
  const { dir } = range;
  const { timeField: tf, idField: idf } = source;
  const stop = dir < 0 ? range.after : range.before;
  const cap = Math.max(256, 8 * n);
  const c = source.collection;
  const out: T[] = [];
  let edge = start;
  let edgeId = range.from?.id;
  let span = Math.max(1, Math.min(range.spanHint ?? DEFAULT_SPAN_MS, MAX_TIME));

  for (;;) {
    const far = Math.max(-MAX_TIME, Math.min(MAX_TIME, edge + dir * span));
    const last = (stop !== undefined && (dir < 0 ? far <= stop : far >= stop)) || Math.abs(far) === MAX_TIME;
    const exactWindow = { ...source.exact, ...keysetWindow(tf, idf, dir, { t: edge, id: edgeId }, last ? { stop } : { far }) } as Filter<T>;
    const edgeOp = dir < 0 ? "$lt" : "$gt";
    const count = await dbCall(c.collectionName, "countDocuments", (o) => c.countDocuments(exactWindow, { ...o, limit: cap }));
    if (count >= cap && span > 1) {
      span = Math.max(1, Math.floor(span / 8));
      continue;
    }
    if (count > 0) {
      const filter = source.residual === undefined ? exactWindow : ({ ...exactWindow, ...source.residual } as Filter<T>);
      out.push(...(await find(source, filter, dir, n - out.length)));
      if (out.length >= n) return { docs: out, exhausted: false, spanMs: Math.abs(timeOf(source, out[out.length - 1]!) - start) };
    }
    if (last) return { docs: out, exhausted: true, spanMs: Math.abs(far - start) };
    if (count === 0) {
      // An empty window: is there anything at all beyond it? (A range without a sort: the
      // index answers it at its first entry.)
      const beyond = { ...source.exact, [tf]: { [edgeOp]: new Date(far), ...(stop === undefined ? {} : { [dir < 0 ? "$gt" : "$lt"]: new Date(stop) }) } } as Filter<T>;
      const any = await dbCall(c.collectionName, "findOne", (o) => c.findOne(beyond, { ...o, projection: { _id: 1 } }));
      if (any === null) return { docs: out, exhausted: true, spanMs: Math.abs(far - start) };
      span *= 8;
    } else {
      // Sparse: widen in proportion to what is still missing, between 2× and 8×.
      span *= Math.min(8, Math.max(2, Math.ceil((1.5 * (n - out.length)) / count)));
    }
    span = Math.min(span, MAX_TIME);
    edge = far;
    edgeId = undefined;
  }
}
