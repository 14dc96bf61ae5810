/**
 * The one error type the gateway's policies throw: an HTTP status, the REST error code of
 * the contract (rest-api.md), a message safe to show the caller, and field details.
 * Anything else thrown inside the gateway is unexpected and becomes 500 INTERNAL_ERROR.
 */

/** One offending field, named as the REST caller sees it. */
export interface FieldIssue {
  readonly field: string;
  readonly issue: string;
}

export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: readonly FieldIssue[],
    /** Extra response headers, e.g. `Allow` on a 405 or `Retry-After` on a 429. */
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
  }
}

/** 400 VALIDATION_ERROR listing the offending fields. */
export function validationError(details: readonly FieldIssue[], message?: string): HttpError {
  return new HttpError(400, "VALIDATION_ERROR", message ?? details.map((d) => `${d.field}: ${d.issue}`).join("; "), details);
}
