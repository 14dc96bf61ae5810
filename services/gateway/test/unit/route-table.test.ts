import { describe, expect, it } from "vitest";
import { buildRoutes, createRouteTable, type MatchedRoute } from "../../src/route-table.js";
import { HttpError } from "../../src/http-error.js";
import { REST_SERVICES } from "../../src/index.js";

const table = createRouteTable(buildRoutes(REST_SERVICES));
const q = (s = "") => new URLSearchParams(s);

describe("route table from the contracts", () => {
  it.each([
    ["GET", "/customers", "", "ListCustomers", {}],
    ["POST", "/customers", "", "CreateCustomer", {}],
    ["GET", "/customers/count", "", "CountCustomers", {}],
    ["GET", "/customers/cohorts", "", "GetCohorts", {}],
    ["GET", "/customers/ltv-cohorts", "", "GetLtvCohorts", {}],
    ["GET", "/customers/cus_1", "", "GetCustomer", { id: "cus_1" }],
    ["PATCH", "/customers/cus_1", "", "UpdateCustomer", { id: "cus_1" }],
    ["DELETE", "/customers/ext_a%20b", "", "DeleteCustomer", { id: "ext_a b" }],
    ["POST", "/customers/cus_1/recalculate-ltv", "", "RecalculateLtv", { id: "cus_1" }],
    ["GET", "/customers/cus_1/journey", "", "GetJourney", { id: "cus_1" }],
    ["GET", "/customers/cus_1/journey", "summary=true", "GetJourneySummary", { id: "cus_1" }],
    ["GET", "/customers/cus_1/journey", "summary=false", "GetJourney", { id: "cus_1" }],
    ["GET", "/customers/cus_1/journey", "summary=TRUE", "GetJourney", { id: "cus_1" }],
    ["GET", "/customers/cus_1/attribution", "", "GetAttribution", { id: "cus_1" }],
    ["POST", "/track/click", "", "TrackClick", {}],
    ["POST", "/track/lead", "", "TrackLead", {}],
    ["POST", "/track/sale", "", "TrackSale", {}],
    ["POST", "/track/event", "", "TrackEvent", {}],
    // Literal segments match after percent-decoding, and beat variables.
    ["GET", "/customers/%63ount", "", "CountCustomers", {}],
    ["GET", "/customers/%2e%2e", "", "GetCustomer", { id: ".." }],
    ["GET", "/customers/a%2Fb/journey", "", "GetJourney", { id: "a/b" }],
    ["GET", "/customers/%E2%9C%93", "", "GetCustomer", { id: "✓" }],
  ])("%s %s?%s → %s", (method, path, query, rpc, vars) => {
    const r = table.match(method, path, q(query));
    expect(r.kind).toBe("found");
    if (r.kind !== "found") return;
    expect(r.match.route.method.name).toBe(rpc);
    expect(Object.fromEntries(r.match.pathVars)).toEqual(vars);
  });

  it.each([
    ["POST", "/customers/cus_1", ["GET", "PATCH", "DELETE"]],
    ["PUT", "/customers", ["GET", "POST"]],
    ["DELETE", "/customers/count", ["GET"]],
    ["POST", "/customers/cohorts", ["GET"]],
    ["GET", "/track/click", ["POST"]],
    ["GET", "/customers/cus_1/recalculate-ltv", ["POST"]],
    ["HEAD", "/customers", ["GET", "POST"]],
  ])("%s %s → 405, Allow %j", (method, path, allow) => {
    const r = table.match(method, path, q());
    expect(r).toEqual({ kind: "method-not-allowed", allow: expect.arrayContaining(allow) });
    if (r.kind === "method-not-allowed") expect(r.allow).toHaveLength(allow.length);
  });

  it.each(["", "/", "/nope", "/customers/", "//customers", "/customers//journey", "/customers/a/b/c", "/track", "/track/nope", "/Customers", "/customers/cus_1/journey/"])(
    "%j → 404",
    (path) => {
      expect(table.match("GET", path, q()).kind).toBe("not-found");
    },
  );

  it.each([
    ["/customers/%zz", "malformed percent-encoding"],
    ["/customers/%00", "must not contain control characters"],
    ["/customers/a%0Ab/journey", "must not contain control characters"],
  ])("%s → 400 naming the variable", (path, issue) => {
    let err: unknown;
    try {
      table.match("GET", path, q());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({ status: 400, code: "VALIDATION_ERROR", details: [{ field: "id", issue }] });
  });

  it("carries the scope table of rest-api.md", () => {
    const scopes = Object.fromEntries(table.routes.map((r) => [`${r.httpMethod} ${r.template}${r.policy.whenQuery ? "?" + r.policy.whenQuery.name : ""}`, r.policy.scope]));
    expect(scopes).toEqual({
      "GET /customers": "links:read",
      "GET /customers/count": "links:read",
      "GET /customers/export": "links:read",
      "GET /customers/{id}": "links:read",
      "GET /customers/cohorts": "links:read",
      "GET /customers/{id}/journey": "links:read",
      "GET /customers/{id}/journey?summary": "links:read",
      "GET /customers/{id}/attribution": "links:read",
      "GET /customers/ltv-cohorts": "analytics:read",
      "GET /analytics/attribution": "analytics:read",
      "POST /customers": "links:create",
      "POST /customers/{id}/recalculate-ltv": "links:create",
      "PATCH /customers/{id}": "links:update",
      "DELETE /customers/{id}": "links:delete",
      "POST /track/click": "events:write",
      "POST /track/lead": "events:write",
      "POST /track/sale": "events:write",
      "POST /track/event": "events:write",
      "POST /track/batch": "events:write",
    });
    expect(table.routes.every((r) => r.policy.entitlement === "revenue-tracking")).toBe(true);
    const cached = table.routes.filter((r) => r.policy.cacheTtlSeconds > 0).map((r) => r.method.name).sort();
    expect(cached).toEqual(["GetAttribution", "GetCohorts", "GetJourney", "GetJourneySummary", "GetLtvCohorts", "GetWorkspaceAttribution"]);
  });

  it("makes server-streaming mappings streaming routes, literal paths first", () => {
    const r = table.match("GET", "/customers/export", q());
    expect(r.kind === "found" && r.match.route.method.name).toBe("ExportCustomers");
    const route = (r as { match: MatchedRoute }).match.route;
    expect(route.stream?.records.name).toBe("customers");
    expect(route.stream?.record.typeName).toBe("linquid.customers.v1.Customer");
    expect(route.stream?.formatField?.name).toBe("format");
    expect(table.routes.filter((x) => x.stream !== undefined).map((x) => x.method.name)).toEqual(["ExportCustomers"]);
    expect(table.match("POST", "/customers/export", q())).toEqual({ kind: "method-not-allowed", allow: ["GET"] });
  });

  it("refuses a contract mapping one method and path twice", () => {
    const routes = buildRoutes(REST_SERVICES);
    expect(() => createRouteTable([...routes, routes[0]!])).toThrow(/mapped twice/);
  });
});
