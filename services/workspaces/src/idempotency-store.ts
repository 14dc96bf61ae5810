/**
 * Idempotency records (IdempotencyService, proto/linquid/workspaces/v1/idempotency.proto), one
 * document per workspace and Idempotency-Key in `idempotency_keys`:
 *
 *   _id          `${workspaceId}:${sha256(key)}` — fixed length, the caller's text never stored
 *   fingerprint  SHA-256 of what the request asks for (computed by the gateway)
 *   state        "running" (claimed, no answer yet) or "answered"
 *   claimToken   random, fresh on every claim: only its holder records or releases
 *   leaseUntil   running only: after it the claim has lapsed (its holder died or hangs)
 *   expiresAt    when the record stops counting: 24 h after the answer (running: the later of
 *                24 h after the claim and the lease's end)
 *   answer       answered only: status, body, headers
 *
 * Concurrency rests on single-document atomic writes only, as on both databases we run on
 * (MongoDB 7, the embedded FerretDB): no transactions, no TTL or partial index.
 * - Claim = insert. The unique `_id` lets exactly one of any number of concurrent claims in;
 *   the others read the winner's record and answer from it (in progress, answered, reused).
 * - Expiry is checked on read: an expired record, or a running one whose lease ran out, is taken
 *   over by a conditional update on the claim token it was read with, so of two callers taking
 *   the same record over one wins and the other reads the winner's record.
 * - Record and release are conditional on the claim token: a holder whose lease lapsed and whose
 *   key was claimed again cannot overwrite or delete the new claim.
 * - A sweeper (idempotency-sweeper.ts) deletes expired records through the `expiresAt` index, so
 *   the collection holds about a day of keys; reads never depend on it having run.
 *
 * Size: an answer body is at most MAX_ANSWER_BODY_BYTES (the gateway keeps a larger one nowhere,
 * see its idempotency.ts), plus at most 16 short headers, so a record stays far below the 16 MiB
 * document limit.
 */
import { createHash } from "node:crypto";
import { dbCall, ensureIndexes, insertIfAbsent, newId } from "@linquid/mesh";
import type { Collection, Db } from "mongodb";

/** How long an answer is kept (rest-api.md: 24 hours). */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/** Largest answer body kept, in UTF-8 bytes. */
export const MAX_ANSWER_BODY_BYTES = 1024 * 1024;

export interface StoredAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: ReadonlyArray<{ readonly name: string; readonly value: string }>;
}

export interface IdempotencyDoc {
  _id: string;
  workspaceId: string;
  fingerprint: string;
  state: "running" | "answered";
  claimToken: string;
  leaseUntil: Date | null;
  expiresAt: Date;
  answer: StoredAnswer | null;
  claimedAt: Date;
}

export type ClaimOutcome =
  | { readonly kind: "claimed"; readonly token: string }
  | { readonly kind: "answered"; readonly answer: StoredAnswer }
  | { readonly kind: "in-progress" }
  | { readonly kind: "reused" };

export interface IdempotencyStore {
  claim(workspaceId: string, key: string, fingerprint: string, leaseMs: number): Promise<ClaimOutcome>;
  /** True when the answer is kept; false when the claim lapsed and the key was claimed again. */
  record(workspaceId: string, key: string, token: string, answer: StoredAnswer): Promise<boolean>;
  /** True when the claim was given up; false when it had lapsed and been taken already. */
  release(workspaceId: string, key: string, token: string): Promise<boolean>;
}

export interface IdempotencyStoreOptions {
  /** The clock (epoch ms); tests move it. */
  readonly now?: () => number;
  readonly ttlMs?: number;
}

/**
 * How often a claim is tried again after losing a race for a record that then vanished or was
 * taken over (each round trip means another caller moved; three in a row under one request is
 * extraordinary contention, answered as "in progress": retry shortly).
 */
const CLAIM_ROUNDS = 3;

export function recordId(workspaceId: string, key: string): string {
  return `${workspaceId}:${createHash("sha256").update(key, "utf8").digest("hex")}`;
}

export class MongoIdempotencyStore implements IdempotencyStore {
  readonly records: Collection<IdempotencyDoc>;
  private readonly now: () => number;
  private readonly ttlMs: number;

