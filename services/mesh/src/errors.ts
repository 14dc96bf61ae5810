/**
 * Translation of backend failures into RPC errors, done once at the repository edge:
 * duplicate key → AlreadyExists, unreachable database → Unavailable, a command stopped by its
 * `maxTimeMS` (the RPC's deadline, see deadline.ts) → DeadlineExceeded, the rest → Internal
 * (with the original kept as `cause`, never in the message).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { MongoClientClosedError, MongoError, MongoNetworkError, MongoNotConnectedError, MongoServerClosedError, MongoServerSelectionError, MongoTopologyClosedError } from "mongodb";

/** True for a unique-index violation (E11000). */
export function isDuplicateKeyError(err: unknown): boolean {
  return err instanceof MongoError && (err.code === 11000 || err.code === 11001);
}

/** MongoDB's MaxTimeMSExpired: the server gave up on a command at its `maxTimeMS`. */
const MAX_TIME_MS_EXPIRED = 50;

/** True when the database stopped a command because its time budget ran out. */
export function isTimeLimitError(err: unknown): boolean {
  return err instanceof MongoError && err.code === MAX_TIME_MS_EXPIRED;
}

/** True when the database cannot be reached, as opposed to a query that failed. */
export function isUnreachableError(err: unknown): boolean {
  if (err instanceof MongoNetworkError || err instanceof MongoServerSelectionError) return true;
  // The closed-client errors appear while a process shuts down: the call could not be made, retry elsewhere.
  if (err instanceof MongoNotConnectedError || err instanceof MongoTopologyClosedError || err instanceof MongoClientClosedError || err instanceof MongoServerClosedError) return true;
  if (err instanceof MongoError && typeof err.hasErrorLabel === "function") {
    return err.hasErrorLabel("ResetPool") || err.hasErrorLabel("PoolRequestedRetry");
  }
  return false;
}

/** Maps any error thrown by the MongoDB driver to a ConnectError. */
export function fromMongoError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (isDuplicateKeyError(err)) return new ConnectError(`${what}: already exists`, Code.AlreadyExists, undefined, undefined, err);
  if (isUnreachableError(err)) return new ConnectError(`${what}: database unavailable`, Code.Unavailable, undefined, undefined, err);
  if (isTimeLimitError(err)) return new ConnectError(`${what}: deadline exceeded`, Code.DeadlineExceeded, undefined, undefined, err);
  return new ConnectError(`${what}: database error`, Code.Internal, undefined, undefined, err);
}
