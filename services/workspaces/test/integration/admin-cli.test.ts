/**
 * The operator CLI against a running mesh, as an operator uses it.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AnalyticsService, WorkspacesService } from "@linquid/contracts";
import { freePort } from "@linquid/mesh";
import { pluginDatabase, startTestMesh, type TestMesh } from "@linquid/mesh/testing";

function admin(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "services/workspaces/src/cli/admin.ts", ...args], {
      env: { PATH: process.env["PATH"] ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("admin CLI", () => {
  let mesh: TestMesh;
  let env: Record<string, string>;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces" });
    env = { WORKSPACES_ADDR: mesh.host.grpcUrl! };
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("creates a workspace and a key, and revokes the key", async () => {
    const ws = await admin(["workspace", "create", "--name", "Acme", "--plan", "pro", "--currency", "EUR", "--rate-limit", "500"], env);
    expect(ws.code).toBe(0);
    const workspace = JSON.parse(ws.stdout) as Record<string, unknown>;
    expect(workspace).toEqual({ id: expect.stringMatching(/^ws_/), name: "Acme", plan: "pro", currency: "EUR", rateLimit: 500 });

    const key = await admin(["key", "create", "--workspace", workspace["id"] as string, "--scopes", "links:read,events:write", "--name", "ci"], env);
    expect(key.code).toBe(0);
    const made = JSON.parse(key.stdout) as { id: string; key: string; scopes: string[] };
    expect(made.key).toMatch(/^lw_live_/);
    expect(made.scopes).toEqual(["links:read", "events:write"]);

    const revoked = await admin(["key", "revoke", "--id", made.id], env);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toEqual({ id: made.id, revoked: true });

    const stored = await mesh.host.client(WorkspacesService).getWorkspace({ id: workspace["id"] as string });
    expect(stored.workspace?.name).toBe("Acme");
  });

  it("names the address of the service it could not reach", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const res = await admin(["analytics", "rebuild", "--workspace", "ws_x"], { ...env, ANALYTICS_ADDR: dead });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(`admin: cannot reach the mesh (${dead}): is \`npm start\` running?\n`);
  });

  it("defaults to the local mesh on GRPC_PORT", async () => {
    const port = new URL(mesh.host.grpcUrl!).port;
    const ws = await admin(["workspace", "create", "--name", "Local", "--plan", "starter"], { GRPC_PORT: port });
    expect(ws.code).toBe(0);
    expect(JSON.parse(ws.stdout)).toMatchObject({ name: "Local", plan: "starter" });
  });

  it("prints unlimited budgets as such", async () => {
    const ws = await admin(["workspace", "create", "--name", "Big", "--plan", "enterprise", "--rate-limit", "unlimited"], env);
    expect(JSON.parse(ws.stdout)).toMatchObject({ plan: "enterprise", rateLimit: "unlimited" });
  });

  it.each([
    [["workspace", "create", "--plan", "pro"], /--name is required/],
    [["workspace", "create", "--name", "x", "--plan", "gold"], /--plan must be/],
    [["workspace", "create", "--name", "x", "--plan", "pro", "--rate-limit", "-3"], /--rate-limit/],
    [["key", "create", "--workspace", "ws_missing", "--scopes", "links:read"], /workspace not found/],
    [["key", "create", "--workspace", "ws_x", "--scopes", "root"], /unknown scope/],
    [["frobnicate"], /unknown command/],
    [["key", "revoke", "--id", "key_x", "--force"], /Unknown option/],
  ])("rejects %j with one line on stderr and a non-zero exit", async (args, message) => {
    const out = await admin(args, env);
    expect(out.code).not.toBe(0);
    expect(out.stdout).toBe("");
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
    expect(out.stderr).toMatch(message);
  });
});

describe("admin analytics rebuild", () => {
  let mesh: TestMesh;
  let env: Record<string, string>;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics" });
    env = { WORKSPACES_ADDR: mesh.host.grpcUrl!, ANALYTICS_ADDR: mesh.host.grpcUrl! };
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("refuses an unknown workspace instead of reporting zeros", async () => {
    const res = await admin(["analytics", "rebuild", "--workspace", "ws_nobody"], env);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe("");
    expect(res.stderr).toBe("admin: workspace not found\n");
  });

  it("rebuilds a workspace, drawing its progress on a terminal while it runs", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    await mesh.host.client(AnalyticsService).trackBatch({
      workspaceId: ws,
      events: Array.from({ length: 30 }, (_, i) => ({ event: { case: "lead" as const, value: { workspaceId: ws, externalId: `u${i % 10}`, eventId: `l${i}` } } })) as never,
    });
    // A write in flight holds the rebuild in its first phase until it is gone.
    const { db, close } = await pluginDatabase(mesh, "analytics");
    const op = { _id: `op_held_${ws}`, workspaceId: ws, kind: "register", eventIds: [], startedAt: new Date(), due: new Date(Date.now() + 60_000) };
    await db.collection("write_ops").insertOne(op as never);
    // `script` gives the CLI a terminal, as an operator's shell would.
    const command = ["node", "--import", "tsx", "services/workspaces/src/cli/admin.ts", "analytics", "rebuild", "--workspace", ws].join(" ");
    const child = spawn("script", ["-qfec", command, "/dev/null"], { env: { PATH: process.env["PATH"] ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    child.stdout.on("data", (d: Buffer) => (seen += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    while (!seen.includes("waiting for writes in flight") && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    expect(seen).toContain(`rebuilding ${ws}: waiting for writes in flight, 0 of 0 events`);
    await db.collection("write_ops").deleteOne({ _id: op._id as never });
    await close();
    expect(await exited).toBe(0);
    // The terminal shows the progress line cleared, then the JSON answer.
    const answer = seen.slice(seen.lastIndexOf("\x1b[K") + 3).trim();
    expect(JSON.parse(answer)).toEqual({ workspaceId: ws, customers: 10, events: 30 });
    expect((await mesh.host.client(AnalyticsService).getRebuildProgress({ workspaceId: ws })).running).toBe(false);
  });
});
