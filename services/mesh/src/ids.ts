import { randomBytes } from "node:crypto";

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz";

/**
 * A random id with a type prefix, e.g. newId("cus") → "cus_3kT9...". 22 characters of a
 * 54-letter alphabet carry ~126 bits; `bytes` raises that for secrets.
 */
export function newId(prefix: string, length = 22): string {
  const bytes = randomBytes(length);
  let out = "";
  for (let i = 0; i < length; i++) out += alphabet[bytes[i]! % alphabet.length];
  return `${prefix}_${out}`;
}
