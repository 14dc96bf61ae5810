/**
 * gRPC server reflection on a service port, through `buf curl` (the buf CLI from
 * devDependencies), which knows nothing of the protos but what reflection tells it.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

const run = promisify(execFile);

async function bufCurl(args: string[]): Promise<string> {
  const { stdout } = await run("node_modules/.bin/buf", ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 30_000 });
  return stdout;
}

describe("gRPC server reflection", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces" });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("lists every method of the port's services (%s)", async (protocol) => {
    const out = await bufCurl(["--reflect-protocol", protocol, "--list-methods", mesh.host.grpcUrl!]);
    const methods = out.trim().split("\n");
    expect(methods).toContain("linquid.workspaces.v1.WorkspacesService/CreateWorkspace");
    expect(methods).toContain("grpc.health.v1.Health/Check");
    expect(methods).toContain("grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
  });

  it("calls a method described only by reflection", async () => {
    const created = JSON.parse(
      await bufCurl(["--data", JSON.stringify({ name: "Reflected", plan: "pro" }), `${mesh.host.grpcUrl!}/linquid.workspaces.v1.WorkspacesService/CreateWorkspace`]),
    ) as { workspace: { id: string; name: string } };
    expect(created.workspace.name).toBe("Reflected");
    const read = JSON.parse(
      await bufCurl(["--data", JSON.stringify({ id: created.workspace.id }), `${mesh.host.grpcUrl!}/linquid.workspaces.v1.WorkspacesService/GetWorkspace`]),
    ) as { workspace: { id: string } };
    expect(read.workspace.id).toBe(created.workspace.id);
  });

  it("answers an unknown symbol with NOT_FOUND, not a broken stream", async () => {
    await expect(bufCurl(["--data", "{}", `${mesh.host.grpcUrl!}/linquid.nothing.v1.Nope/Call`])).rejects.toThrow(/failed to find service named "linquid.nothing.v1.Nope"/);
  });
});
