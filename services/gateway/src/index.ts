/**
 * The gateway plugin: the public REST API (rest-api.md) in front of the mesh's services.
 * Routes come from the contracts' google.api.http and linquid.policy.v1.route options; the
 * policy chain is in pipeline.ts; the HTTP listener in server.ts.
 */
import type { DescService, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { AnalyticsService, CustomersService, IdempotencyService, WorkspacesService, type AuthenticateApiKeyResponse } from "@linquid/contracts";
import { DEFAULT_TIMEOUT_MS, type Plugin } from "@linquid/mesh";
import { createAuthenticator, grantedScopes } from "./auth.js";
import { createSnapshotCache } from "./cache.js";
import type { Principal } from "./context.js";
import { createIdempotencyPolicy } from "./idempotency.js";
import { startInvalidationFeed } from "./invalidations.js";
import { createOpenApiDocument, type OpenApiDocument } from "./openapi/document.js";
import { createReferencePolicy, loadRenderer } from "./openapi/reference.js";
import { createPipeline, type Invoke, type InvokeStream } from "./pipeline.js";
import { createFallbackLimiter } from "./rate-limit.js";
import { buildRoutes, createRouteTable } from "./route-table.js";
import { createGatewayServer } from "./server.js";

/** The services whose REST mappings the gateway serves. */
export const REST_SERVICES: readonly DescService[] = [CustomersService, AnalyticsService];

/**
 * The OpenAPI document the gateway serves at `${basePath}/openapi.json`, without starting it
 * (the REST client's types are generated from it: services/client).
 */
export function restApiDocument(basePath = "/api"): OpenApiDocument {
  return createOpenApiDocument(buildRoutes(REST_SERVICES), { basePath });
}

/** The principal of an AuthenticateApiKey answer. */
export function principalOf(res: AuthenticateApiKeyResponse): Principal {
  const ws = res.workspace;
  const key = res.apiKey;
  if (ws === undefined || key === undefined) throw new ConnectError("incomplete principal", Code.Unauthenticated);
  return {
    workspaceId: ws.id,
    keyId: key.id,
    scopes: grantedScopes(key.scopes),
    entitlements: new Set(ws.entitlements),
    rateLimit: ws.rateLimit === undefined ? null : Number(ws.rateLimit),
  };
}

type UnaryMethod = (request: Message, options: CallOptions) => Promise<Message>;
type StreamMethod = (request: Message, options: CallOptions) => AsyncIterable<Message>;

const plugin: Plugin = {
  name: "gateway",
  needs: { redis: true },
  async start(ctx) {
    const logger = ctx.logger;
    const routes = createRouteTable(buildRoutes(REST_SERVICES));
    // The reference describes exactly the routes just built: generated here, at every start.
    const document = createOpenApiDocument(routes.routes, { basePath: ctx.config.apiBasePath });

    const clients = new Map<string, Record<string, UnaryMethod>>();
    for (const s of REST_SERVICES) clients.set(s.typeName, ctx.client(s) as unknown as Record<string, UnaryMethod>);
    const invoke: Invoke = (route, request, options) => clients.get(route.service.typeName)![route.method.localName]!(request, options);
    const invokeStream: InvokeStream = (route, request, options) =>
      (clients.get(route.service.typeName)![route.method.localName] as unknown as StreamMethod)(request, options);

    const workspaces = ctx.client(WorkspacesService);
    const authenticator = createAuthenticator({
      ttlMs: ctx.config.authCacheTtlMs,
      resolve: async (keyHash) => principalOf(await workspaces.authenticateApiKey({ keyHash }, { timeoutMs: 5000 })),
    });

    const override = ctx.config.cacheTtlSeconds;
    const maxTtlSeconds = override ?? Math.max(0, ...routes.routes.map((r) => r.policy.cacheTtlSeconds));
    const cache = createSnapshotCache({ redis: ctx.redis, ttlOverrideSeconds: override, maxTtlSeconds, logger: logger.child("cache") });
    const pipeline = createPipeline({
      routes,
      authenticator,
      limiter: createFallbackLimiter(ctx.redis, logger.child("rate-limit")),
      cache: cache.policy,
      reference: createReferencePolicy({ document, renderer: loadRenderer(), logger }),
      // A claim lasts the RPC's deadline (the pipeline's default) plus the budget of the call that records its answer.
      idempotency: createIdempotencyPolicy({ records: ctx.client(IdempotencyService), leaseMs: DEFAULT_TIMEOUT_MS + 5000, logger: logger.child("idempotency") }),
      invoke,
      invokeStream,
      logger,
    });
    // Repairs the analytics service makes on its own reach the cache through its invalidation channel.
    const analytics = ctx.client(AnalyticsService);
    const feed =
      ctx.redis !== undefined && maxTtlSeconds > 0
        ? startInvalidationFeed({ list: (cursor) => analytics.listSnapshotInvalidations({ cursor }, { timeoutMs: 2000 }), cache, logger: logger.child("invalidations") })
        : undefined;

    const server = createGatewayServer({
      basePath: ctx.config.apiBasePath,
      maxBodyBytes: ctx.config.maxBodyBytes,
      shutdownTimeoutMs: ctx.config.shutdownTimeoutMs,
      handle: pipeline,
      logger,
    });
    const url = await server.listen(ctx.config.gatewayPort, ctx.config.bindHost);
    logger.info("serving REST", { url: `${url}${ctx.config.apiBasePath}`, routes: routes.routes.length });
    return {
      url,
      stop: async () => {
        await server.stop();
        await feed?.stop();
        cache.stop();
      },
    };
  },
};

export default plugin;
