/**
 * End to end: a few thousand malformed requests against the real services. Never a 5xx, never a
 * stack trace or file path in a body, always the JSON envelope with X-Request-Id.
 */
import { WorkspacesService } from "@linquid/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fuzzRequests, runFuzz } from "../../services/gateway/test/support/fuzz-requests.js";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

let mesh: TestMesh;
beforeAll(async () => {
  mesh = await startTestMesh();
});
afterAll(async () => {
  await mesh?.stop();
});

describe("REST fuzz end to end", () => {
  it("survives 3000 malformed requests", async () => {
    const good = await mesh.workspace({ plan: "pro", rateLimit: "unlimited" });
    for (const externalId of ["m1", "m2"]) await mesh.request("POST", "/customers", { key: good.key, body: { externalId, email: `${externalId}@example.com` } });
    const revoked = await mesh.workspace();
    await mesh.host.client(WorkspacesService).revokeApiKey({ id: revoked.keyId });
    const starter = await mesh.workspace({ plan: "starter" });
    const limited = await mesh.workspace({ rateLimit: 3 });
    const requests = fuzzRequests({ good: good.key, revoked: revoked.key, starter: starter.key, limited: limited.key }, 3000, 4242);
    const { statuses, failures } = await runFuzz(mesh.host.gatewayUrl!, requests, 6);
    expect(failures.slice(0, 5)).toEqual([]);
    for (const s of [200, 400, 401, 403, 404, 405, 413, 415, 429]) expect(statuses.get(s) ?? 0, `status ${s} in ${JSON.stringify([...statuses])}`).toBeGreaterThan(0);
    // The API still works afterwards.
    expect((await mesh.request("POST", "/customers", { key: good.key, body: { externalId: "after-fuzz" } })).status).toBe(201);
    expect((await mesh.request("GET", "/customers/ext_after-fuzz", { key: good.key })).status).toBe(200);
  });
});
