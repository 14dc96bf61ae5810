/**
 * The mesh the end-to-end gateway tests run against: every plugin (workspaces, customers,
 * analytics, gateway) on the run's FerretDB and Redis.
 *
 * Until the analytics package exports its plugin, the analytics routes are served by the
 * gateway tests' stand-in over gRPC instead (said once on stderr); everything else is real.
 */
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { startFakeUpstream } from "../../services/gateway/test/support/fake-upstream.js";

export interface E2eMesh {
  readonly mesh: TestMesh;
  /** True when the real analytics service answers the analytics routes. */
  readonly realAnalytics: boolean;
  stop(): Promise<void>;
}

async function analyticsPluginExists(): Promise<boolean> {
  try {
    // A computed specifier: the package may not have an entry point yet.
    const specifier = "@linquid/analytics";
    const mod = (await import(specifier)) as { default?: { name?: string } };
    return mod.default?.name === "analytics";
  } catch {
    return false;
  }
}

export async function startE2eMesh(env: Record<string, string> = {}): Promise<E2eMesh> {
  if (await analyticsPluginExists()) {
    const mesh = await startTestMesh(env);
    return { mesh, realAnalytics: true, stop: () => mesh.stop() };
  }
  process.stderr.write("gateway e2e: @linquid/analytics has no plugin yet; analytics routes use the stand-in\n");
  const upstream = await startFakeUpstream();
  const mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,gateway", ANALYTICS_ADDR: upstream.url, ...env });
  return {
    mesh,
    realAnalytics: false,
    async stop() {
      await mesh.stop();
      await upstream.stop();
    },
  };
}
