/**
 * Field-level validation errors, the same way for every service: INVALID_ARGUMENT carrying a
 * google.rpc.BadRequest detail with one violation per offending field. Fields are named as
 * REST clients see them (the JSON name: `limit`, `sortOrder`, `group_by`, `externalId`).
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "@linquid/contracts";

export interface FieldViolation {
  field: string;
  issue: string;
}

/** An INVALID_ARGUMENT error listing the violations. */
export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.issue}`).join("; ");
  return new ConnectError(message, Code.InvalidArgument, undefined, [
    {
      desc: BadRequestSchema,
      value: create(BadRequestSchema, { fieldViolations: violations.map((v) => ({ field: v.field, description: v.issue })) }),
    },
  ]);
}

/** The violations carried by an error, if it is a validation error. */
export function violationsOf(err: ConnectError): FieldViolation[] {
  return err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, issue: v.description })));
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
  throwIfAny(): void {
    if (this.list.length > 0) throw invalidArgument(this.list);
  }
}
