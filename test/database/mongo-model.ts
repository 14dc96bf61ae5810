/**
 * A brute-force model of the MongoDB semantics the services rely on: query matching
 * (equality, null, ranges, $in/$nin/$ne/$exists/$not, $and/$or/$nor, arrays), sort order across
 * BSON types, skip/limit, and the update operators ($set, $unset, $inc, $addToSet,
 * $setOnInsert), replacements and upserts. It works on documents as the driver sees them with
 * `promoteValues: false`: numbers are `Int32`, `Long` or `Double`, never plain JS numbers, so
 * the numeric type an update produces is part of the state.
 *
 * Written from MongoDB's documented rules, kept small enough to check by reading; every
 * function evaluates the obvious way, over the whole collection.
 */
import { BSON, Double, Int32, Long, ObjectId } from "mongodb";

/** A BSON value in the subset the oracle generates. `undefined` stands for a missing field. */
export type Value = null | string | boolean | Date | Int32 | Long | Double | ObjectId | Value[] | Doc;
/** A document: a missing field is an absent key. */
export interface Doc {
  [field: string]: Value;
}
/** A filter document: field conditions and `$and`/`$or`/`$nor`. */
export type Filter = Record<string, unknown>;
/** A sort specification in key order. */
export type Sort = ReadonlyArray<readonly [string, 1 | -1]>;
/** An update document with operators, or a replacement document. */
export type Update = Record<string, unknown>;

/** An update the server must refuse (MongoDB's code, e.g. 14 TypeMismatch for $inc on a string). */
export class UpdateError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

const isNumber = (v: unknown): v is Int32 | Long | Double => v instanceof Int32 || v instanceof Long || v instanceof Double;
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && [Object.prototype, null].includes(Object.getPrototypeOf(v));

/**
 * The position of a value's type in MongoDB's comparison order: MinKey < null (and missing) <
 * numbers < strings < objects < arrays < binData < ObjectId < bool < date < timestamp < regex
 * < MaxKey. Values of different brackets never match a comparison operator.
 */
export function bracket(v: Value | undefined): number {
  if (v === undefined || v === null) return 1;
  if (isNumber(v)) return 2;
  if (typeof v === "string") return 3;
  if (Array.isArray(v)) return 5;
  if (v instanceof ObjectId) return 7;
  if (typeof v === "boolean") return 8;
  if (v instanceof Date) return 9;
  if (isPlainObject(v)) return 4;
  throw new Error(`model: unsupported value ${String(v)}`);
}

function numberOf(v: Int32 | Long | Double): number {
  return v instanceof Long ? v.toNumber() : v.value;
}

