/**
 * The API's own reference, below the base path and without a key: `GET /openapi.json` (the
 * document, generated at start) and `GET /docs` (a page rendering it in the browser with Redoc,
 * whose standalone script the gateway serves itself at `/docs/redoc.standalone.js`, so the page
 * works offline and loads nothing from elsewhere — its Content-Security-Policy says so).
 *
 * The script comes from the `redoc` package in development and from `assets/` next to the
 * compiled gateway in production, where `npm run build` copies it (scripts/build.mjs): the
 * package and its dependencies stay out of the production install.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { Logger } from "@linquid/mesh";
import type { Step } from "../context.js";
import { HttpError } from "../http-error.js";
import { DOCS_PATH, OPENAPI_PATH, RENDERER_PATH, type OpenApiDocument } from "./document.js";

/** Where the build puts the renderer: services/gateway/assets/, beside src/. */
const BUILT_RENDERER = fileURLToPath(new URL("../../assets/redoc.standalone.js", import.meta.url));

/** The Redoc standalone script, or undefined when neither the build nor the package has it. */
export function loadRenderer(): string | undefined {
  if (existsSync(BUILT_RENDERER)) return readFileSync(BUILT_RENDERER, "utf8");
  try {
    return readFileSync(createRequire(import.meta.url).resolve("redoc/bundles/redoc.standalone.js"), "utf8");
  } catch {
    return undefined;
  }
}

/**
 * Redoc renders with inline styles and a search worker made from a blob; everything else must
 * come from the gateway itself.
 */
const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self' 'unsafe-inline' blob:",
  "worker-src 'self' blob:",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The page: relative URLs, so it works under any base path and host. */
function docsPage(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title.replace(/[<>&"]/g, "")}</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<div id="reference"></div>
<script src="${DOCS_PATH.slice(1)}${RENDERER_PATH.slice(DOCS_PATH.length)}"></script>
<script>
  Redoc.init(${JSON.stringify(OPENAPI_PATH.slice(1))}, { hideDownloadButton: false, expandResponses: "200,201", jsonSampleExpandLevel: 3 }, document.getElementById("reference"));
</script>
</body>
</html>
`;
}

export interface ReferenceOptions {
  readonly document: OpenApiDocument;
  /** The Redoc standalone script (loadRenderer); without it /docs answers 500. */
  readonly renderer: string | undefined;
  readonly logger: Logger;
}

/**
 * A pipeline step answering the reference's paths before routing and authentication; every
 * other request passes on.
 */
export function createReferencePolicy(options: ReferenceOptions): Step {
  const json = JSON.stringify(options.document);
  const info = options.document["info"] as { title?: string } | undefined;
  const page = docsPage(info?.title ?? "API reference");
  if (options.renderer === undefined) options.logger.error("the reference page's renderer (redoc/bundles/redoc.standalone.js) is missing: /docs answers 500");
  const paths = new Set([OPENAPI_PATH, DOCS_PATH, RENDERER_PATH]);
  return async (req, next) => {
    if (!paths.has(req.path)) return next();
    req.ownRoute = req.path;
    if (req.method !== "GET") throw new HttpError(405, "METHOD_NOT_ALLOWED", `method ${req.method} is not allowed here; use GET`, undefined, { allow: "GET" });
    if (req.path === OPENAPI_PATH) {
      req.responseHeaders.set("access-control-allow-origin", "*");
      return { status: 200, body: json };
    }
    if (options.renderer === undefined) throw new HttpError(500, "INTERNAL_ERROR", "the reference page is not available in this build");
    if (req.path === RENDERER_PATH) {
      req.responseHeaders.set("content-type", "text/javascript; charset=utf-8");
      req.responseHeaders.set("cache-control", "public, max-age=3600");
      return { status: 200, body: options.renderer };
    }
    req.responseHeaders.set("content-type", "text/html; charset=utf-8");
    req.responseHeaders.set("content-security-policy", DOCS_CSP);
    return { status: 200, body: page };
  };
}
