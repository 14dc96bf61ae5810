/**
 * List cursors: the position after which a list goes on, opaque to callers and tamper-proof.
 *
 * A cursor is `<payload>.<mac>`, both base64url: the payload is the JSON `[t, id, span]` — the
 * creation time (epoch ms) and id of the last customer of the page it came with, and how much
 * creation time that page spanned (a hint for the next read, keyset.ts) — and the MAC is
 * HMAC-SHA256 under a server key over the payload together with the workspace, the sort order
 * and the filters, cut to 128 bits. So a cursor altered in any way, or presented by another
 * workspace or with other filters or another order, fails the check and the request is refused
 * (400); it never selects anything. The payload names a customer of the caller's own list, so
 * nothing in it is secret.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { dbCall, insertIfAbsent } from "@linquid/mesh";
import type { Db } from "mongodb";
import type { SortOrder } from "./validation.js";

/** Where a list goes on: strictly after this (creation time, id) in the list's order. */
export interface CursorPosition {
  /** Creation time, epoch milliseconds. */
  readonly t: number;
  readonly id: string;
  /** Creation time the page before spanned, in ms: how far the next read looks at first. */
  readonly span: number;
}

/** What a cursor is valid for. */
export interface CursorScope {
  readonly workspaceId: string;
  readonly sortOrder: SortOrder;
  /** canonicalFilters(...) */
  readonly filters: string;
}

const SHAPE = /^[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{22}$/;
const CUSTOMER_ID = /^cus_[0-9A-Za-z]{1,64}$/;

export class CursorCodec {
  private readonly keys: readonly Buffer[];

  /** `keys[0]` signs; every key verifies (so a key can be rotated without breaking cursors in use). */
  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0 || keys.some((k) => k.length < 32)) throw new Error("cursor keys must be at least 32 bytes");
    this.keys = keys;
  }

  encode(position: CursorPosition, scope: CursorScope): string {
    const payload = Buffer.from(JSON.stringify([position.t, position.id, position.span])).toString("base64url");
    return `${payload}.${this.mac(this.keys[0]!, payload, scope).toString("base64url")}`;
  }

  /** The position of a cursor made for `scope`, or null for anything else. */
  decode(cursor: string, scope: CursorScope): CursorPosition | null {
    if (!SHAPE.test(cursor)) return null;
    const [payload, mac] = cursor.split(".") as [string, string];
    const given = Buffer.from(mac, "base64url");
    // Only the canonical spelling: a last character differing in unused bits decodes alike.
    if (given.toString("base64url") !== mac) return null;
    if (!this.keys.some((k) => timingSafeEqual(this.mac(k, payload, scope), given))) return null;
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      return null;
    }
    if (!Array.isArray(value) || value.length !== 3) return null;
    const [t, id, span] = value as unknown[];
    if (!Number.isSafeInteger(t) || typeof id !== "string" || !CUSTOMER_ID.test(id) || !Number.isSafeInteger(span) || (span as number) < 0) return null;
    return { t: t as number, id, span: span as number };
  }

  private mac(key: Buffer, payload: string, scope: CursorScope): Buffer {
    return createHmac("sha256", key)
      .update(JSON.stringify(["linquid.customers.cursor.v1", scope.workspaceId, scope.sortOrder, scope.filters, payload]))
      .digest()
      .subarray(0, 16);
  }
}

/**
 * The cursor key: from CURSOR_SECRET when configured, else one generated at first start and
 * kept in `customer_settings`, so every replica and restart signs and checks with the same key.
 */
export async function cursorKey(db: Db, secret: string | undefined): Promise<Buffer> {
  if (secret !== undefined) return Buffer.from(secret, "utf8");
  const settings = db.collection<{ _id: string; key: string }>("customer_settings");
  await insertIfAbsent(settings, { _id: "cursor-key", key: randomBytes(32).toString("base64") });
  const doc = await dbCall("customer_settings", "findOne", (o) => settings.findOne({ _id: "cursor-key" }, o));
  if (doc === null) throw new Error("cursor key missing after insert");
  return Buffer.from(doc.key, "base64");
}