function compareNumbers(a: Int32 | Long | Double, b: Int32 | Long | Double): number {
  if (a instanceof Long && b instanceof Long) return a.compare(b);
  const x = numberOf(a);
  const y = numberOf(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Strings compare as their UTF-8 bytes (not as JavaScript's UTF-16 code units). */
export function compareStrings(a: string, b: string): number {
  return Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
}

/**
 * MongoDB's total order of values (missing as null): by bracket, then within the bracket.
 * Objects compare element by element (type, then field name, then value), arrays element by
 * element; the shorter of two otherwise equal ones comes first.
 */
export function compareValues(a: Value | undefined, b: Value | undefined): number {
  const d = bracket(a) - bracket(b);
  if (d !== 0) return Math.sign(d);
  if (a === undefined || a === null || b === undefined || b === null) return 0;
  if (isNumber(a) && isNumber(b)) return compareNumbers(a, b);
  if (typeof a === "string" && typeof b === "string") return compareStrings(a, b);
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  if (a instanceof Date && b instanceof Date) return Math.sign(a.getTime() - b.getTime());
  if (a instanceof ObjectId && b instanceof ObjectId) return compareStrings(a.toHexString(), b.toHexString());
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compareValues(a[i]!, b[i]!);
      if (c !== 0) return c;
    }
    return Math.sign(a.length - b.length);
  }
  const ea = Object.entries(a as Doc);
  const eb = Object.entries(b as Doc);
  for (let i = 0; i < Math.min(ea.length, eb.length); i++) {
    const [ka, va] = ea[i]!;
    const [kb, vb] = eb[i]!;
    const c = Math.sign(bracket(va) - bracket(vb)) || compareStrings(ka, kb) || compareValues(va, vb);
    if (c !== 0) return c;
  }
  return Math.sign(ea.length - eb.length);
}

/** `{f: q}` / `{f: {$eq: q}}`: the value equals q, or is an array with an element equal to q; null also matches missing. */
function eqMatch(v: Value | undefined, q: Value): boolean {
  if (q === null) return v === undefined || v === null || (Array.isArray(v) && v.some((e) => e === null));
  if (v === undefined) return false;
  if (Array.isArray(v)) {
    if (Array.isArray(q) && compareValues(v, q) === 0) return true;
    return v.some((e) => bracket(e) === bracket(q) && compareValues(e, q) === 0);
  }
  return bracket(v) === bracket(q) && compareValues(v, q) === 0;
}

/**
 * `$gt`/`$gte`/`$lt`/`$lte`: true when the value, or any element of an array value, is of q's
 * bracket and compares as asked. A null bound: `$gte`/`$lte` null mean equality with null,
 * `$gt`/`$lt` null match nothing.
 */
function rangeMatch(v: Value | undefined, op: string, q: Value): boolean {
  if (q === null) return op === "$gte" || op === "$lte" ? eqMatch(v, null) : false;
  if (Array.isArray(q)) throw new Error("model: array bounds are not modelled");
  const candidates = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return candidates.some((e) => {
    if (bracket(e) !== bracket(q)) return false;
    const c = compareValues(e, q);
    return op === "$gt" ? c > 0 : op === "$gte" ? c >= 0 : op === "$lt" ? c < 0 : c <= 0;
  });
}

function operatorMatch(v: Value | undefined, op: string, q: unknown): boolean {
  switch (op) {
    case "$eq":
      return eqMatch(v, q as Value);
    case "$ne":
      return !eqMatch(v, q as Value);
    case "$gt":
    case "$gte":
    case "$lt":
    case "$lte":
      return rangeMatch(v, op, q as Value);
    case "$in":
      return (q as Value[]).some((e) => eqMatch(v, e));
    case "$nin":
      return !(q as Value[]).some((e) => eqMatch(v, e));
    case "$exists":
      return (v !== undefined) === Boolean(q);
    case "$not":
      return !conditionMatch(v, q);
    default:
      throw new Error(`model: operator ${op} is not modelled`);
  }
}

const isOperatorObject = (c: unknown): c is Record<string, unknown> =>
  isPlainObject(c) && Object.keys(c).length > 0 && Object.keys(c).every((k) => k.startsWith("$"));

/** One field's condition: an operator object (every operator must hold) or a literal (equality). */
function conditionMatch(v: Value | undefined, cond: unknown): boolean {
  if (isOperatorObject(cond)) {
    return Object.entries(cond).every(([op, q]) =>
      op === "$options" ? true : op === "$regex" ? regexMatch(v, q as string, (cond["$options"] as string | undefined) ?? "") : operatorMatch(v, op, q),
    );
  }
  return eqMatch(v, cond as Value);
}

/**
 * `$regex` (with `$options`): the value, or any element of an array value, is a string the
 * pattern matches. The oracle's patterns mean the same to JavaScript, PCRE and RE2.
 */
function regexMatch(v: Value | undefined, pattern: string, options: string): boolean {
  const re = new RegExp(pattern, options);
  const candidates = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return candidates.some((e) => typeof e === "string" && re.test(e));
}

/** Whether a document matches a filter (top-level fields only). */
export function matches(doc: Doc, filter: Filter): boolean {
  return Object.entries(filter).every(([key, cond]) => {
    if (key === "$and") return (cond as Filter[]).every((f) => matches(doc, f));
    if (key === "$or") return (cond as Filter[]).some((f) => matches(doc, f));
    if (key === "$nor") return !(cond as Filter[]).some((f) => matches(doc, f));
    if (key.startsWith("$") || key.includes(".")) throw new Error(`model: ${key} is not modelled`);
    return conditionMatch(doc[key], cond);
  });
}

/**
 * Sorts by the given keys (missing sorts as null). Array values are refused: MongoDB sorts an
 * array by its smallest (ascending) or largest (descending) element, which the oracle avoids
 * by sorting only on fields without arrays.
 */
export function sortDocs(docs: readonly Doc[], sort: Sort): Doc[] {
  for (const d of docs) {
    for (const [f] of sort) if (Array.isArray(d[f])) throw new Error(`model: sort on ${f}, which holds an array`);
  }
  return [...docs].sort((a, b) => {
    for (const [f, dir] of sort) {
      const c = compareValues(a[f], b[f]);
      if (c !== 0) return c * dir;
    }
    return 0;
  });
}

/** The documents a find returns: matched, sorted, skipped, limited (limit 0 or absent: all). */
export function find(docs: readonly Doc[], q: { filter: Filter; sort?: Sort; skip?: number; limit?: number }): Doc[] {
  let out = docs.filter((d) => matches(d, q.filter));
  if (q.sort !== undefined) out = sortDocs(out, q.sort);
  const from = q.skip ?? 0;
  return out.slice(from, q.limit === undefined || q.limit === 0 ? undefined : from + q.limit);
}

/** countDocuments with skip and limit. */
export function count(docs: readonly Doc[], filter: Filter, skip = 0, limit?: number): number {
  const n = Math.max(0, docs.filter((d) => matches(d, filter)).length - skip);
  return limit === undefined ? n : Math.min(n, limit);
}

/** A deep copy (BSON values are immutable, so sharing them is safe). */
export function clone<T extends Value>(v: T): T {
  if (Array.isArray(v)) return v.map((e) => clone(e)) as T;
  if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, clone(e as Value)])) as T;
  return v;
}

