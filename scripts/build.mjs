/**
 * `npm run build`: the production tree in dist/, run with a plain `node` (>= 22) and production
 * dependencies only:
 *
 *   dist/package.json, package-lock.json, .npmrc     the root manifest and lock, as they are
 *   dist/services/<name>/package.json                each workspace's manifest, its exports
 *                                                    pointing at the compiled .js
 *   dist/services/<name>/src/**.js                   tsc output (tsconfig.build.json)
 *
 * Then `cd dist && npm ci --omit=dev && node services/mesh/src/main.js`. The workspaces keep
 * their names and dependencies, so the lock file installs them unchanged. Test helpers
 * (`./testing` exports) are not built.
 *
 *   dist/services/gateway/assets/redoc.standalone.js  the reference page's renderer (the gateway
 *                                                    serves it at /docs): the one file of the
 *                                                    redoc package production needs, so the
 *                                                    package stays a development dependency
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "dist");

rmSync(dist, { recursive: true, force: true });
execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
mkdirSync(join(dist, "services/gateway/assets"), { recursive: true });
copyFileSync(createRequire(import.meta.url).resolve("redoc/bundles/redoc.standalone.js"), join(dist, "services/gateway/assets/redoc.standalone.js"));

for (const file of ["package.json", "package-lock.json", ".npmrc"]) copyFileSync(join(root, file), join(dist, file));

/** A manifest's export target in the compiled tree, or null when it is not built. */
const compiled = (target) => {
  const js = target.replace(/\.ts$/, ".js");
  return existsSync(join(dist, "services", currentPackage, js)) ? js : null;
};

let currentPackage = "";
for (const name of readdirSync(join(root, "services"))) {
  const manifestPath = join(root, "services", name, "package.json");
  if (!existsSync(manifestPath)) continue;
  currentPackage = name;
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  const exports = typeof manifest.exports === "string" ? { ".": manifest.exports } : (manifest.exports ?? {});
  manifest.exports = Object.fromEntries(
    Object.entries(exports).flatMap(([subpath, target]) => {
      const js = compiled(target);
      return js === null ? [] : [[subpath, js]];
    }),
  );
  mkdirSync(join(dist, "services", name), { recursive: true });
  writeFileSync(join(dist, "services", name, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
}
process.stderr.write(`build: dist/ ready; production: cd dist && npm ci --omit=dev && node services/mesh/src/main.js\n`);
