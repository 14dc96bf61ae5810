/**
 * A few thousand malformed requests against the gateway (real mesh, stand-in upstream): never a
 * 5xx, always the JSON envelope with X-Request-Id, never a stack trace.
 */
import { WorkspacesService } from "@linquid/contracts";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.js";
import { fuzzRequests, runFuzz } from "../support/fuzz-requests.js";

let upstream: FakeUpstream;
let mesh: TestMesh;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,gateway", CUSTOMERS_ADDR: upstream.url, ANALYTICS_ADDR: upstream.url });
});
afterAll(async () => {
  await mesh?.stop();
  await upstream?.stop();
});

describe("gateway fuzz", () => {
  it("answers 3000 malformed requests without a 5xx, a stack trace, or a missing envelope", async () => {
    const good = await mesh.workspace({ plan: "pro", rateLimit: "unlimited" });
    const revoked = await mesh.workspace();
    await mesh.host.client(WorkspacesService).revokeApiKey({ id: revoked.keyId });
    const starter = await mesh.workspace({ plan: "starter" });
    const limited = await mesh.workspace({ rateLimit: 3 });
    const requests = fuzzRequests({ good: good.key, revoked: revoked.key, starter: starter.key, limited: limited.key }, 3000, 20260401);
    const { statuses, failures } = await runFuzz(mesh.host.gatewayUrl!, requests);
    expect(failures.slice(0, 5)).toEqual([]);
    // The generator reaches the interesting answers, not just one kind.
    for (const s of [200, 400, 401, 403, 404, 405, 413, 415, 429]) expect(statuses.get(s) ?? 0, `status ${s} in ${JSON.stringify([...statuses])}`).toBeGreaterThan(0);
  });
});