  constructor(db: Db, options: IdempotencyStoreOptions = {}) {
    this.records = db.collection<IdempotencyDoc>("idempotency_keys");
    this.now = options.now ?? Date.now;
    this.ttlMs = options.ttlMs ?? IDEMPOTENCY_TTL_MS;
  }

  ensureIndexes(): Promise<void> {
    return ensureIndexes(this.records, [{ key: { expiresAt: 1 }, name: "expiresAt" }]);
  }

  async claim(workspaceId: string, key: string, fingerprint: string, leaseMs: number): Promise<ClaimOutcome> {
    const _id = recordId(workspaceId, key);
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      const now = this.now();
      const token = newId("claim");
      const fresh: IdempotencyDoc = {
        _id,
        workspaceId,
        fingerprint,
        state: "running",
        claimToken: token,
        leaseUntil: new Date(now + leaseMs),
        // Never before the lease ends: a running claim must not expire under its holder.
        expiresAt: new Date(now + Math.max(this.ttlMs, leaseMs)),
        answer: null,
        claimedAt: new Date(now),
      };
      if (await insertIfAbsent(this.records, fresh)) return { kind: "claimed", token };

      const found = await dbCall("idempotency_keys", "findOne", (o) => this.records.findOne({ _id }, o));
      if (found === null) continue; // released or swept since the insert failed: try again
      const expired = found.expiresAt.getTime() <= now;
      const lapsed = found.state === "running" && found.leaseUntil !== null && found.leaseUntil.getTime() <= now;
      if (expired || lapsed) {
        // Whatever it held no longer counts (an expired answer, or a claim whose holder is gone:
        // its request never answered, so like a 5xx nothing of it is kept).
        const { _id: _, ...rest } = fresh;
        const taken = await dbCall("idempotency_keys", "updateOne", (o) => this.records.updateOne({ _id, claimToken: found.claimToken }, { $set: rest }, o));
        if (taken.matchedCount === 1) return { kind: "claimed", token };
        continue; // another caller took it over first: read what it made of it
      }
      if (found.fingerprint !== fingerprint) return { kind: "reused" };
      if (found.state === "answered" && found.answer !== null) return { kind: "answered", answer: found.answer };
      return { kind: "in-progress" };
    }
    return { kind: "in-progress" };
  }

  async record(workspaceId: string, key: string, token: string, answer: StoredAnswer): Promise<boolean> {
    const _id = recordId(workspaceId, key);
    const set = { state: "answered" as const, answer, leaseUntil: null, expiresAt: new Date(this.now() + this.ttlMs) };
    // Conditional on the token alone (not on "running"): sent twice, the second write stores the
    // same answer again and reports it kept, as the RPC's IDEMPOTENT level promises.
    const res = await dbCall("idempotency_keys", "updateOne", (o) => this.records.updateOne({ _id, claimToken: token }, { $set: set }, o));
    return res.matchedCount === 1;
  }

  async release(workspaceId: string, key: string, token: string): Promise<boolean> {
    const _id = recordId(workspaceId, key);
    const res = await dbCall("idempotency_keys", "deleteOne", (o) => this.records.deleteOne({ _id, claimToken: token, state: "running" }, o));
    return res.deletedCount === 1;
  }

  /**
   * Deletes up to `limit` expired records, oldest expiry first; returns how many. Read through the
   * `expiresAt` index, deleted by `_id` with the expiry checked again in the same write, so a
   * record taken over since it was read (its expiry moved) stays.
   */
  async sweep(limit: number): Promise<number> {
    const now = new Date(this.now());
    const due = await dbCall("idempotency_keys", "find", (o) =>
      this.records.find({ expiresAt: { $lte: now } }, { ...o, projection: { _id: 1 } }).sort({ expiresAt: 1 }).limit(limit).toArray(),
    );
    if (due.length === 0) return 0;
    const ids = due.map((d) => d._id);
    const res = await dbCall("idempotency_keys", "deleteMany", (o) => this.records.deleteMany({ _id: { $in: ids }, expiresAt: { $lte: now } }, o));
    return res.deletedCount;
  }
}

