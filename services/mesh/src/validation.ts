/**
 * Field-level validation errors, the same way for every service: INVALID_ARGUMENT carrying a
 * google.rpc.BadRequest detail with one violation per offending field. Fields are named as
 * REST clients see them (the JSON name: `limit`, `sortOrder`, `group_by`, `externalId`).
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, type BadRequest } from "@linquid/contracts";

export interface FieldViolation {
  field: string;
  issue: string;
}

/** The google.rpc.BadRequest message listing the violations. */
export function badRequest(violations: readonly FieldViolation[]): BadRequest {
  return create(BadRequestSchema, { fieldViolations: violations.map((v) => ({ field: v.field, description: v.issue })) });
}

/** The violations a google.rpc.BadRequest lists. */
export function violationsIn(detail: BadRequest): FieldViolation[] {
  return detail.fieldViolations.map((v) => ({ field: v.field, issue: v.description }));
}

/** An INVALID_ARGUMENT error listing the violations. */
export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.issue}`).join("; ");
  return new ConnectError(message, Code.InvalidArgument, undefined, [{ desc: BadRequestSchema, value: badRequest(violations) }]);
}

/** The violations carried by an error, if it is a validation error. */
export function violationsOf(err: ConnectError): FieldViolation[] {
  return err.findDetails(BadRequestSchema).flatMap(violationsIn);
}

/** Collects violations; `throwIfAny` raises them together so a caller sees every bad field at once. */
export class Violations {
  private readonly list: FieldViolation[] = [];
  add(field: string, issue: string): this {
    this.list.push({ field, issue });
    return this;
  }
  get empty(): boolean {
    return this.list.length === 0;
  }
  get all(): readonly FieldViolation[] {
    return this.list;
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw invalidArgument(this.list);
  }
}
