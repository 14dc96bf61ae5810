import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CreateCustomerResponseSchema,
  DeleteCustomerResponseSchema,
  GetJourneyResponseSchema,
  GetJourneySummaryResponseSchema,
  ListCustomersResponseSchema,
  type CreateCustomerRequest,
  type GetJourneyRequest,
  type ListCustomersRequest,
  type TrackSaleRequest,
  type UpdateCustomerRequest,
} from "@linquid/contracts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HttpError } from "../../src/http-error.js";
import { REST_SERVICES } from "../../src/index.js";
import { buildRoutes, createRouteTable, type MatchedRoute } from "../../src/route-table.js";
import { decodeRequest, encodeResponse, parseJsonBody } from "../../src/transcoder.js";

const table = createRouteTable(buildRoutes(REST_SERVICES));
function matched(method: string, path: string, query = ""): MatchedRoute {
  const r = table.match(method, path, new URLSearchParams(query));
  if (r.kind !== "found") throw new Error(`no route ${method} ${path}`);
  return r.match;
}
function decode(method: string, path: string, query = "", body?: Record<string, unknown>) {
  return decodeRequest(matched(method, path, query), new URLSearchParams(query), body, "ws_1");
}
function issues(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    if (e instanceof HttpError) return { status: e.status, code: e.code, details: e.details };
    throw e;
  }
  throw new Error("did not throw");
}
const json = (s: string, ...ct: [string | undefined] | []) => parseJsonBody(Buffer.from(s), ct.length === 0 ? "application/json" : ct[0]);

describe("request body parsing", () => {
  it("accepts a JSON object, with or without charset", () => {
    expect(json('{"a":1}')).toEqual({ a: 1 });
    expect(json('{"a":1}', "application/json; charset=utf-8")).toEqual({ a: 1 });
    expect(json('{"a":1}', "application/merge-patch+json")).toEqual({ a: 1 });
  });
  it("treats an empty body as none", () => {
    expect(json("")).toBeUndefined();
    expect(json("", undefined)).toBeUndefined();
    expect(json("  \n")).toBeUndefined();
  });
  it.each([
    ['{"a":1}', undefined, 415],
    ['{"a":1}', "text/plain", 415],
    ['{"a":1}', "application/x-www-form-urlencoded", 415],
    ['{"a":1}', "application/json; charset=latin1", 415],
    ["{", "application/json", 400],
    ["[1,2]", "application/json", 400],
    ["null", "application/json", 400],
    ['"str"', "application/json", 400],
    ["42", "application/json", 400],
    [`{"a":${"[".repeat(40)}${"]".repeat(40)}}`, "application/json", 400],
  ])("%s as %s → %i", (body, ct, status) => {
    expect(issues(() => json(body, ct))).toMatchObject({ status });
  });
  it("refuses invalid UTF-8", () => {
    expect(issues(() => parseJsonBody(Buffer.from([0x7b, 0xff, 0x7d]), "application/json"))).toMatchObject({ status: 400, code: "VALIDATION_ERROR" });
  });
});

