/**
 * API keys: `lw_live_<random>` / `lw_test_<random>` with 256 bits of randomness. Only the
 * SHA-256 of a key is stored; a slow hash adds nothing for secrets this long, and SHA-256
 * lets the gateway look a key up by its hash directly.
 */
import { createHash, randomBytes } from "node:crypto";

export type KeyMode = "live" | "test";

/** A new plaintext key. */
export function generateApiKey(mode: KeyMode): string {
  return `lw_${mode}_${randomBytes(32).toString("base64url")}`;
}

/** Lowercase hex SHA-256 of a plaintext key. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}