/** The sum `$inc` stores: int32 + int32 stays int32 unless it overflows (then long); long wins over int32; double over both. */
function addNumbers(a: Int32 | Long | Double, b: Int32 | Long | Double): Int32 | Long | Double {
  if (a instanceof Double || b instanceof Double) return new Double(numberOf(a) + numberOf(b));
  if (a instanceof Long || b instanceof Long) return Long.fromNumber(numberOf(a)).add(Long.fromNumber(numberOf(b)));
  const s = numberOf(a) + numberOf(b);
  return s >= -(2 ** 31) && s < 2 ** 31 ? new Int32(s) : Long.fromNumber(s);
}

function describe(doc: Doc): string {
  return BSON.EJSON.stringify({ _id: doc["_id"] ?? null }, { relaxed: true });
}

/**
 * Applies an update document (operators) or a replacement to a copy of `doc`. `$setOnInsert`
 * applies only when `inserting`. A replacement keeps the `_id`. Throws UpdateError where
 * MongoDB refuses the update.
 */
export function applyUpdate(doc: Doc, update: Update, inserting: boolean): Doc {
  const keys = Object.keys(update);
  if (keys.length > 0 && keys.every((k) => !k.startsWith("$"))) {
    const out: Doc = { _id: doc["_id"]! };
    for (const [k, v] of Object.entries(update)) if (k !== "_id") out[k] = clone(v as Value);
    return out;
  }
  const out = clone(doc);
  for (const [op, fields] of Object.entries(update)) {
    for (const [f, arg] of Object.entries(fields as Record<string, unknown>)) {
      if (f === "_id" && !(op === "$setOnInsert" && inserting)) throw new Error("model: updates of _id are not modelled");
      switch (op) {
        case "$set":
          out[f] = clone(arg as Value);
          break;
        case "$setOnInsert":
          if (inserting) out[f] = clone(arg as Value);
          break;
        case "$unset":
          delete out[f];
          break;
        case "$inc": {
          const cur = out[f];
          if (!isNumber(arg)) throw new Error("model: $inc by a non-number");
          if (cur === undefined) out[f] = arg;
          else if (isNumber(cur)) out[f] = addNumbers(cur, arg);
          else throw new UpdateError(14, `$inc of ${f} in ${describe(out)}, a non-number`);
          break;
        }
        case "$addToSet": {
          const each = isPlainObject(arg) && "$each" in arg ? (arg["$each"] as Value[]) : [arg as Value];
          const cur = out[f];
          if (cur !== undefined && !Array.isArray(cur)) throw new UpdateError(2, `$addToSet to ${f} in ${describe(out)}, a non-array`);
          const arr = cur === undefined ? [] : cur;
          for (const v of each) if (!arr.some((e) => compareValues(e, v) === 0)) arr.push(clone(v));
          out[f] = arr;
          break;
        }
        default:
          throw new Error(`model: update operator ${op} is not modelled`);
      }
    }
  }
  return out;
}

/**
 * Whether a replacement counts as a modification (nModified). MongoDB compares the stored
 * document with the replacement as sent, byte for byte: one without `_id` always modifies, even
 * when every other field is equal; one with `_id` modifies unless identical, field order and
 * numeric types included.
 */
export function replacementModifies(doc: Doc, replacement: Doc): boolean {
  return !Buffer.from(BSON.serialize(doc)).equals(Buffer.from(BSON.serialize(replacement)));
}

/**
 * The document an upsert starts from: the filter's equality conditions (`{f: v}`, `{f: {$eq:
 * v}}`, also inside `$and`). `_id` comes from there or, when absent, from the server.
 */
export function upsertSeed(filter: Filter): Doc {
  const seed: Doc = {};
  for (const [k, cond] of Object.entries(filter)) {
    if (k === "$and") Object.assign(seed, ...(cond as Filter[]).map(upsertSeed));
    else if (k.startsWith("$")) continue;
    else if (!isOperatorObject(cond)) seed[k] = clone(cond as Value);
    else if ("$eq" in cond) seed[k] = clone(cond["$eq"] as Value);
  }
  return seed;
}

/** The document as canonical extended JSON with keys sorted: equal exactly when the stored BSON values (types included) are. */
export function canonical(doc: Doc): string {
  const sortKeys = (v: Value): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (isPlainObject(v)) {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Doc)[k]!)]));
    }
    return v;
  };
  return BSON.EJSON.stringify(sortKeys(doc), { relaxed: false });
}

/**
 * A short readable form for failure messages, in the shell's notation: int32 `2`, double `2.0`,
 * long `2L`, `Date(ms)`, `ObjectId("…")`, strings quoted.
 */
export function show(v: unknown): string {
  if (v === undefined) return "(missing)";
  if (v === null) return "null";
  if (v instanceof Int32) return String(v.value);
  if (v instanceof Double) return Number.isInteger(v.value) ? `${v.value}.0` : String(v.value);
  if (v instanceof Long) return `${v.toString()}L`;
  if (v instanceof Date) return `Date(${v.getTime()})`;
  if (v instanceof ObjectId) return `ObjectId("${v.toHexString()}")`;
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return `${v}`;
  if (Array.isArray(v)) return `[${v.map(show).join(", ")}]`;
  if (typeof v === "object") return `{${Object.entries(v).map(([k, e]) => `${JSON.stringify(k)}: ${show(e)}`).join(", ")}}`;
  return String(v);
}
