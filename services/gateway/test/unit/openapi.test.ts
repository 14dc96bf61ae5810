import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { REST_SERVICES } from "../../src/index.js";
import { createOpenApiDocument } from "../../src/openapi/document.js";
import { buildRoutes } from "../../src/route-table.js";

const routes = buildRoutes(REST_SERVICES);
const doc = createOpenApiDocument(routes, { basePath: "/api" });
type Op = Record<string, any>;
const op = (method: string, path: string): Op => doc.paths[path]?.[method] as Op;
const schemas = (doc["components"] as { schemas: Record<string, any> }).schemas;
const codesOf = (o: Op, status: string): string[] => o["responses"][status]?.content["application/json"].schema.properties.error.properties.code.enum ?? [];

describe("OpenAPI document", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("has one operation per REST mapping (the journey and its summary share one), each with its scope and RPC", () => {
    for (const r of routes) {
      const o = op(r.httpMethod.toLowerCase(), r.template);
      expect(o, `${r.httpMethod} ${r.template}`).toBeDefined();
      expect(o["x-linquid-scope"]).toBe(r.policy.scope);
      expect(o["x-linquid-rpc"]).toContain(`${r.service.typeName}/${r.method.name}`);
      expect(o["security"]).toEqual([{ apiKey: [r.policy.scope] }, { bearer: [r.policy.scope] }]);
      expect(o["description"]).toContain(`Scope: \`${r.policy.scope}\``);
    }
    expect(op("get", "/customers/{id}/journey")["x-linquid-rpc"]).toHaveLength(2);
    const ids = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => o["operationId"]));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("describes the reference itself without a key", () => {
    for (const path of ["/openapi.json", "/docs", "/docs/redoc.standalone.js"]) expect(op("get", path)["security"]).toEqual([]);
  });

  it("lists each operation's error codes from the policies and the error table", () => {
    const list = op("get", "/customers");
    expect(codesOf(list, "401").sort()).toEqual(["INVALID_API_KEY", "UNAUTHORIZED"]);
    expect(codesOf(list, "403").sort()).toEqual(["FEATURE_NOT_AVAILABLE", "FORBIDDEN"]);
    expect(codesOf(list, "503")).toEqual(["SERVICE_UNAVAILABLE"]);
    expect(list["responses"]["404"]).toBeUndefined();
    expect(list["responses"]["409"]).toBeUndefined();
    expect(codesOf(op("get", "/customers/{id}"), "404")).toEqual(["NOT_FOUND"]);
    const patch = op("patch", "/customers/{id}");
    expect(codesOf(patch, "409").sort()).toEqual(["DUPLICATE_EXTERNAL_ID", "IDEMPOTENCY_IN_PROGRESS"]);
    expect(codesOf(patch, "422")).toEqual(["IDEMPOTENCY_KEY_REUSED"]);
    expect(codesOf(op("post", "/track/sale"), "409")).toEqual(["IDEMPOTENCY_IN_PROGRESS"]);
    // Internal errors of the analytics service have their own code.
    expect(codesOf(op("get", "/customers/cohorts"), "500").sort()).toEqual(["ANALYTICS_ERROR", "INTERNAL_ERROR"]);
    expect(codesOf(op("get", "/customers"), "500")).toEqual(["INTERNAL_ERROR"]);
    expect(Object.keys(op("get", "/customers")["responses"]["429"].headers)).toContain("Retry-After");
  });

  it("documents the headers: budget on successes, cache on cached routes, Idempotency-Key on POST and PATCH", () => {
    const ok = op("get", "/customers/cohorts")["responses"]["200"].headers;
    expect(ok["X-RateLimit-Limit"].required).toBe(true);
    expect(ok["X-Request-Id"].required).toBe(true);
    expect(ok["X-Cache"].schema.enum).toEqual(["HIT", "MISS"]);
    expect(op("get", "/customers")["responses"]["200"].headers["X-Cache"]).toBeUndefined();
    const refs = (o: Op) => o["parameters"].map((p: Op) => p["$ref"]).filter(Boolean);
    expect(refs(op("post", "/customers"))).toContain("#/components/parameters/IdempotencyKey");
    expect(refs(op("patch", "/customers/{id}"))).toContain("#/components/parameters/IdempotencyKey");
    expect(refs(op("get", "/customers"))).not.toContain("#/components/parameters/IdempotencyKey");
    expect(op("post", "/customers")["responses"]["201"].headers["Idempotent-Replayed"]).toBeDefined();
  });

  it("writes integers as integers, unset optional fields as null, and every field as required", () => {
    expect(schemas["CustomerStats"].properties.revenue).toMatchObject({ type: "integer", format: "int64" });
    expect(schemas["Cohort"].properties.conversionRate.type).toBe("number");
    expect(schemas["Customer"].properties.email.type).toEqual(["string", "null"]);
    expect(schemas["Customer"].properties.id.type).toBe("string");
    expect(schemas["Customer"].required).toContain("stats");
    expect(schemas["LtvCohort"].properties.revenue).toMatchObject({ type: "array", items: { type: "integer", format: "int64" } });
    expect(schemas["ListCustomersResponse.PagePagination"].properties.total.type).toBe("integer");
  });

  it("describes both pagination modes of the customer list and the list envelope", () => {
    const schema = op("get", "/customers")["responses"]["200"].content["application/json"].schema;
    expect(schema.properties.pagination.oneOf.map((s: Op) => s["$ref"])).toEqual([
      "#/components/schemas/ListCustomersResponse.PagePagination",
      "#/components/schemas/ListCustomersResponse.CursorPagination",
    ]);
    expect(Object.keys(schemas["ListCustomersResponse.CursorPagination"].properties)).toEqual(["limit", "hasMore", "nextCursor"]);
    const names = op("get", "/customers")["parameters"].map((p: Op) => p["name"]);
    expect(names).toEqual(expect.arrayContaining(["page", "limit", "cursor", "sortOrder", "search", "createdAfter", "metadata"]));
    expect(names).not.toContain("workspaceId");
  });

  it("describes a body without server fields, and 201 where the route creates", () => {
    const create = op("post", "/customers");
    const body = create["requestBody"].content["application/json"].schema;
    expect(Object.keys(body.properties)).not.toContain("workspaceId");
    expect(body.additionalProperties).toBe(false);
    expect(Object.keys(create["responses"])).toEqual(expect.arrayContaining(["200", "201"]));
    const patch = op("patch", "/customers/{id}")["requestBody"].content["application/json"].schema;
    expect(Object.keys(patch.properties)).not.toContain("id");
    expect(Object.keys(patch.properties)).not.toContain("updateMask");
    expect(patch.properties.email.type).toEqual(["string", "null"]);
  });

  it("carries the contracts' comments as descriptions", () => {
    expect(schemas["Customer"].description).toMatch(/^Customer is /);
    expect(schemas["CustomerStats"].properties.revenue.description).toMatch(/minor units/i);
    const limit = op("get", "/customers")["parameters"].find((p: Op) => p["name"] === "limit");
    expect(limit.description).toMatch(/default 20/);
    expect(op("get", "/customers")["description"]).toMatch(/^Lists live customers/);
    expect((doc["tags"] as Array<{ name: string; description?: string }>).find((t) => t.name === "Customers")?.description).toMatch(/^CustomersService owns/);
  });

  it("describes the export as NDJSON records or CSV", () => {
    const o = op("get", "/customers/export");
    const content = o["responses"]["200"].content;
    expect(content["application/x-ndjson"].schema).toEqual({ $ref: "#/components/schemas/Customer" });
    expect(content["text/csv"].example).toMatch(/^id,externalId,.*stats\.leads/);
    expect(o["parameters"].find((p: Op) => p["name"] === "format").schema.enum).toEqual(["ndjson", "csv"]);
  });
});
