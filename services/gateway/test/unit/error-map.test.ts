import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import { invalidArgument } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { ERROR_TABLE, toHttpError } from "../../src/error-map.js";
import { HttpError } from "../../src/http-error.js";

describe("error map", () => {
  it.each([
    // code, service, status, REST code, message kept from the service?
    [Code.NotFound, CustomersService, 404, "NOT_FOUND", true],
    [Code.AlreadyExists, CustomersService, 409, "DUPLICATE_EXTERNAL_ID", true],
    [Code.InvalidArgument, CustomersService, 400, "VALIDATION_ERROR", true],
    [Code.FailedPrecondition, AnalyticsService, 400, "VALIDATION_ERROR", true],
    [Code.OutOfRange, AnalyticsService, 400, "VALIDATION_ERROR", true],
    [Code.Unauthenticated, CustomersService, 401, "INVALID_API_KEY", false],
    [Code.PermissionDenied, CustomersService, 403, "FORBIDDEN", true],
    [Code.ResourceExhausted, AnalyticsService, 429, "RATE_LIMITED", true],
    [Code.Unavailable, CustomersService, 503, "SERVICE_UNAVAILABLE", false],
    [Code.DeadlineExceeded, AnalyticsService, 503, "SERVICE_UNAVAILABLE", false],
    [Code.Internal, AnalyticsService, 500, "ANALYTICS_ERROR", false],
    [Code.Internal, CustomersService, 500, "INTERNAL_ERROR", false],
    [Code.Internal, undefined, 500, "INTERNAL_ERROR", false],
    [Code.Unknown, AnalyticsService, 500, "INTERNAL_ERROR", false],
    [Code.DataLoss, CustomersService, 500, "INTERNAL_ERROR", false],
    [Code.Unimplemented, CustomersService, 500, "INTERNAL_ERROR", false],
    [Code.Aborted, CustomersService, 500, "INTERNAL_ERROR", false],
    [Code.Canceled, CustomersService, 500, "INTERNAL_ERROR", false],
  ])("%s from %s → %i %s", (code, service, status, restCode, keepsMessage) => {
    const secret = "mongo at 10.0.0.7:27017 said no";
    const e = toHttpError(new ConnectError(secret, code), service);
    expect(e.status).toBe(status);
    expect(e.code).toBe(restCode);
    if (keepsMessage) expect(e.message).toBe(secret);
    else expect(e.message).not.toContain("10.0.0.7");
  });

  it("503s ask the client to retry shortly (Retry-After); other answers carry no extra header", () => {
    for (const code of [Code.Unavailable, Code.DeadlineExceeded]) expect(toHttpError(new ConnectError("x", code), CustomersService).headers).toEqual({ "retry-after": "1" });
    for (const code of [Code.NotFound, Code.Internal, Code.InvalidArgument]) expect(toHttpError(new ConnectError("x", code), CustomersService).headers).toBeUndefined();
  });

  it("every 5xx line has a fixed message", () => {
    for (const [, m] of ERROR_TABLE) if (m.status >= 500) expect(m.message).toBeDefined();
  });

  it("InvalidArgument carries the google.rpc.BadRequest violations as details", () => {
    const e = toHttpError(invalidArgument([{ field: "limit", issue: "must be <= 100" }, { field: "sortOrder", issue: "must be asc or desc" }]), CustomersService);
    expect(e).toMatchObject({ status: 400, code: "VALIDATION_ERROR" });
    expect(e.details).toEqual([
      { field: "limit", issue: "must be <= 100" },
      { field: "sortOrder", issue: "must be asc or desc" },
    ]);
  });

  it("HttpErrors pass through unchanged", () => {
    const h = new HttpError(413, "PAYLOAD_TOO_LARGE", "too big");
    expect(toHttpError(h)).toBe(h);
  });

  it.each([new TypeError("x.y is undefined"), "a string", null, { stack: "at foo (/src/x.ts:1:1)" }])("anything else (%s) → 500 INTERNAL_ERROR, generic message", (thrown) => {
    const e = toHttpError(thrown, CustomersService);
    expect(e).toMatchObject({ status: 500, code: "INTERNAL_ERROR", message: "an unexpected error occurred" });
  });
});
