/**
 * Identity keys and the protocol that keeps them consistent with the customers, without
 * transactions.
 *
 * `customer_keys`: one identity key per (workspace, externalId), `_id` = `${workspaceId}:${externalId}`
 * → `{customerId, token, at}`. The unique `_id` is the uniqueness guard: no read-then-write on
 * the customers collection, no partial index, and `_id` equality is the cheapest query on every
 * backend.
 *
 * Identity protocol. Every step is one atomic conditional single-document write, so the
 * guarantees hold for any number of concurrent writers in any number of processes:
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
 *   while the key is younger than `graceMs`, others wait and re-read. Older, it is taken over,
 *   but first the in-flight write is fenced off for good: a missing customer id is "poisoned"
 *   by inserting a deleted tombstone under it (the late insert then fails on the duplicate
 *   `_id` and its writer retries), and a customer with another externalId gets its `rev` bumped
 *   (`{externalId: {$ne: e}}`), which fails the late rename's conditional update. The time only
 *   decides who waits; correctness rests on the conditional writes.
 * - Deleting: mark the customer deleted and scrubbed (one update conditional on the rev read),
 *   then delete its key. A key left behind by a crash is stale (its customer is deleted) and is
 *   removed by the scrub follow-up (follow-ups.ts) before the customer's scrub counts as done.
 * Hence no crash between two writes can leave a permanently blocked externalId (stale keys are
 * taken over) or a half-visible customer (a customer is inserted only after its key is held, and
 * keys never make anything visible by themselves).
 */
import { randomBytes } from "node:crypto";
import { dbCall, ensureIndexes, insertIfAbsent, insertManyNew, pauseBeforeRetry } from "@linquid/mesh";
import type { Collection, Db, Filter } from "mongodb";
import { isLiveIn, tombstoneDoc, type CustomerDoc } from "./customer-doc.js";
import { identityKeyId } from "./identity.js";

export interface KeyDoc {
  _id: string;
  customerId: string;
  token: string;
  at: Date;
}

/** What a claim of a key ended in: the key is now the caller's, or a valid key holds it for another live customer. */
export type Claim = { kind: "claimed"; token: string } | { kind: "held"; customer: CustomerDoc };

/** A fresh key token. */
export const newToken = (): string => randomBytes(12).toString("base64url");

export const CONTENDED = "too many concurrent writes to this customer; retry";

export class IdentityKeys {
  readonly keys: Collection<KeyDoc>;

  constructor(
    db: Db,
    private readonly customers: Collection<CustomerDoc>,
    /** How long a key whose customer does not (yet) match may belong to a write in flight. */
    private readonly graceMs: number,
  ) {
    this.keys = db.collection<KeyDoc>("customer_keys");
  }

  /** The index the scrub needs to find every key of a deleted customer. */
  ensureIndexes(): Promise<void> {
    return ensureIndexes(this.keys, [{ key: { customerId: 1 }, name: "customer" }]);
  }

  find(workspaceId: string, externalId: string): Promise<KeyDoc | null> {
    const _id = identityKeyId(workspaceId, externalId);
    return dbCall("customer_keys", "findOne", (o) => this.keys.findOne({ _id }, o));
  }

  async findMany(keyIds: readonly string[]): Promise<Map<string, KeyDoc>> {
    const keys = await dbCall("customer_keys", "find", (o) => this.keys.find({ _id: { $in: [...keyIds] } }, o).toArray());
    return new Map(keys.map((k) => [k._id, k]));
  }

  /** Inserts claims of keys believed absent in one command; returns the `_id`s that were taken already. */
  claimAbsent(claims: readonly KeyDoc[]): Promise<Set<string>> {
    return insertManyNew(this.keys, claims);
  }

  /**
   * Makes the key of (workspace, externalId) point at `target`, unless a valid key points at
   * another live customer ("held"). See the protocol at the top of this file.
   */
  async claim(workspaceId: string, externalId: string, target: string, deadline: number): Promise<Claim> {
    const _id = identityKeyId(workspaceId, externalId);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await pauseBeforeRetry(attempt, deadline, CONTENDED);
      const token = newToken();
      const key = await dbCall("customer_keys", "findOne", (o) => this.keys.findOne({ _id }, o));
      if (key === null) {
        if (await insertIfAbsent(this.keys, { _id, customerId: target, token, at: new Date() })) return { kind: "claimed", token };
        continue;
      }
      if (key.customerId !== target) {
        const holder = await dbCall("customers", "findOne", (o) => this.customers.findOne({ _id: key.customerId }, o));
        const live = isLiveIn(holder, workspaceId);
        if (live && holder.externalId === externalId) return { kind: "held", customer: holder };
        if (!live && holder !== null) {
          // Deleted (for good) or another workspace's: stale, nothing in flight can revive it.
        } else if (Date.now() - key.at.getTime() < this.graceMs) {
          continue; // probably a create or rename in flight: wait for it
        } else if (holder === null) {
          if (!(await this.poison(key.customerId, workspaceId))) continue; // it was inserted meanwhile
        } else {
          const fenced = await dbCall("customers", "updateOne", (o) =>
            this.customers.updateOne({ _id: key.customerId, deletedAt: null, externalId: { $ne: externalId } }, { $inc: { rev: 1 } }, o),
          );
          if (fenced.matchedCount === 0) continue; // it changed meanwhile: re-evaluate
        }
      }
      // Stale, or already ours (a retry): take it over with a fresh token.
      const res = await dbCall("customer_keys", "replaceOne", (o) =>
        this.keys.replaceOne({ _id, token: key.token } as Filter<KeyDoc>, { customerId: target, token, at: new Date() }, o),
      );
      if (res.matchedCount > 0) return { kind: "claimed", token };
    }
  }

  /** Deletes the old key of a committed rename, unless it was re-tokened meanwhile (then it is someone else's claim). */
  async releaseRenamed(oldKey: KeyDoc): Promise<void> {
    await dbCall("customer_keys", "deleteOne", (o) => this.keys.deleteOne({ _id: oldKey._id, token: oldKey.token }, o));
  }

  /** Deletes a key while it points at `customerId`, a deleted customer (every such key is stale, whatever its token). */
  async releaseOfDeleted(keyId: string, customerId: string): Promise<void> {
    await dbCall("customer_keys", "deleteOne", (o) => this.keys.deleteOne({ _id: keyId, customerId }, o));
  }

  /** Deletes every key still pointing at a deleted customer (their `_id`s hold its external ids). */
  async removeAllOf(customerId: string): Promise<void> {
    // One conditional delete per key rather than a deleteMany by customerId: a key taken over
    // between the read and the delete must stay.
    const keys = await dbCall("customer_keys", "find", (o) => this.keys.find({ customerId }, { ...o, projection: { _id: 1 } }).toArray());
    for (const { _id } of keys) await this.releaseOfDeleted(_id, customerId);
  }

  /** Inserts a deleted tombstone under a customer id so a late insert of it fails; false if the id exists. */
  poison(customerId: string, workspaceId: string): Promise<boolean> {
    return insertIfAbsent(this.customers, tombstoneDoc(customerId, workspaceId, new Date()));
  }
}
