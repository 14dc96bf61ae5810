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

/**
 * A seeded generator of numbers in [0, 1) (mulberry32): the same seed gives the same sequence,
 * for synthetic data and for tests that print their seed so a failure can be replayed.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
