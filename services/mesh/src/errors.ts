/**
 * The one translation of failures into RPC errors, used at every edge where they happen:
 *
 * - database calls (`fromMongoError`, at the repository edge through dbCall): duplicate key →
 *   AlreadyExists; a command stopped by its `maxTimeMS` (the RPC's deadline, see deadline.ts) →
 *   DeadlineExceeded; the database unreachable, hung or shutting down → Unavailable; a write that
 *   gave up waiting for the database's lock (overloaded, LockTimeout) → Unavailable; the rest →
 *   Internal;
 * - calls to another service (`fromPeerError`, in the mesh's client transport): a call that got
 *   no answer because the connection to the peer broke, was refused or stopped answering
 *   (a crash, a restart, a hung process) → Unavailable;
 * - a dependency that is known to be down (`unavailable`).
 *
 * Unavailable is the only code for "a dependency cannot be reached, retry shortly"; the gateway
 * answers it (and DeadlineExceeded) with 503 SERVICE_UNAVAILABLE and Retry-After. The original
 * error is kept as `cause`, never in the message.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  MongoClientClosedError,
  MongoError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoServerClosedError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from "mongodb";

/** The error every "a dependency cannot be reached" becomes: Unavailable ("<what> unavailable"), the cause kept. */
export function unavailable(what: string, cause?: unknown): ConnectError {
  return new ConnectError(`${what} unavailable`, Code.Unavailable, undefined, undefined, cause);
}

/**
 * True for the codes of a call that did not reach an answer: the callee (or its database) is
 * down, hung or too slow. The codes a caller passes on as Unavailable.
 */
export function isUnavailable(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.Canceled;
}

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

/**
 * MongoDB's LockTimeout: a command gave up waiting for a lock. The embedded database answers it
 * when SQLite's single write lock stayed taken past its busy timeout (scripts/ferretdb,
 * patch 10), i.e. under a write load it cannot keep up with.
 */
const LOCK_TIMEOUT = 24;

/**
 * True when the database gave up waiting for a lock: it is up but overloaded, and the same
 * call may succeed shortly. Bulk writes keep the command's error in their chain.
 */
export function isLockTimeoutError(err: unknown): boolean {
  return chainOf(err).some((e) => e instanceof MongoError && e.code === LOCK_TIMEOUT);
}

/**
 * Server error codes that say "not now, this server cannot serve": shutting down, stepping
 * down, a network failure between servers (MongoDB's error_codes.yml).
 */
const UNAVAILABLE_SERVER_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** Driver errors not exported by name: a pool closed with its client, a checkout that waited too long. */
const UNAVAILABLE_DRIVER_ERRORS = new Set(["MongoPoolClosedError", "MongoWaitQueueTimeoutError"]);

/**
 * The driver wraps some failures: MongoBulkWriteError keeps a network or server-selection
 * error that interrupted the bulk write as `errorResponse`, others as `cause`. This walks
 * the chain, the error itself first.
 */
function chainOf(err: unknown): unknown[] {
  const out: unknown[] = [];
  const todo = [err];
  while (todo.length > 0 && out.length < 8) {
    const e = todo.shift();
    if (!(e instanceof Error) || out.includes(e)) continue;
    out.push(e);
    const r = (e as { errorResponse?: unknown }).errorResponse;
    if (r instanceof Error) todo.push(r);
    if (e.cause !== undefined) todo.push(e.cause);
  }
  return out;
}

function isUnreachableOne(err: unknown): boolean {
  if (err instanceof MongoNetworkError || err instanceof MongoServerSelectionError) return true;
  // The closed-client errors appear while a process shuts down: the call could not be made, retry elsewhere.
  if (err instanceof MongoNotConnectedError || err instanceof MongoTopologyClosedError || err instanceof MongoClientClosedError || err instanceof MongoServerClosedError) return true;
  if (!(err instanceof MongoError)) return false;
  if (UNAVAILABLE_DRIVER_ERRORS.has(err.name)) return true;
  if (typeof err.code === "number" && UNAVAILABLE_SERVER_CODES.has(err.code)) return true;
  return typeof err.hasErrorLabel === "function" && (err.hasErrorLabel("ResetPool") || err.hasErrorLabel("PoolRequestedRetry") || err.hasErrorLabel("InterruptInUseConnections"));
}

/** True when the database cannot be reached (or stopped answering), as opposed to a query that failed. */
export function isUnreachableError(err: unknown): boolean {
  return chainOf(err).some(isUnreachableOne);
}

