/**
 * The TypeScript REST client: its committed types are what openapi-typescript makes of the
 * document a live gateway serves, and the example of docs/clients.md runs against a live mesh.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { restClientExample } from "../../../../docs/examples/rest-client.js";
import { clientTypesOf, SCHEMA_FILE } from "../../src/generate.js";

let mesh: TestMesh;
beforeAll(async () => {
  mesh = await startTestMesh();
});
afterAll(async () => {
  await mesh?.stop();
});

const repo = (path: string) => readFileSync(new URL(`../../../../${path}`, import.meta.url), "utf8");

describe("the REST client", () => {
  it("has the types of the document the gateway serves (run `npm run generate:client` when this fails)", async () => {
    const live = await mesh.request("GET", "/openapi.json");
    expect(live.status).toBe(200);
    expect(await clientTypesOf(live.body)).toBe(readFileSync(SCHEMA_FILE, "utf8"));
  });

  it("runs the example of docs/clients.md, whose retried sale counts once", async () => {
    expect(repo("docs/clients.md")).toContain(repo("docs/examples/rest-client.ts"));
    const ws = await mesh.workspace({ plan: "pro", currency: "USD" });
    const first = await restClientExample(mesh.api, ws.key);
    expect(first.customer).toMatchObject({ externalId: "user-42", email: "ada@example.com", name: "Ada" });
    expect(first.customer.id).toMatch(/^cus_/);
    expect(first.listed).toBe(1);
    // Run again: the customer is updated, not duplicated, and the sale's retry changes nothing.
    const again = await restClientExample(mesh.api, ws.key);
    expect(again.customer.id).toBe(first.customer.id);
    expect(again.listed).toBe(1);
    const journey = await mesh.request("GET", `/customers/${first.customer.id}/journey?summary=true`, { key: ws.key });
    expect(journey.status).toBe(200);
    expect(journey.body.data).toMatchObject({ sales: 1, revenue: 4900, currency: "USD" });
  });
});
