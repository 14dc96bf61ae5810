/**
 * The contracts as a package for internal callers: `npm run pack:contracts` builds JavaScript
 * with declarations and packs it; the Connect client example of docs/clients.md runs with
 * plain Node (no tsx, no TypeScript sources) against the installed package and a live mesh.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

const root = new URL("../../../../", import.meta.url).pathname;
let mesh: TestMesh;
let dir: string;

beforeAll(async () => {
  mesh = await startTestMesh();
  dir = mkdtempSync(join(tmpdir(), "linquid-contracts-"));
});
afterAll(async () => {
  await mesh?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe("the contracts package", () => {
  it("packs to JavaScript that a Connect client uses with plain Node, as docs/clients.md shows", { timeout: 180_000 }, async () => {
    const tarball = execFileSync(process.execPath, [join(root, "scripts/pack.mjs"), "contracts"], { cwd: root, encoding: "utf8" }).trim().split("\n").pop()!;
    expect(tarball).toMatch(/linquid-contracts-\d+\.\d+\.\d+\.tgz$/);

    // Installed as npm would: the package unpacked into node_modules, its dependencies beside it.
    const installed = join(dir, "node_modules/@linquid/contracts");
    mkdirSync(installed, { recursive: true });
    execFileSync("tar", ["xzf", tarball, "-C", installed, "--strip-components=1"]);
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
    expect(manifest.exports["."]).toEqual({ types: "./index.d.ts", default: "./index.js" });
    expect(Object.keys(manifest.dependencies)).toEqual(["@bufbuild/protobuf"]);
    for (const dep of ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"]) {
      mkdirSync(dirname(join(dir, "node_modules", dep)), { recursive: true });
      symlinkSync(join(root, "node_modules", dep), join(dir, "node_modules", dep));
    }

    const example = readFileSync(join(root, "docs/examples/connect-client.ts"), "utf8");
    expect(readFileSync(join(root, "docs/clients.md"), "utf8")).toContain(example);
    copyFileSync(join(root, "docs/examples/connect-client.ts"), join(dir, "connect-client.ts"));
    writeFileSync(join(dir, "run.mjs"), 'const { connectClientExample } = await import("./connect-client.ts");\nconsole.log(JSON.stringify(await connectClientExample(process.argv[2], process.argv[3])));\n');

    const ws = await mesh.workspace({ plan: "pro" });
    for (const externalId of ["a-1", "a-2"]) expect((await mesh.request("POST", "/customers", { key: ws.key, body: { externalId } })).status).toBe(201);
    // Node strips the example's types itself (Node >= 22.6); nothing else compiles anything. Run
    // asynchronously: the mesh it calls serves from this very process.
    const { stdout: out } = await promisify(execFile)(process.execPath, ["--experimental-strip-types", "--no-warnings", "run.mjs", mesh.host.grpcUrl!, ws.id], { cwd: dir, encoding: "utf8" });
    expect(JSON.parse(out).sort()).toEqual(["a-1", "a-2"]);
  });
});
