/**
 * When the database last answered one of this process's calls: evidence of life for the
 * database watch (db-watch.ts), which must not take a database that is slow to answer its
 * `hello` — a machine short of CPU — for one that stopped, while queries keep coming back.
 */
let lastAnswerAt = 0;

/** Notes that the database answered a call just now. */
export function noteDatabaseAnswer(): void {
  lastAnswerAt = Date.now();
}

/** Whether the database answered any call of this process at or after `since` (epoch ms). */
export function databaseAnsweredSince(since: number): boolean {
  return lastAnswerAt >= since;
}