/** Maps any error thrown by the MongoDB driver to a ConnectError. */
export function fromMongoError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (isDuplicateKeyError(err)) return new ConnectError(`${what}: already exists`, Code.AlreadyExists, undefined, undefined, err);
  if (isTimeLimitError(err) || err instanceof MongoOperationTimeoutError) return new ConnectError(`${what}: deadline exceeded`, Code.DeadlineExceeded, undefined, undefined, err);
  if (isUnreachableError(err)) return unavailable(`${what}: database`, err);
  // An overloaded database, not a failed query: retry shortly, like an unreachable one.
  if (isLockTimeoutError(err)) return new ConnectError(`${what}: database busy`, Code.Unavailable, undefined, undefined, err);
  return new ConnectError(`${what}: database error`, Code.Internal, undefined, undefined, err);
}

/**
 * Node error codes of a connection that broke, was refused or never came up: the call got no
 * answer from the peer (it crashed, restarted, or is not there).
 */
const BROKEN_CONNECTION_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_INVALID_SESSION",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_PING_CANCEL",
  "ERR_HTTP2_ERROR",
]);

function nodeCodes(err: unknown): string[] {
  return chainOf(err).flatMap((e) => {
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" ? [code] : [];
  });
}

/**
 * Node error codes of a TLS connection that could not be set up: the peer's certificate is not
 * trusted by TLS_CA, names another host, or has expired, or the peer does not speak TLS at all.
 * The call got no answer either, and retrying does not help until a credential changes.
 */
const TLS_FAILURE_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_REVOKED",
]);

/** True when a call failed because no trusted TLS connection to its peer could be made (TLS_FAILURE_CODES, ERR_TLS_*, ERR_SSL_*). */
export function isTlsFailure(err: unknown): boolean {
  return nodeCodes(err).some((c) => TLS_FAILURE_CODES.has(c) || c.startsWith("ERR_TLS_") || c.startsWith("ERR_SSL_"));
}

/**
 * A call whose stream the connection cancelled (a session torn down under it: the peer's
 * process died, its socket closed) rather than the caller: connect-node reports both as
 * CANCELED, and only the caller knows whether it gave up itself (`callerAborted`).
 */
function isCancelledUnderCaller(err: ConnectError, callerAborted: boolean): boolean {
  return err.code === Code.Canceled && !callerAborted;
}

/**
 * True when a call to another service failed in the transport, without an answer from the
 * service: a broken or refused connection, a connection that stopped answering PINGs, a stream
 * cancelled by its connection's end. Errors the service itself answered carry no Node error as
 * cause; a deadline passing or the caller giving up are not the peer's failure.
 */
export function isPeerUnreachable(err: unknown, callerAborted = false): boolean {
  if (!(err instanceof ConnectError) || err.code === Code.DeadlineExceeded) return false;
  if (err.code === Code.Canceled) return isCancelledUnderCaller(err, callerAborted);
  if (nodeCodes(err).some((c) => BROKEN_CONNECTION_CODES.has(c)) || isTlsFailure(err)) return true;
  // connect-node's own words for a connection it gave up on (see its http2-session-manager).
  return err.code === Code.Unavailable && /PING timed out|connection aborted|http\/2 stream closed with error code REFUSED_STREAM/.test(err.rawMessage);
}

/**
 * True when a call failed because its connection broke under it (reset, closed, GOAWAY, its
 * stream cancelled by the connection's end): a fresh connection may well reach a restarted peer
 * or another replica, so a safe call may be retried. Refused connections and PING timeouts are
 * not worth an immediate retry.
 */
export function isBrokenConnection(err: unknown, callerAborted = false): boolean {
  if (!(err instanceof ConnectError) || err.code === Code.DeadlineExceeded) return false;
  if (err.code === Code.Canceled) return isCancelledUnderCaller(err, callerAborted);
  const codes = nodeCodes(err);
  if (codes.includes("ECONNREFUSED")) return false;
  return codes.some((c) => BROKEN_CONNECTION_CODES.has(c) && c !== "ETIMEDOUT" && c !== "ENOTFOUND" && c !== "EAI_AGAIN");
}

/**
 * Maps a failed call to service `peer`: transport failures become Unavailable, answers pass
 * through. `callerAborted`: the caller's own signal had fired (its deadline, or it gave up).
 */
export function fromPeerError(err: unknown, peer: string, callerAborted = false): unknown {
  if (!isPeerUnreachable(err, callerAborted)) return err;
  // Named, so that the log line of the failed request says what an operator has to fix.
  if (isTlsFailure(err)) return new ConnectError(`${peer} service unavailable: no trusted TLS connection (${ConnectError.from(err).rawMessage})`, Code.Unavailable, undefined, undefined, err);
  return unavailable(`${peer} service`, err);
}
