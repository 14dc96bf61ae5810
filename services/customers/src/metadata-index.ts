/**
 * The metadata index: one entry per (customer, metadata key and value), so a `metadata[k]=v`
 * filter reads the customers that have it from an index in list order, on MongoDB and on the
 * embedded database alike.
 *
 * `customer_metadata`: `_id` = `${customerId}:${term}` → `{workspaceId, term, createdAt,
 * customerId}`, where `term` = metadataTerm(key, value) (filters.ts): a hash, so user keys
 * (`$where`, `a.b`, `__proto__`) never reach the query language as operators, paths or object
 * keys, and every entry has the same small size. `createdAt` is the customer's creation time
 * (which never changes), so the index `{workspaceId, term, createdAt, customerId}` yields a
 * term's customers in exactly the order of the lists and their cursors.
 *
 * Why a collection of its own and not the customer document: a list of terms in the customer
 * (an array) would be a multikey index on MongoDB, but the embedded database never answers a
 * condition on a field that holds an array in any document from an index, and a fixed set of
 * top-level fields cannot hold up to 50 keys. Entries are small scalar documents both databases
 * index the same way (explain: `workspace_term_created`, `filterExact`).
 *
 * Entries follow the customer write, without transactions: a write adds the entries of its
 * new metadata before it writes the customer, and removes the entries of values the customer
 * no longer has after (`sync`), so the index never lacks an entry of a live customer's
 * metadata except while two writes of one customer race (the later one's sync restores it).
 * Readers treat entries as candidates and check every customer they yield against the filters
 * (filters.ts matchesFilters), so an entry left behind is never an answer. A write that
 * changes metadata keeps a `metadata` follow-up marker (follow-up-markers.ts) until its sync is
 * done; a sweeper syncs for a writer that died.
 *
 * Customers written before the index existed carry no `metadataIndexed` flag; a background
 * pass (`backfill`) gives them their entries, and until none is left the readers take another
 * path (customers-repository.ts).
 */
import { dbCall, ensureIndexes, insertManyNew } from "@linquid/mesh";
import type { Collection, Db } from "mongodb";
import { metadataOf, type CustomerDoc } from "./customer-doc.js";
import { metadataTerms } from "./filters.js";
import type { KeysetSource } from "./keyset.js";

export interface MetadataEntryDoc {
  _id: string;
  workspaceId: string;
  term: string;
  createdAt: Date;
  customerId: string;
}

/** The entries a customer document should have. */
export function metadataEntries(doc: Pick<CustomerDoc, "_id" | "workspaceId" | "createdAt" | "metadataJson" | "deletedAt">): MetadataEntryDoc[] {
  if (doc.deletedAt !== null) return [];
  return metadataTerms(metadataOf(doc)).map((term) => ({ _id: `${doc._id}:${term}`, workspaceId: doc.workspaceId, term, createdAt: doc.createdAt, customerId: doc._id }));
}

export class MetadataIndex {
  readonly entries: Collection<MetadataEntryDoc>;

  constructor(db: Db) {
    this.entries = db.collection<MetadataEntryDoc>("customer_metadata");
  }

  ensureIndexes(): Promise<void> {
    return ensureIndexes(this.entries, [
      // a term's customers in list order; counts of a term
      { key: { workspaceId: 1, term: 1, createdAt: 1, customerId: 1 }, name: "workspace_term_created" },
      // a customer's entries (sync, removal)
      { key: { customerId: 1 }, name: "customer" },
    ]);
  }

  /** Adds the entries of a customer's coming state (before the customer write); idempotent. */
  async add(entries: readonly MetadataEntryDoc[]): Promise<void> {
    await insertManyNew(this.entries, entries);
  }

  /** Makes a customer's entries exactly those of `doc` (null: none): after the customer write. */
  async sync(customerId: string, doc: CustomerDoc | null): Promise<void> {
    const want = doc === null || doc.tombstone === true ? [] : metadataEntries(doc);
    const terms = want.map((e) => e.term);
    await dbCall("customer_metadata", "deleteMany", (o) => this.entries.deleteMany({ customerId, term: { $nin: terms } }, o));
    await insertManyNew(this.entries, want);
  }

  /** The entries of one term, as a keyset source (keyset.ts). */
  source(workspaceId: string, term: string): KeysetSource<MetadataEntryDoc> {
    return { collection: this.entries, exact: { workspaceId, term }, residual: undefined, timeField: "createdAt", idField: "customerId" };
  }

  /** Entries of one term created within the exclusive bounds: served from the index. */
  count(workspaceId: string, term: string, after: number | undefined, before: number | undefined): Promise<number> {
    const createdAt = { ...(after === undefined ? {} : { $gt: new Date(after) }), ...(before === undefined ? {} : { $lt: new Date(before) }) };
    const filter = Object.keys(createdAt).length === 0 ? { workspaceId, term } : { workspaceId, term, createdAt };
    return dbCall("customer_metadata", "countDocuments", (o) => this.entries.countDocuments(filter, o));
  }
}
