/**
 * How callers name a customer, and the identity keys that make an external id unique per
 * workspace. Pure functions; the protocol that keeps keys and customers consistent lives in
 * identity-keys.ts.
 */

/** A parsed `id` argument: a customer id, or the external id from `ext_<externalId>`. */
export type CustomerRef = { readonly kind: "id"; readonly id: string } | { readonly kind: "external"; readonly externalId: string };

const CUSTOMER_ID = /^cus_[0-9A-Za-z]{1,64}$/;
const EXT_PREFIX = "ext_";

/**
 * Parses an `id` argument. `cus_...` is a customer id; `ext_<externalId>` addresses a
 * customer by external id (everything after the first `ext_`, so `ext_ext_1` means "ext_1").
 * Anything else, or an external id no customer could have, is null: the caller answers
 * NOT_FOUND, exactly as for an unknown customer.
 */
export function parseCustomerRef(raw: string): CustomerRef | null {
  if (raw.startsWith(EXT_PREFIX)) {
    const externalId = raw.slice(EXT_PREFIX.length);
    return externalIdIssue(externalId) === null ? { kind: "external", externalId } : null;
  }
  return CUSTOMER_ID.test(raw) ? { kind: "id", id: raw } : null;
}

/** Longest external id, in characters (code points). */
export const MAX_EXTERNAL_ID = 255;

// C0 and C1 control characters (includes NUL, tab, newline, DEL).
const CONTROL = /\p{Cc}/u;

/** True when `s` holds a control character. */
export function hasControlChars(s: string): boolean {
  return CONTROL.test(s);
}

/** Length in code points, the way a user counts characters (an emoji is one). */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Why `externalId` is not acceptable, or null when it is. */
export function externalIdIssue(externalId: string): string | null {
  if (externalId === "") return "is required";
  if (charLength(externalId) > MAX_EXTERNAL_ID) return `must be at most ${MAX_EXTERNAL_ID} characters`;
  if (hasControlChars(externalId)) return "must not contain control characters";
  return null;
}

/**
 * `_id` of the identity key of (workspace, external id). Workspace ids never contain ":",
 * so the first ":" separates the two and distinct pairs never share a key.
 */
export function identityKeyId(workspaceId: string, externalId: string): string {
  return `${workspaceId}:${externalId}`;
}
