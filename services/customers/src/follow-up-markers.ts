/**
 * Markers of the follow-ups a customer write owes (follow-ups.ts): the scrub of a deleted
 * customer's PII and the registration of a created customer's creation time in the analytics
 * service, and the sync of a customer's metadata index entries (metadata-index.ts).
 *
 * `customer_follow_ups`: `_id` = `${kind}:${customerId}` → `{kind, workspaceId, customerId,
 * token, due}`. The write that owes a follow-up records its marker BEFORE the customer write
 * (so no crash between the two can leave work nobody knows of) and refreshes its token on every
 * attempt; the marker goes once the follow-up is done, or once it is proven that the customer
 * write never happened (follow-ups.ts fences it off first). The collection holds pending work
 * only, and sweepers find it with one query on the `(kind, due)` index — no scan of customers.
 *
 * `due` is when a sweeper may take the marker: a little after the write (whose own attempt comes
 * first), then, once a sweeper leases it (a conditional update of `due`), after the lease. The
 * lease keeps the sweepers of several replicas off each other's work; the follow-ups are
 * idempotent, so a lease that runs out under a slow attempt costs a repeat, nothing else.
 */
import { dbCall, ensureIndexes } from "@linquid/mesh";
import type { Collection, Db } from "mongodb";
import { newToken } from "./identity-keys.js";

export type FollowUpKind = "scrub" | "register" | "metadata";

export interface FollowUpDoc {
  _id: string;
  kind: FollowUpKind;
  workspaceId: string;
  customerId: string;
  /** Fresh on every write of the marker: a sweeper removes only the marker it examined. */
  token: string;
  due: Date;
}

export interface FollowUpMarkersOptions {
  /** How long after the write a sweeper may take the marker (the write's own attempt comes first). */
  firstDueMs?: number;
}

export class FollowUpMarkers {
  readonly markers: Collection<FollowUpDoc>;
  private readonly firstDueMs: number;

  constructor(db: Db, options: FollowUpMarkersOptions = {}) {
    this.markers = db.collection<FollowUpDoc>("customer_follow_ups");
    this.firstDueMs = options.firstDueMs ?? 3000;
  }

  ensureIndexes(): Promise<void> {
    return ensureIndexes(this.markers, [{ key: { kind: 1, due: 1 }, name: "kind_due" }]);
  }

  /** Records (or refreshes, with a new token) the marker of a follow-up about to be owed; returns its token. */
  async mark(kind: FollowUpKind, workspaceId: string, customerId: string): Promise<string> {
    const due = new Date(Date.now() + this.firstDueMs);
    const token = newToken();
    await dbCall("customer_follow_ups", "updateOne", (o) =>
      this.markers.updateOne({ _id: `${kind}:${customerId}` }, { $set: { kind, workspaceId, customerId, token, due } }, { ...o, upsert: true }),
    );
    return token;
  }

  /** Up to `limit` markers of `kind` that are due, oldest first. */
  findDue(kind: FollowUpKind, limit: number): Promise<FollowUpDoc[]> {
    const now = new Date();
    return dbCall("customer_follow_ups", "find", (o) => this.markers.find({ kind, due: { $lte: now } }, o).sort({ due: 1 }).limit(limit).toArray());
  }

  /** Leases a due marker to the caller for `leaseMs`; null when another sweeper took or rewrote it since it was read. */
  async lease(marker: FollowUpDoc, leaseMs: number): Promise<FollowUpDoc | null> {
    const due = new Date(Date.now() + leaseMs);
    const res = await dbCall("customer_follow_ups", "updateOne", (o) => this.markers.updateOne({ _id: marker._id, due: marker.due }, { $set: { due } }, o));
    return res.matchedCount > 0 ? { ...marker, due } : null;
  }

  /** Removes the marker of a follow-up; with `token`, only if nobody rewrote it since it was read. */
  async remove(kind: FollowUpKind, customerId: string, token?: string): Promise<boolean> {
    const filter = token === undefined ? { _id: `${kind}:${customerId}` } : { _id: `${kind}:${customerId}`, token };
    const res = await dbCall("customer_follow_ups", "deleteOne", (o) => this.markers.deleteOne(filter, o));
    return res.deletedCount > 0;
  }

  /** The marker of a follow-up, if any (tests and diagnostics). */
  find(kind: FollowUpKind, customerId: string): Promise<FollowUpDoc | null> {
    return dbCall("customer_follow_ups", "findOne", (o) => this.markers.findOne({ _id: `${kind}:${customerId}` }, o));
  }
}
