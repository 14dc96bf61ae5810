/**
 * Internal gRPC with mutual TLS (docs/internal-auth.md), in split mode with real processes:
 * workspaces in one, customers and analytics in another, the gateway in this one — each with a
 * certificate from scripts/issue-certs.sh (real openssl). Callers without a credential are
 * refused with UNAUTHENTICATED, a service identity calling an operator RPC with
 * PERMISSION_DENIED; operators, the services among themselves, REST and the admin CLI work.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect as tlsConnect } from "node:tls";
import { promisify } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AnalyticsService, CustomersService, Health, HealthCheckResponse_ServingStatus as Status, WorkspacesService } from "@linquid/contracts";
import { createLogger, newId, watchCredentials } from "@linquid/mesh";
import { startMeshProcess, startTestMesh, type MeshProcess, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const ISSUE = join(ROOT, "scripts/issue-certs.sh");

/** Issues `identities` under `dir` (a CA of its own, made on first use) with the repository's script. */
function issue(dir: string, ...identities: string[]): void {
  execFileSync("bash", [ISSUE, "--out", dir, ...identities], { stdio: "ignore" });
}

/** TLS_* of an identity's files under `dir` (`service:gateway` → dir/service-gateway/). */
function tlsEnv(dir: string, identity: string): Record<string, string> {
  const d = join(dir, identity.replace(":", "-"));
  return { TLS_CERT: join(d, "tls.crt"), TLS_KEY: join(d, "tls.key"), TLS_CA: join(d, "ca.crt") };
}

type Caller = { identity: string; dir: string } | "tls without certificate" | "plaintext";

/** A client of `service` at `url` (https://…) calling as `caller`. */
function clientAs<S extends DescService>(service: S, url: string, caller: Caller, caDir: string): Client<S> {
  if (caller === "plaintext") return createClient(service, createGrpcTransport({ baseUrl: url.replace(/^https:/, "http:") }));
  const ca = readFileSync(join(caDir, "ca.crt"));
  if (caller === "tls without certificate") return createClient(service, createGrpcTransport({ baseUrl: url, nodeOptions: { ca } }));
  const env = tlsEnv(caller.dir, caller.identity);
  return createClient(service, createGrpcTransport({ baseUrl: url, nodeOptions: { ca, cert: readFileSync(env.TLS_CERT!), key: readFileSync(env.TLS_KEY!) } }));
}

