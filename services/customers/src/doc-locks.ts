/**
 * Per-document write serialization inside this process.
 *
 * MongoDB applies every single-document write atomically, conditions included. FerretDB v1 on
 * SQLite (the embedded and test backend) does not: an update reads the document, applies the
 * operators in Go and writes it back, so two concurrent `updateOne({_id, rev: 0}, {$inc: ...})`
 * can both match and one `$inc` of two is lost (measured: 100 concurrent `$inc` → 15). Only
 * inserts are atomic there (the unique `_id`). Running every non-insert write to one document
 * through this lock makes the repository's conditional writes atomic on FerretDB as long as one
 * process writes to it, which is how FerretDB is used (`npm start`, the tests); deployments with
 * several replicas run on MongoDB, where the database itself provides the guarantee.
 */
const tails = new Map<string, Promise<void>>();

/** Runs `fn` when no other call holding `key` in this process is running; calls run in order. */
export async function withDocLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = tails.get(key);
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const tail = prev === undefined ? mine : prev.then(() => mine);
  tails.set(key, tail);
  if (prev !== undefined) await prev;
  try {
    return await fn();
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}

/** How many keys are locked or queued right now (for tests: nothing may leak). */
export function lockedKeyCount(): number {
  return tails.size;
}