describe("request decoding", () => {
  it("maps query parameters by JSON or proto name, ignores unknown ones, sets the workspace from the principal", () => {
    const { message, canonicalQuery } = decode("GET", "/customers", "page=2&limit=50&sort_order=asc&search=a%20b&workspaceId=ws_evil&foo=bar");
    const m = message as ListCustomersRequest;
    expect(m).toMatchObject({ workspaceId: "ws_1", page: 2, limit: 50, sortOrder: "asc", search: "a b" });
    expect(canonicalQuery).toBe(JSON.stringify([["limit", 50], ["page", 2], ["search", "a b"], ["sortOrder", "asc"]]));
    expect((decode("GET", "/customers", "sortOrder=desc").message as ListCustomersRequest).sortOrder).toBe("desc");
  });

  it("normalizes equivalent queries to one canonical form", () => {
    expect(decode("GET", "/customers", "page=02&limit=5").canonicalQuery).toBe(decode("GET", "/customers", "limit=5&page=2").canonicalQuery);
  });

  it.each([
    ["page=1.5", "page"],
    ["page=abc", "page"],
    ["page=", "page"],
    ["limit=99999999999", "limit"],
    ["limit=1e2", "limit"],
    ["page=1&page=2", "page"],
  ])("GET /customers?%s → 400 naming %s", (query, field) => {
    expect(issues(() => decode("GET", "/customers", query))).toMatchObject({ status: 400, code: "VALIDATION_ERROR", details: [{ field }] });
  });

  it("parses bools strictly", () => {
    expect((decode("GET", "/customers/cus_1/journey", "summary=false&limit=1000").message as GetJourneyRequest).summary).toBe(false);
    expect(issues(() => decode("GET", "/customers/cus_1/journey", "summary=yes"))).toMatchObject({ details: [{ field: "summary", issue: "must be true or false" }] });
  });

  it("fills the path variable and the body into the request", () => {
    const m = decode("PATCH", "/customers/ext_x", "", { email: "a@b.c", name: null, external_id: "new" }).message as UpdateCustomerRequest;
    expect(m.id).toBe("ext_x");
    expect(m.workspaceId).toBe("ws_1");
    expect(m.email).toBe("a@b.c");
    expect(m.name).toBeUndefined();
    expect(m.externalId).toBe("new");
    // Keys present, by JSON name: null means "clear".
    expect(m.updateMask?.paths).toEqual(["email", "name", "externalId"]);
  });

  it("fills update_mask with nothing for an empty body", () => {
    expect((decode("PATCH", "/customers/cus_1", "", {}).message as UpdateCustomerRequest).updateMask?.paths).toEqual([]);
  });

  it("accepts metadata as a JSON object and int64 as a number or string", () => {
    const c = decode("POST", "/customers", "", { externalId: "u1", metadata: { plan: "gold", seats: 3, vip: true, note: null } }).message as CreateCustomerRequest;
    expect(c.metadata).toEqual({ plan: "gold", seats: 3, vip: true, note: null });
    const s = decode("POST", "/track/sale", "", { externalId: "u1", amount: 1999, currency: "USD", invoiceId: "i1", timestamp: "2026-04-01T12:00:00Z" }).message as TrackSaleRequest;
    expect(s.amount).toBe(1999n);
    expect(s.timestamp?.seconds).toBe(BigInt(Date.UTC(2026, 3, 1, 12) / 1000));
  });

  it.each([
    [{ externalId: "u1", workspaceId: "ws_evil" }, [{ field: "workspaceId", issue: "unknown field" }]],
    [{ externalId: "u1", workspace_id: "ws_evil" }, [{ field: "workspace_id", issue: "unknown field" }]],
    [{ externalId: "u1", updateMask: "email" }, [{ field: "updateMask", issue: "unknown field" }]],
    [{ externalId: "u1", bogus: 1, other: 2 }, [{ field: "bogus", issue: "unknown field" }, { field: "other", issue: "unknown field" }]],
    [{ externalId: 42 }, [{ field: "externalId", issue: "must be a string" }]],
    [{ externalId: { $gt: "" } }, [{ field: "externalId", issue: "must be a string" }]],
    [{ externalId: ["a"] }, [{ field: "externalId", issue: "must be a string" }]],
    [{ externalId: "u1", metadata: "x" }, [{ field: "metadata", issue: "must be a JSON object" }]],
    [{ externalId: "u1", external_id: "u2" }, [{ field: "externalId", issue: "given twice (by JSON and proto name)" }]],
    [{ __proto__: { polluted: true }, externalId: "u1" } as Record<string, unknown>, undefined],
  ])("POST /customers %j → 400", (body, details) => {
    const parsed = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
    if (details === undefined) {
      // A literal __proto__ key from JSON.parse is just an unknown field.
      expect(issues(() => decode("POST", "/customers", "", JSON.parse('{"__proto__":{"x":1},"externalId":"u1"}') as Record<string, unknown>))).toMatchObject({
        details: [{ field: "__proto__", issue: "unknown field" }],
      });
      return;
    }
    expect(issues(() => decode("POST", "/customers", "", parsed))).toEqual({ status: 400, code: "VALIDATION_ERROR", details });
  });

  it.each([
    ["/track/sale", { amount: 1.5 }, "amount"],
    ["/track/sale", { amount: "ten" }, "amount"],
    ["/track/sale", { timestamp: "yesterday" }, "timestamp"],
    ["/track/click", { clickId: true }, "clickId"],
  ])("POST %s %j → 400 naming %s", (path, body, field) => {
    expect(issues(() => decode("POST", path, "", body))).toMatchObject({ status: 400, details: [{ field }] });
  });

  it("binds map fields from name[key]=value, any key as data, each key once", () => {
    const m = decode("GET", "/customers", "metadata%5Bplan%5D=pro&metadata[__proto__]=p&metadata[a.b]=x&metadata[$where]=1&metadata[a[b]]=y&metadata[]=e").message as ListCustomersRequest;
    expect(Object.entries(m.metadata).sort()).toEqual(
      [
        ["plan", "pro"],
        ["__proto__", "p"],
        ["a.b", "x"],
        ["$where", "1"],
        ["a[b]", "y"],
        ["", "e"],
      ].sort(),
    );
    expect(Object.getPrototypeOf(m.metadata)).toBe(Object.prototype);
    expect(issues(() => decode("GET", "/customers", "metadata[k]=1&metadata[k]=2"))).toEqual({ status: 400, code: "VALIDATION_ERROR", details: [{ field: "metadata[k]", issue: "must be given once" }] });
    expect(issues(() => decode("GET", "/customers", "metadata=x"))).toMatchObject({ status: 400, details: [{ field: "metadata", issue: "must be given as metadata[<key>]=<value>" }] });
    // Unknown bracketed names are ignored like any unknown parameter.
    expect((decode("GET", "/customers", "other[k]=1&metadatax[k]=1").message as ListCustomersRequest).metadata).toEqual({});
    // The cache key does not depend on the order of the entries.
    expect(decode("GET", "/customers", "metadata[a]=1&metadata[b]=2").canonicalQuery).toBe(decode("GET", "/customers", "metadata[b]=2&metadata[a]=1").canonicalQuery);
  });

  it("refuses the path variable in the body", () => {
    expect(issues(() => decode("PATCH", "/customers/cus_1", "", { id: "cus_2" }))).toMatchObject({ details: [{ field: "id", issue: "unknown field" }] });
  });

  it("refuses body fields on a route without a body", () => {
    expect(issues(() => decode("POST", "/customers/cus_1/recalculate-ltv", "", { force: true }))).toMatchObject({ status: 400, details: [{ field: "force" }] });
    expect(decode("POST", "/customers/cus_1/recalculate-ltv", "", {}).message).toMatchObject({ id: "cus_1", workspaceId: "ws_1" });
  });

  it("ignores the query on body:* routes", () => {
    expect(decode("POST", "/customers", "externalId=q&workspace_id=x", { externalId: "b" }).message).toMatchObject({ externalId: "b", workspaceId: "ws_1" });
  });

  it("only ever throws HttpError 400, whatever the JSON body (property)", () => {
    const routes = [
      ["POST", "/customers"],
      ["PATCH", "/customers/cus_1"],
      ["POST", "/track/sale"],
      ["POST", "/track/lead"],
    ] as const;
    const keys = fc.constantFrom("externalId", "external_id", "email", "amount", "metadata", "timestamp", "workspaceId", "currency", "x", "$where", "name");
    fc.assert(
      fc.property(fc.constantFrom(...routes), fc.dictionary(keys, fc.jsonValue({ maxDepth: 3 })), ([method, path], body) => {
        try {
          const { message } = decode(method, path, "", body as Record<string, unknown>);
          expect((message as unknown as { workspaceId: string }).workspaceId).toBe("ws_1");
        } catch (e) {
          expect(e).toBeInstanceOf(HttpError);
          expect((e as HttpError).status).toBe(400);
        }
      }),
      { numRuns: 500, seed: 42 },
    );
  });

  it("parses int32 query values exactly when they are integers in range (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer().map(String), fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }).map(String), fc.string({ maxLength: 6 })), (raw) => {
        const inRange = /^-?\d+$/.test(raw) && BigInt(raw) >= -(2n ** 31n) && BigInt(raw) < 2n ** 31n;
        let got: number | undefined;
        try {
          got = (decode("GET", "/customers", `page=${encodeURIComponent(raw)}`).message as ListCustomersRequest).page;
        } catch (e) {
          expect(e).toBeInstanceOf(HttpError);
        }
        expect(got !== undefined).toBe(inRange);
        if (inRange) expect(got).toBe(Number(raw));
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe("response encoding", () => {
  const at = timestampFromDate(new Date("2026-04-01T12:00:00.000Z"));

  it("answers response_body with every field present, int64 as numbers, timestamps as ISO strings, Struct as an object", () => {
    const route = matched("POST", "/customers").route;
    const res = create(CreateCustomerResponseSchema, {
      created: true,
      customer: { id: "cus_1", externalId: "u1", email: "a@b.c", createdAt: at, updatedAt: at, stats: { leads: 2n, sales: 1n, revenue: 1999n } },
    });
    const out = encodeResponse(route, res);
    expect(out.status).toBe(201);
    expect(JSON.parse(out.body)).toEqual({
      success: true,
      data: {
        id: "cus_1",
        externalId: "u1",
        email: "a@b.c",
        name: null,
        avatar: null,
        country: null,
        clickId: null,
        metadata: null,
        createdAt: "2026-04-01T12:00:00Z",
        updatedAt: "2026-04-01T12:00:00Z",
        stats: { leads: 2, sales: 1, revenue: 1999, currency: null, firstSeenAt: null, lastSeenAt: null },
      },
    });
    expect(encodeResponse(route, create(CreateCustomerResponseSchema, { created: false })).status).toBe(200);
  });

  it("adds pagination next to data for lists", () => {
    const route = matched("GET", "/customers").route;
    const out = JSON.parse(encodeResponse(route, create(ListCustomersResponseSchema, { customers: [], pagination: { case: "page", value: { page: 1, limit: 20, total: 0n, totalPages: 0, hasMore: false } } })).body);
    expect(out).toEqual({ success: true, data: [], pagination: { page: 1, limit: 20, total: 0, totalPages: 0, hasMore: false, nextCursor: null } });
  });

  it("puts the pagination a oneof holds next to data: by page or by cursor, each with every field", () => {
    const route = matched("GET", "/customers").route;
    const byCursor = JSON.parse(encodeResponse(route, create(ListCustomersResponseSchema, { customers: [], pagination: { case: "cursor", value: { limit: 5, hasMore: true, nextCursor: "abc.def" } } })).body);
    expect(byCursor).toEqual({ success: true, data: [], pagination: { limit: 5, hasMore: true, nextCursor: "abc.def" } });
    const last = JSON.parse(encodeResponse(route, create(ListCustomersResponseSchema, { pagination: { case: "cursor", value: { limit: 5 } } })).body);
    expect(last.pagination).toEqual({ limit: 5, hasMore: false, nextCursor: null });
    expect(JSON.parse(encodeResponse(route, create(ListCustomersResponseSchema, {})).body)).toEqual({ success: true, data: [] });
  });

  it("answers journeys with null for fields that do not apply, and summaries as one object", () => {
    const j = JSON.parse(encodeResponse(matched("GET", "/customers/c/journey").route, create(GetJourneyResponseSchema, { touchpoints: [{ type: "sale", timestamp: at, amount: 5n, currency: "USD" }] })).body);
    expect(j.data).toEqual([{ type: "sale", timestamp: "2026-04-01T12:00:00Z", eventName: null, clickId: null, linkId: null, campaignId: null, source: null, amount: 5, currency: "USD" }]);
    const s = JSON.parse(encodeResponse(matched("GET", "/customers/c/journey", "summary=true").route, create(GetJourneySummaryResponseSchema, { summary: { clicks: 1n } })).body);
    expect(s.data).toMatchObject({ clicks: 1, leads: 0, revenue: 0, timeToFirstSaleSeconds: null, firstSeenAt: null });
  });

  it("answers the whole message when there is no response_body (DELETE → {id, deleted})", () => {
    const out = encodeResponse(matched("DELETE", "/customers/c").route, create(DeleteCustomerResponseSchema, { id: "cus_1", deleted: true }));
    expect(out).toEqual({ status: 200, body: JSON.stringify({ success: true, data: { id: "cus_1", deleted: true } }) });
  });
});
