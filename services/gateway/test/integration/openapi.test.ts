/**
 * The reference the gateway serves about itself: /openapi.json and /docs without a key (the
 * page opened in headless Chromium, offline), and the contract check every mesh.request() runs
 * (services/mesh/src/testing/contract.ts) — shown here to refuse answers that differ from the
 * document.
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contractOf, startTestMesh, type ContractChecker, type TestMesh } from "@linquid/mesh/testing";

let mesh: TestMesh;
let contract: ContractChecker;

beforeAll(async () => {
  mesh = await startTestMesh();
  contract = await contractOf(mesh.api);
});
afterAll(async () => {
  await mesh?.stop();
});

const headers = (h: Record<string, string>) => new Headers({ "x-request-id": "r1", ...h });
const json = (status: number, body: unknown, h: Record<string, string> = {}) => ({
  status,
  headers: headers({ "content-type": "application/json; charset=utf-8", "x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-reset": "1800000000", ...h }),
  text: JSON.stringify(body),
});

describe("the API reference", () => {
  it("serves a valid OpenAPI 3.1 document without a key, relative to the base path", async () => {
    const r = await mesh.request("GET", "/openapi.json");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.headers.get("x-request-id")).toBeTruthy();
    const result = await new Validator().validate(r.body);
    expect(result.valid).toBe(true);
    expect(r.body.openapi).toBe("3.1.1");
    expect(r.body.servers).toEqual([{ url: "/api", description: expect.any(String) }]);
    expect(Object.keys(r.body.paths)).toEqual(expect.arrayContaining(["/customers", "/customers/{id}", "/track/sale", "/openapi.json", "/docs"]));
  });

  it("serves the reference page and its script without a key, allowing nothing from elsewhere", async () => {
    const page = await mesh.request("GET", "/docs");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.text).toContain('src="docs/redoc.standalone.js"');
    expect(page.text).not.toMatch(/https?:\/\//);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'self'");
    const script = await mesh.request("GET", "/docs/redoc.standalone.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(script.text.length).toBeGreaterThan(100_000);
    const wrong = await mesh.request("POST", "/openapi.json", { body: {} });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("GET");
  });
});

describe("the reference page in a browser", () => {
  it("lists every operation of the document, with nothing loaded from elsewhere", async () => {
    const spec = (await mesh.request("GET", "/openapi.json")).body as { paths: Record<string, Record<string, { operationId: string; summary: string }>> };
    const operations = Object.values(spec.paths).flatMap((ops) => Object.values(ops));
    // Debian's chromium (scripts/setup.sh installs it), driven by playwright-core.
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox"] });
    try {
      const page = await browser.newPage();
      const origin = new URL(mesh.api).origin;
      // Offline: anything not from the gateway is refused, and recorded.
      const elsewhere: string[] = [];
      await page.route("**/*", (route) => {
        const url = route.request().url();
        if (url.startsWith(`${origin}/`)) return route.continue();
        elsewhere.push(url);
        return route.abort();
      });
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(err.message));
      await page.goto(`${mesh.api}/docs`);
      await page.waitForSelector('[data-section-id^="operation/"]', { timeout: 45_000 });
      const sections = await page.$$eval('[data-section-id^="operation/"]', (els) => els.map((e) => [e.getAttribute("data-section-id"), e.querySelector("h2")?.textContent ?? ""]));
      const menu = await page.$$eval("[data-item-id]", (els) => els.map((e) => e.getAttribute("data-item-id") ?? ""));
      expect(sections.map(([id]) => id).sort()).toEqual(operations.map((o) => `operation/${o.operationId}`).sort());
      for (const o of operations) {
        expect(sections.find(([id]) => id === `operation/${o.operationId}`)?.[1], o.operationId).toContain(o.summary);
        expect(menu.some((id) => id.endsWith(`/operation/${o.operationId}`)), o.operationId).toBe(true);
      }
      // Redoc's attribution links a logo on its CDN; the page's CSP blocks it and nothing else is asked for.
      expect(elsewhere.filter((u) => !u.startsWith("https://cdn.redoc.ly/"))).toEqual([]);
      expect(pageErrors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe("the contract check of mesh.request()", () => {
  const customer = {
    id: "cus_1",
    externalId: "e1",
    email: null,
    name: null,
    avatar: null,
    country: null,
    clickId: null,
    metadata: null,
    createdAt: "2026-04-01T12:00:00Z",
    updatedAt: "2026-04-01T12:00:00Z",
    stats: null,
  };

  it("accepts an answer that matches the document", () => {
    expect(contract.problems("GET", "/customers/cus_1", json(200, { success: true, data: customer }))).toEqual([]);
    expect(contract.problems("GET", "/customers/cus_1", json(404, { success: false, error: { code: "NOT_FOUND", message: "customer not found" } }))).toEqual([]);
    expect(contract.problems("GET", "/nope", json(404, { success: false, error: { code: "NOT_FOUND", message: "no such route" } }))).toEqual([]);
  });

  it("refuses an undocumented status, a body of another shape, a string where an integer is due, a code the operation does not list, a missing header", () => {
    expect(contract.problems("GET", "/customers/cus_1", json(418, {}))[0]).toMatch(/status 418 is not documented/);
    expect(contract.problems("GET", "/customers/cus_1", json(200, { success: true, data: { ...customer, extra: 1 } }))[0]).toMatch(/additional properties \(extra\)/);
    const stats = { leads: "1", sales: 0, revenue: 0, currency: null, firstSeenAt: null, lastSeenAt: null };
    expect(contract.problems("GET", "/customers/cus_1", json(200, { success: true, data: { ...customer, stats } }))[0]).toMatch(/stats\/leads must be integer/);
    expect(contract.problems("GET", "/customers", json(404, { success: false, error: { code: "NOT_FOUND", message: "x" } }))[0]).toMatch(/status 404 is not documented/);
    expect(contract.problems("PATCH", "/customers/cus_1", json(409, { success: false, error: { code: "RATE_LIMITED", message: "x" } }))[0]).toMatch(/must be equal to one of the allowed values/);
    const noBudget = json(200, { success: true, data: customer });
    noBudget.headers.delete("x-ratelimit-remaining");
    expect(contract.problems("GET", "/customers/cus_1", noBudget)).toEqual(["header X-RateLimit-Remaining missing"]);
    expect(contract.problems("DELETE", "/customers/count", json(404, {}))[0]).toMatch(/not 405/);
  });

  it("checks each NDJSON line of the export against the record schema", () => {
    const ndjson = (lines: unknown[]) => ({ status: 200, headers: headers({ "content-type": "application/x-ndjson", "x-ratelimit-limit": "unlimited", "x-ratelimit-remaining": "unlimited", "x-ratelimit-reset": "1800000000" }), text: lines.map((l) => `${JSON.stringify(l)}\n`).join("") });
    expect(contract.problems("GET", "/customers/export", ndjson([customer, customer]))).toEqual([]);
    expect(contract.problems("GET", "/customers/export", ndjson([customer, { id: 1 }]))[0]).toMatch(/^line 2: /);
  });
});