async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("internal gRPC with mutual TLS, split mode", () => {
  const certs = mkdtempSync(join(tmpdir(), "linquid-certs-"));
  const rogue = mkdtempSync(join(tmpdir(), "linquid-rogue-"));
  let workspaces: MeshProcess;
  let services: MeshProcess;
  let gateway: TestMesh;
  const operator = { identity: "operator:admin", dir: certs };
  const asGateway = { identity: "service:gateway", dir: certs };

  beforeAll(async () => {
    issue(certs);
    issue(rogue, "operator:admin");
    const prefix = `t${newId("", 8).slice(1).toLowerCase()}`;
    workspaces = await startMeshProcess({ MESH_PLUGINS: "workspaces", MONGODB_DB_PREFIX: prefix, ...tlsEnv(certs, "service:workspaces") });
    services = await startMeshProcess({
      MESH_PLUGINS: "customers,analytics",
      MONGODB_DB_PREFIX: prefix,
      WORKSPACES_ADDR: workspaces.grpcUrl,
      ...tlsEnv(certs, "service:analytics"),
    });
    gateway = await startTestMesh({
      MESH_PLUGINS: "gateway",
      WORKSPACES_ADDR: workspaces.grpcUrl,
      CUSTOMERS_ADDR: services.grpcUrl,
      ANALYTICS_ADDR: services.grpcUrl,
      ...tlsEnv(certs, "service:gateway"),
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await Promise.all([workspaces?.stop(), services?.stop()]);
    rmSync(certs, { recursive: true, force: true });
    rmSync(rogue, { recursive: true, force: true });
  });

  it("serves https and refuses a caller without a credential with UNAUTHENTICATED: plaintext, TLS without a certificate, a certificate of another CA", async () => {
    expect(workspaces.grpcUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    for (const caller of ["plaintext", "tls without certificate", { identity: "operator:admin", dir: rogue }] as const) {
      const ws = clientAs(WorkspacesService, workspaces.grpcUrl, caller, certs);
      expect(await codeOf(ws.getWorkspace({ id: "ws_none" })), JSON.stringify(caller)).toBe(Code.Unauthenticated);
      expect(await codeOf(ws.createWorkspace({ name: "intruder", plan: "pro" })), JSON.stringify(caller)).toBe(Code.Unauthenticated);
      const customers = clientAs(CustomersService, services.grpcUrl, caller, certs);
      expect(await codeOf(customers.countCustomers({ workspaceId: "ws_none" })), JSON.stringify(caller)).toBe(Code.Unauthenticated);
    }
  });

  it("keeps health checks and reflection open, plaintext included (the kubelet's grpc probes)", async () => {
    const health = clientAs(Health, workspaces.grpcUrl, "plaintext", certs);
    expect((await health.check({ service: "linquid.workspaces.v1.WorkspacesService" })).status).toBe(Status.SERVING);
    const { stdout } = await run(join(ROOT, "node_modules/.bin/buf"), ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", workspaces.grpcUrl.replace(/^https:/, "http:")], { timeout: 30_000 });
    expect(stdout.split("\n")).toContain("linquid.workspaces.v1.WorkspacesService/CreateApiKey");
  });

  it("answers PERMISSION_DENIED to a service identity calling an operator RPC or another service's internal RPC; an operator may call them", async () => {
    const wsAsGateway = clientAs(WorkspacesService, workspaces.grpcUrl, asGateway, certs);
    expect(await codeOf(wsAsGateway.createWorkspace({ name: "not yours", plan: "pro" }))).toBe(Code.PermissionDenied);

    const wsAsOperator = clientAs(WorkspacesService, workspaces.grpcUrl, operator, certs);
    const id = (await wsAsOperator.createWorkspace({ name: "operated", plan: "pro", currency: "USD" })).workspace!.id;
    expect(id).toMatch(/^ws_/);
    expect(await codeOf(wsAsGateway.createApiKey({ workspaceId: id, scopes: ["links:read"] }))).toBe(Code.PermissionDenied);
    const key = await wsAsOperator.createApiKey({ workspaceId: id, scopes: ["links:read"] });
    expect(await codeOf(wsAsGateway.revokeApiKey({ id: key.apiKey!.id }))).toBe(Code.PermissionDenied);

    // Internal RPCs declare their callers: StitchCustomers is the analytics service's.
    const customersAsGateway = clientAs(CustomersService, services.grpcUrl, asGateway, certs);
    expect(await codeOf(customersAsGateway.stitchCustomers({ workspaceId: id, items: [] }))).toBe(Code.PermissionDenied);
    expect(await codeOf(clientAs(AnalyticsService, services.grpcUrl, asGateway, certs).rebuildWorkspace({ workspaceId: id }))).toBe(Code.PermissionDenied);
    expect(await codeOf(clientAs(AnalyticsService, services.grpcUrl, operator, certs).rebuildWorkspace({ workspaceId: id }))).toBe("ok");

    // The gateway's own RPCs: a service method open to every service, and one declared for it.
    expect(Number((await customersAsGateway.countCustomers({ workspaceId: id })).count)).toBe(0);
    const hash = createHash("sha256").update(key.key).digest("hex");
    expect((await wsAsGateway.authenticateApiKey({ keyHash: hash })).workspace!.id).toBe(id);
  });

  it("serves REST across the split mesh: gateway → workspaces, customers, analytics, and analytics → workspaces, each over mutual TLS", async () => {
    const ws = clientAs(WorkspacesService, workspaces.grpcUrl, operator, certs);
    const id = (await ws.createWorkspace({ name: "rest", plan: "pro", currency: "USD", unlimited: true })).workspace!.id;
    const key = (await ws.createApiKey({ workspaceId: id, scopes: ["links:read", "links:create", "links:update", "analytics:read", "events:write"] })).key;

    const created = await gateway.request("POST", "/customers", { key, body: { externalId: "tls_1", email: "tls@example.com" } });
    expect(created.status, created.text).toBe(201);
    // TrackSale checks the currency with the workspaces service: analytics' own identity.
    const sale = await gateway.request("POST", "/track/sale", { key, body: { externalId: "tls_1", amount: 4900, currency: "USD", invoiceId: "inv_tls" } });
    expect(sale.status, sale.text).toBe(200);
    const read = await gateway.request("GET", "/customers/ext_tls_1", { key });
    expect(read.status, read.text).toBe(200);
    expect(read.body.data.externalId).toBe("tls_1");
    expect((await gateway.request("GET", "/customers", { key: "lw_live_nope" })).status).toBe(401);
  });

  it("answers 503, not 500, when the gateway cannot verify a peer's certificate (TLS_CA of another CA)", async () => {
    const ws = clientAs(WorkspacesService, workspaces.grpcUrl, operator, certs);
    const id = (await ws.createWorkspace({ name: "distrust", plan: "pro", unlimited: true })).workspace!.id;
    const key = (await ws.createApiKey({ workspaceId: id, scopes: ["links:read"] })).key;
    const distrusting = await startTestMesh({
      MESH_PLUGINS: "gateway",
      WORKSPACES_ADDR: workspaces.grpcUrl,
      CUSTOMERS_ADDR: services.grpcUrl,
      ANALYTICS_ADDR: services.grpcUrl,
      ...tlsEnv(certs, "service:gateway"),
      TLS_CA: join(rogue, "ca.crt"),
    });
    try {
      const res = await distrusting.request("GET", "/customers", { key });
      expect(res.status, res.text).toBe(503);
      expect(res.headers.get("retry-after")).not.toBeNull();
    } finally {
      await distrusting.stop();
    }
  });

  it("lets buf curl call with an operator certificate", async () => {
    const op = tlsEnv(certs, "operator:admin");
    const { stdout } = await run(
      join(ROOT, "node_modules/.bin/buf"),
      ["curl", "--protocol", "grpc", "--cert", op.TLS_CERT!, "--key", op.TLS_KEY!, "--cacert", op.TLS_CA!, "-d", JSON.stringify({ name: "curled", plan: "pro" }), `${workspaces.grpcUrl}/linquid.workspaces.v1.WorkspacesService/CreateWorkspace`],
      { timeout: 30_000 },
    );
    expect((JSON.parse(stdout) as { workspace: { name: string } }).workspace.name).toBe("curled");
  });

  it("the admin CLI: an operator certificate creates a workspace and a key; none is UNAUTHENTICATED and a service's is PERMISSION_DENIED, each one line", async () => {
    const admin = (args: string[], env: Record<string, string>) =>
      run(process.execPath, ["--import", "tsx", join(ROOT, "services/workspaces/src/cli/admin.ts"), ...args], {
        cwd: ROOT,
        env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/tmp", WORKSPACES_ADDR: workspaces.grpcUrl, ...env },
        timeout: 30_000,
      }).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: "" }),
        (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
      );
    const op = tlsEnv(certs, "operator:admin");
    const made = await admin(["workspace", "create", "--name", "cli", "--plan", "starter", "--tls-cert", op.TLS_CERT!, "--tls-key", op.TLS_KEY!, "--tls-ca", op.TLS_CA!], {});
    expect(made.code, made.stderr).toBe(0);
    const ws = JSON.parse(made.stdout) as { id: string };
    const key = await admin(["key", "create", "--workspace", ws.id, "--scopes", "links:read"], op); // the same credential from TLS_*
    expect(key.code, key.stderr).toBe(0);
    expect(JSON.parse(key.stdout).key).toMatch(/^lw_live_/);

    const [none, service, untrusted] = await Promise.all([
      admin(["workspace", "create", "--name", "cli", "--plan", "starter"], { WORKSPACES_ADDR: workspaces.grpcUrl.replace(/^https:/, "http:") }),
      admin(["workspace", "create", "--name", "cli", "--plan", "starter"], tlsEnv(certs, "service:gateway")),
      admin(["workspace", "create", "--name", "cli", "--plan", "starter"], { ...op, TLS_CA: join(rogue, "ca.crt") }),
    ]);
    expect(none.code).toBe(1);
    expect(none.stderr.trim().split("\n")).toHaveLength(1);
    expect(none.stderr).toMatch(/^admin: Unauthenticated: .*client certificate is required/);
    expect(service.code).toBe(1);
    expect(service.stderr).toMatch(/^admin: PermissionDenied: .*operators only, not service:gateway/);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/^admin: cannot verify the mesh's certificate/);
  });
});

describe("certificate rotation", () => {
  const certs = mkdtempSync(join(tmpdir(), "linquid-rotate-"));
  // What the pods mount: one directory per process, whose files are replaced on rotation.
  const served = join(certs, "mounted-server");
  const calling = join(certs, "mounted-client");
  let mesh: TestMesh;

  /** Puts an identity's current files in `target`, each renamed into place (as a Secret volume swaps them at once). */
  function mount(identity: string, target: string): void {
    const from = join(certs, identity.replace(":", "-"));
    mkdirSync(target, { recursive: true });
    for (const f of ["ca.crt", "tls.key", "tls.crt"]) {
      copyFileSync(join(from, f), join(target, `.${f}.new`));
      renameSync(join(target, `.${f}.new`), join(target, f));
    }
  }

  /** The serial of the certificate a new TLS connection to `url` is served. */
  async function servedSerial(url: string): Promise<string> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: hostname, port: Number(port), ca: readFileSync(join(certs, "ca.crt")), ALPNProtocols: ["h2"] }, () => {
        resolve(socket.getPeerX509Certificate()!.serialNumber);
        socket.destroy();
      });
      socket.once("error", reject);
    });
  }

  async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`not within 10 s: ${what}`);
  }

  beforeAll(async () => {
    issue(certs);
    mount("service:workspaces", served);
    mount("service:gateway", calling);
    mesh = await startTestMesh({
      MESH_PLUGINS: "workspaces",
      TLS_CERT: join(served, "tls.crt"),
      TLS_KEY: join(served, "tls.key"),
      TLS_CA: join(served, "ca.crt"),
      TLS_RELOAD_INTERVAL_MS: "100",
    });
  });
  afterAll(async () => {
    await mesh?.stop();
    rmSync(certs, { recursive: true, force: true });
  });

  it("serves a replaced certificate on new connections; a client's replaced certificate is used on its next connection, open ones keep theirs", async () => {
    const url = mesh.host.grpcUrl!;
    const before = await servedSerial(url);
    expect(before).toBe(new X509Certificate(readFileSync(join(served, "tls.crt"))).serialNumber);

    // The client as a mesh process dials its peers: the credential in force at each new connection.
    const credential = watchCredentials({ certFile: join(calling, "tls.crt"), keyFile: join(calling, "tls.key"), caFile: join(calling, "ca.crt"), reloadIntervalMs: 100 }, createLogger("test", "error"));
    const sessions = new Http2SessionManager(url, undefined, credential.clientSessionOptions());
    const ws = createClient(WorkspacesService, createGrpcTransport({ baseUrl: url, sessionManager: sessions }));
    try {
      expect(await codeOf(ws.createWorkspace({ name: "rotated", plan: "pro" }))).toBe(Code.PermissionDenied); // service:gateway

      // Rotation: the server's certificate and key are reissued; the client's files become an operator's.
      issue(certs, "service:workspaces");
      const reissued = new X509Certificate(readFileSync(join(certs, "service-workspaces", "tls.crt"))).serialNumber;
      expect(reissued).not.toBe(before);
      mount("service:workspaces", served);
      mount("operator:admin", calling);
      await until("the server serves the reissued certificate", async () => (await servedSerial(url)) === reissued);
      await until("the client loaded the operator certificate", () => credential.current().identity === "operator:admin");

      // The open connection still carries the certificate it was made with …
      expect(await codeOf(ws.createWorkspace({ name: "rotated", plan: "pro" }))).toBe(Code.PermissionDenied);
      // … a new one carries the new certificate (and trusts the server's reissued one).
      sessions.abort();
      const created = await ws.createWorkspace({ name: "rotated", plan: "pro" });
      expect(created.workspace!.name).toBe("rotated");
    } finally {
      sessions.abort();
      credential.stop();
    }
  });

  it("keeps the loaded certificate while the files on disk do not load (a key of another rotation)", async () => {
    const url = mesh.host.grpcUrl!;
    const serving = await servedSerial(url);
    issue(certs, "service:workspaces");
    // Only the certificate is replaced: it does not go with the key on disk.
    copyFileSync(join(certs, "service-workspaces", "tls.crt"), join(served, ".tls.crt.new"));
    renameSync(join(served, ".tls.crt.new"), join(served, "tls.crt"));
    await new Promise((r) => setTimeout(r, 500)); // five reload intervals
    expect(await servedSerial(url)).toBe(serving);
    // The key follows: the pair loads.
    mount("service:workspaces", served);
    const reissued = new X509Certificate(readFileSync(join(served, "tls.crt"))).serialNumber;
    await until("the server serves the completed pair", async () => (await servedSerial(url)) === reissued);
  });
});
