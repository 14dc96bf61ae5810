/**
 * `npm run pack:contracts`, `npm run pack:client`: a workspace as an npm package of JavaScript
 * that callers outside this repository install (`npm install ./linquid-contracts-1.0.0.tgz`,
 * or publish it to a private registry):
 *
 *   services/<name>/dist/            tsc output (.js, .d.ts, source maps) of services/<name>/src,
 *                                    test helpers and generators left out
 *   services/<name>/dist/package.json  the workspace's manifest with its exports pointing at the
 *                                    compiled files and its dependencies, workspace ones excepted
 *   .cache/packages/<name>-<version>.tgz  `npm pack` of that directory; its path is printed
 *
 * In the repository the workspaces keep exporting their TypeScript sources (tsx and vitest run
 * them as they are), so the package's manifest is written here rather than kept in the workspace.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const name = process.argv[2];
const workspace = join(root, "services", name ?? "");
if (name === undefined || !existsSync(join(workspace, "package.json"))) {
  process.stderr.write(`usage: node scripts/pack.mjs <workspace under services/>\n`);
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(workspace, "package.json"), "utf8"));
const dist = join(workspace, "dist");
rmSync(dist, { recursive: true, force: true });

// The repository's compiler options, emitting declarations for this workspace's sources alone.
mkdirSync(join(root, ".cache"), { recursive: true });
const tsconfig = join(root, ".cache", `tsconfig.pack-${name}.json`);
const rel = (p) => relative(join(root, ".cache"), p);
writeFileSync(
  tsconfig,
  JSON.stringify({
    extends: rel(join(root, "tsconfig.json")),
    compilerOptions: { noEmit: false, declaration: true, sourceMap: true, rootDir: rel(join(workspace, "src")), outDir: rel(dist) },
    include: [rel(join(workspace, "src/**/*.ts"))],
    exclude: [rel(join(workspace, "src/testing/**")), rel(join(workspace, "src/generate.ts"))],
  }),
);
execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", tsconfig], { stdio: "inherit" });

const exports = typeof manifest.exports === "string" ? { ".": manifest.exports } : (manifest.exports ?? {});
const compiled = Object.fromEntries(
  Object.entries(exports).flatMap(([subpath, target]) => {
    const js = target.replace(/^\.\/src\//, "./").replace(/\.ts$/, ".js");
    return existsSync(join(dist, js)) ? [[subpath, { types: js.replace(/\.js$/, ".d.ts"), default: js }]] : [];
  }),
);
const external = (deps) => Object.fromEntries(Object.entries(deps ?? {}).filter(([dep]) => !dep.startsWith("@linquid/")));
const packageJson = {
  name: manifest.name,
  version: manifest.version,
  description: manifest.description,
  type: "module",
  exports: compiled,
  dependencies: external(manifest.dependencies),
  ...(manifest.peerDependencies ? { peerDependencies: manifest.peerDependencies } : {}),
  ...(manifest.peerDependenciesMeta ? { peerDependenciesMeta: manifest.peerDependenciesMeta } : {}),
};
writeFileSync(join(dist, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
if (existsSync(join(workspace, "README.md"))) copyFileSync(join(workspace, "README.md"), join(dist, "README.md"));

const destination = join(root, ".cache", "packages");
mkdirSync(destination, { recursive: true });
const out = execFileSync("npm", ["pack", "--silent", "--pack-destination", destination], { cwd: dist, encoding: "utf8" }).trim().split("\n").pop();
process.stdout.write(`${join(destination, out)}\n`);
