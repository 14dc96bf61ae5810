/**
 * Lists that grow without bound — the customers anchored in one hour —
 * kept as buckets of at most `size` entries each, so that no document grows past a fixed size
 * (MongoDB refuses documents over 16 MB, and the embedded database rewrites a whole document on
 * every change).
 *
 * A list is named by its `owner` ("<ws>:<customerId>", "<ws>|<hour>"). Its buckets are
 * documents `_id = "<owner>#<seq>"` (`seq` zero-padded) holding `entries` and `count`; an append
 * of k entries is one atomic conditional upsert into a bucket whose `count` is at most
 * `size − k` (`$addToSet` the entries, `$inc` count by k). When the bucket is fuller than that,
 * the upsert's filter misses and its insert of the existing `_id` fails with a duplicate key:
 * the writer moves on to the next `seq`. Any bucket with room will do — readers sort entries
 * themselves — so no transaction or lock is needed, only single-document writes:
 * - `count` only grows (it counts entries offered, also those `$addToSet` found present), so it
 *   bounds the bucket's size however writers interleave;
 * - the head document (`_id = owner`) records, with `$max`, the highest `seq` a writer had to
 *   move to. Writers start from a per-process hint (0 when unknown), so an append to a list
 *   that has one bucket costs one write and no read; a writer that finds its bucket full reads
 *   the head and jumps to it, instead of walking the full buckets one by one;
 * - an entry appended twice (a retry after a crash, landing in another bucket) is one entry to
 *   readers, who drop duplicates.
 * Readers find the buckets through the `(owner, seq)` index, in `seq` order.
 */
import { MongoBulkWriteError, type AnyBulkWriteOperation, type Collection } from "mongodb";
import { dbCall, ensureIndexes } from "@linquid/mesh";

/** A bucket (`entries` set) or the head of a list (`_id` = owner, no `entries`). */
export interface ListDoc {
  _id: string;
  workspaceId: string;
  owner: string;
  seq: number;
  count?: number;
  entries?: string[];
}

/** Entries per bucket unless configured (ANALYTICS_BUCKET_SIZE). */
export const DEFAULT_BUCKET_SIZE = 1000;
/** Lists whose head the process remembers (only those past their first bucket). */
const MAX_HINTS = 50_000;

export const bucketId = (owner: string, seq: number) => `${owner}#${String(seq).padStart(6, "0")}`;

export class BucketLists {
  /** owner → the bucket to try first, for lists past their first bucket. */
  private readonly hints = new Map<string, number>();

  constructor(
    readonly col: Collection<ListDoc>,
    readonly size: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`bucket size must be a positive integer, got ${size}`);
  }

  ensureIndexes(): Promise<void> {
    return ensureIndexes(this.col, [
      { key: { owner: 1, seq: 1 }, name: "owner_seq" },
      { key: { workspaceId: 1 }, name: "workspace" },
    ]);
  }

  /** Appends entries to lists (idempotent per bucket; readers drop duplicates across buckets). */
  async append(ws: string, lists: ReadonlyMap<string, readonly string[]>): Promise<void> {
    // Pieces that fit one bucket, appended one per list per round.
    const queues = new Map<string, string[][]>();
    const seqOf = new Map<string, number>();
    for (const [owner, entries] of lists) {
      if (entries.length === 0) continue;
      const pieces: string[][] = [];
      for (let i = 0; i < entries.length; i += this.size) pieces.push(entries.slice(i, i + this.size));
      queues.set(owner, pieces);
      seqOf.set(owner, this.hints.get(owner) ?? 0);
    }
    while (queues.size > 0) {
      const round = [...queues].map(([owner, pieces]) => ({ owner, piece: pieces[0]!, seq: seqOf.get(owner)! }));
      const full = await this.upsertPieces(ws, round);
      const moved: Array<{ owner: string; seq: number }> = [];
      round.forEach((r, i) => {
        if (full.has(i)) moved.push({ owner: r.owner, seq: r.seq + 1 });
        else {
          const pieces = queues.get(r.owner)!;
          pieces.shift();
          if (pieces.length === 0) queues.delete(r.owner);
        }
      });
      if (moved.length === 0) continue;
      // Record the move, then jump to the furthest bucket any writer has moved to.
      await this.bumpHeads(ws, moved);
      const heads = await this.heads(moved.map((m) => m.owner));
      for (const { owner, seq } of moved) {
        const next = Math.max(seq, heads.get(owner) ?? 0);
        seqOf.set(owner, next);
        this.remember(owner, next);
      }
    }
  }

  /** Conditional upserts of one piece per list; the indexes of those whose bucket was too full. */
  private async upsertPieces(ws: string, round: ReadonlyArray<{ owner: string; piece: string[]; seq: number }>): Promise<Set<number>> {
    const ops: AnyBulkWriteOperation<ListDoc>[] = round.map(({ owner, piece, seq }) => ({
      updateOne: {
        filter: { _id: bucketId(owner, seq), count: { $lte: this.size - piece.length } },
        update: { $addToSet: { entries: { $each: piece } }, $inc: { count: piece.length }, $setOnInsert: { workspaceId: ws, owner, seq } },
        upsert: true,
      },
    }));
    const full = new Set<number>();
    await dbCall(this.col.collectionName, "bulkWrite", async (o) => {
      try {
        await this.col.bulkWrite(ops, { ...o, ordered: false });
      } catch (err) {
        if (!(err instanceof MongoBulkWriteError)) throw err;
        const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
        // The filter missed an existing bucket (too full) and the upsert's insert met its _id.
        for (const we of errors) {
          if (we.code !== 11000) throw err;
          full.add(we.index);
        }
      }
    });
    return full;
  }

  private async bumpHeads(ws: string, moved: ReadonlyArray<{ owner: string; seq: number }>): Promise<void> {
    const ops: AnyBulkWriteOperation<ListDoc>[] = moved.map(({ owner, seq }) => ({
      updateOne: { filter: { _id: owner }, update: { $max: { seq }, $setOnInsert: { workspaceId: ws, owner } }, upsert: true },
    }));
    await dbCall(this.col.collectionName, "bulkWrite", (o) => this.col.bulkWrite(ops, { ...o, ordered: false }));
  }

  private async heads(owners: readonly string[]): Promise<Map<string, number>> {
    const docs = await dbCall(this.col.collectionName, "find", (o) => this.col.find({ _id: { $in: [...new Set(owners)] } }, o).toArray());
    return new Map(docs.map((d) => [d._id, d.seq]));
  }

  private remember(owner: string, seq: number): void {
    this.hints.delete(owner);
    if (this.hints.size >= MAX_HINTS) this.hints.delete(this.hints.keys().next().value!);
    this.hints.set(owner, seq);
  }

  /** Every entry of some lists, bucket by bucket in `seq` order, duplicates dropped. */
  async read(owners: readonly string[]): Promise<string[]> {
    if (owners.length === 0) return [];
    const filter = owners.length === 1 ? { owner: owners[0]! } : { owner: { $in: [...new Set(owners)] } };
    const docs = await dbCall(this.col.collectionName, "find", (o) => this.col.find(filter, o).sort({ owner: 1, seq: 1 }).toArray());
    const seen = new Set<string>();
    for (const d of docs) for (const e of d.entries ?? []) seen.add(e);
    return [...seen];
  }

  /** The documents that hold exactly these lists (a rebuild's insert): buckets of `size`, and a head where there is more than one. */
  docsOf(ws: string, lists: ReadonlyMap<string, readonly string[]>): ListDoc[] {
    const out: ListDoc[] = [];
    for (const [owner, entries] of lists) {
      let seq = 0;
      for (let i = 0; i < entries.length; i += this.size, seq++) {
        const piece = entries.slice(i, i + this.size);
        out.push({ _id: bucketId(owner, seq), workspaceId: ws, owner, seq, count: piece.length, entries: piece });
      }
      if (seq > 1) out.push({ _id: owner, workspaceId: ws, owner, seq: seq - 1 });
    }
    return out;
  }
}
