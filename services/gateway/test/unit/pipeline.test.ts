import { create, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { CreateCustomerResponseSchema, ExportCustomersResponseSchema, GetCustomerResponseSchema, GetCohortsResponseSchema, type GetCustomerRequest } from "@linquid/contracts";
import { createLogger } from "@linquid/mesh";
import { beforeEach, describe, expect, it } from "vitest";
import type { Authenticator } from "../../src/auth.js";
import { createCachePolicy } from "../../src/cache.js";
import type { GatewayRequest, Principal } from "../../src/context.js";
import { HttpError } from "../../src/http-error.js";
import { REST_SERVICES } from "../../src/index.js";
import { createPipeline } from "../../src/pipeline.js";
import { createLocalLimiter } from "../../src/rate-limit.js";
import { buildRoutes, createRouteTable, type Route } from "../../src/route-table.js";

const ALL = ["links:read", "links:create", "links:update", "links:delete", "analytics:read", "events:write"];
const principals: Record<string, Principal> = {
  pro: { workspaceId: "ws_pro", keyId: "k1", scopes: new Set(ALL), entitlements: new Set(["revenue-tracking"]), rateLimit: null },
  readonly: { workspaceId: "ws_pro", keyId: "k2", scopes: new Set(["links:read"]), entitlements: new Set(["revenue-tracking"]), rateLimit: 100 },
  starter: { workspaceId: "ws_starter", keyId: "k3", scopes: new Set(ALL), entitlements: new Set(), rateLimit: 100 },
  tiny: { workspaceId: "ws_tiny", keyId: "k4", scopes: new Set(ALL), entitlements: new Set(["revenue-tracking"]), rateLimit: 2 },
};
const authenticator: Authenticator = {
  async authenticate(key) {
    const p = principals[key];
    if (p === undefined) throw new HttpError(401, "INVALID_API_KEY", "invalid API key");
    return p;
  },
};

let calls: Array<{ route: Route; request: Message; options: CallOptions }>;
let respond: (route: Route, request: Message) => Message;
let logged: string[];

function pipeline() {
  const logger = createLogger("test", "debug", (l) => logged.push(l));
  return createPipeline({
    routes: createRouteTable(buildRoutes(REST_SERVICES)),
    authenticator,
    limiter: createLocalLimiter(),
    cache: createCachePolicy({ redis: undefined, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger }),
    invoke: async (route, request, options) => {
      calls.push({ route, request, options });
      return respond(route, request);
    },
    logger,
  });
}

async function send(handle: ReturnType<typeof pipeline>, method: string, target: string, options: { key?: string; body?: string; headers?: Record<string, string> } = {}) {
  const [path, query = ""] = target.split("?");
  const headers: Record<string, string> = { ...(options.key ? { "x-api-key": options.key } : {}), ...(options.body !== undefined ? { "content-type": "application/json" } : {}), ...options.headers };
  const req: GatewayRequest = {
    method,
    path: path!,
    query: new URLSearchParams(query),
    headers,
    readBody: async () => Buffer.from(options.body ?? ""),
    responseHeaders: new Map(),
  };
  const answer = await handle(req);
  return { status: answer.status, body: JSON.parse(answer.body), headers: Object.fromEntries(req.responseHeaders) as Record<string, string> };
}

describe("pipeline", () => {
  beforeEach(() => {
    calls = [];
    logged = [];
    respond = (route) => {
      if (route.method.name === "GetCustomer") return create(GetCustomerResponseSchema, { customer: { id: "cus_1", externalId: "u1" } });
      if (route.method.name === "CreateCustomer") return create(CreateCustomerResponseSchema, { customer: { id: "cus_1", externalId: "u1" }, created: true });
      if (route.method.name === "GetCohorts") return create(GetCohortsResponseSchema, { cohorts: [] });
      throw new ConnectError("not in this fake", Code.Unimplemented);
    };
  });

  it("answers a read: principal's workspace in the request, allow-listed headers only upstream", async () => {
    const h = pipeline();
    const r = await send(h, "GET", "/customers/cus_1?workspace_id=ws_evil", { key: "pro", headers: { "x-request-id": "req-abc", cookie: "c=1", "x-forwarded-for": "1.2.3.4" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ success: true, data: { id: "cus_1", externalId: "u1", email: null } });
    expect(r.headers["x-request-id"]).toBe("req-abc");
    expect(calls).toHaveLength(1);
    expect((calls[0]!.request as GetCustomerRequest).workspaceId).toBe("ws_pro");
    expect((calls[0]!.request as GetCustomerRequest).id).toBe("cus_1");
    expect(calls[0]!.options.headers).toEqual({ "x-request-id": "req-abc" });
  });

  it("routes before authenticating: unknown route → 404, wrong method → 405 with Allow", async () => {
    const h = pipeline();
    expect(await send(h, "GET", "/nope")).toMatchObject({ status: 404, body: { success: false, error: { code: "NOT_FOUND" } } });
    const r = await send(h, "PUT", "/customers/cus_1");
    expect(r).toMatchObject({ status: 405, body: { error: { code: "METHOD_NOT_ALLOWED" } } });
    expect(r.headers["allow"]).toBe("GET, PATCH, DELETE");
    expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it.each([
    [undefined, 401, "UNAUTHORIZED"],
    ["lw_live_nope", 401, "INVALID_API_KEY"],
  ])("key %s → %i %s, without a budget header and without parsing the body", async (key, status, code) => {
    const r = await send(pipeline(), "POST", "/customers", { ...(key ? { key } : {}), body: "{not json" });
    expect(r).toMatchObject({ status, body: { success: false, error: { code } } });
    expect(r.headers["x-ratelimit-limit"]).toBeUndefined();
    expect(calls).toEqual([]);
  });

  it("403 FORBIDDEN for a missing scope and FEATURE_NOT_AVAILABLE for the plan, both with the budget", async () => {
    const h = pipeline();
    const f = await send(h, "POST", "/customers", { key: "readonly", body: '{"externalId":"u1"}' });
    expect(f).toMatchObject({ status: 403, body: { error: { code: "FORBIDDEN" } } });
    expect(f.headers["x-ratelimit-limit"]).toBe("100");
    expect(f.headers["x-ratelimit-remaining"]).toBe("100");
    const p = await send(h, "GET", "/customers", { key: "starter" });
    expect(p).toMatchObject({ status: 403, body: { error: { code: "FEATURE_NOT_AVAILABLE" } } });
    expect(p.headers["x-ratelimit-remaining"]).toBe("100");
    expect(calls).toEqual([]);
  });

  it("rate-limits before decoding and calling", async () => {
    const h = pipeline();
    expect((await send(h, "GET", "/customers/cus_1", { key: "tiny" })).headers["x-ratelimit-remaining"]).toBe("1");
    expect((await send(h, "POST", "/customers", { key: "tiny", body: "{bad" })).status).toBe(400);
    const r = await send(h, "POST", "/customers", { key: "tiny", body: "{bad" });
    expect(r).toMatchObject({ status: 429, body: { error: { code: "RATE_LIMITED" } } });
    expect(Number(r.headers["retry-after"])).toBeGreaterThan(0);
    expect(r.headers["x-ratelimit-remaining"]).toBe("0");
    expect(calls).toHaveLength(1);
  });

  it("answers 201 when the contract's created field is true", async () => {
    const r = await send(pipeline(), "POST", "/customers", { key: "pro", body: '{"externalId":"u1"}' });
    expect(r.status).toBe(201);
    expect(r.headers["x-ratelimit-limit"]).toBe("unlimited");
  });

  it("answers validation errors with field details and never calls the service", async () => {
    const r = await send(pipeline(), "POST", "/customers", { key: "pro", body: '{"externalId":"u1","workspaceId":"ws_evil","email":{"$ne":null}}' });
    expect(r).toMatchObject({ status: 400, body: { success: false, error: { code: "VALIDATION_ERROR", details: [{ field: "workspaceId", issue: "unknown field" }, { field: "email", issue: "must be a string" }] } } });
    expect(calls).toEqual([]);
  });

  it.each([
    [new ConnectError("customer not found", Code.NotFound), 404, "NOT_FOUND", "customer not found"],
    [new ConnectError("externalId taken", Code.AlreadyExists), 409, "DUPLICATE_EXTERNAL_ID", "externalId taken"],
    [new ConnectError("db at mongodb://10.0.0.1 down", Code.Unavailable), 503, "SERVICE_UNAVAILABLE", undefined],
    [new TypeError("Cannot read properties of undefined (reading 'x')"), 500, "INTERNAL_ERROR", "an unexpected error occurred"],
  ])("maps %s from the service", async (thrown, status, code, message) => {
    respond = () => {
      throw thrown;
    };
    const r = await send(pipeline(), "GET", "/customers/cus_1", { key: "pro", headers: { "x-request-id": "rid-1" } });
    expect(r).toMatchObject({ status, body: { success: false, error: { code } } });
    if (message !== undefined) expect(r.body.error.message).toBe(message);
    expect(JSON.stringify(r.body)).not.toMatch(/10\.0\.0\.1|\bat \w|\.ts:\d/);
    expect(r.headers["x-request-id"]).toBe("rid-1");
    // Every request has its access line; a server error also has an error line with its cause.
    const lines = logged.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["requestId"] === "rid-1");
    expect(lines.filter((l) => l["msg"] === "request")).toMatchObject([{ level: "info", route: "/customers/{id}", method: "GET", status, code }]);
    expect(lines.some((l) => l["level"] === "error")).toBe(status >= 500);
  });

  it("answers ANALYTICS_ERROR for an analytics internal error, and X-Cache on cacheable routes", async () => {
    respond = () => {
      throw new ConnectError("aggregation failed", Code.Internal);
    };
    const r = await send(pipeline(), "GET", "/customers/cohorts?group_by=week", { key: "pro" });
    expect(r).toMatchObject({ status: 500, body: { error: { code: "ANALYTICS_ERROR", message: "an analytics query failed" } } });
    expect(r.headers["x-cache"]).toBe("MISS");
  });

  it("replaces an unusable X-Request-Id", async () => {
    const h = pipeline();
    for (const bad of ["", "a b", "x".repeat(129), "é"]) {
      const r = await send(h, "GET", "/nope", { headers: { "x-request-id": bad } });
      expect(r.headers["x-request-id"]).not.toBe(bad);
      expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});

describe("pipeline, streaming routes", () => {
  function streamingPipeline(produce: (request: Message, signal: AbortSignal) => AsyncIterable<Message>) {
    const logger = createLogger("test", "debug", () => undefined);
    return createPipeline({
      routes: createRouteTable(buildRoutes(REST_SERVICES)),
      authenticator,
      limiter: createLocalLimiter(),
      // A TTL override caches every route; a stream must still never be cached.
      cache: createCachePolicy({ redis: undefined, ttlOverrideSeconds: 60, maxTtlSeconds: 60, logger }),
      invoke: async () => {
        throw new Error("unary call on a streaming route");
      },
      invokeStream: (_route, request, options) => produce(request, options.signal!),
      logger,
    });
  }
  const req = (target: string, signal?: AbortSignal): GatewayRequest => {
    const [path, query = ""] = target.split("?");
    return { method: "GET", path: path!, query: new URLSearchParams(query), headers: { "x-api-key": "pro" }, readBody: async () => Buffer.alloc(0), responseHeaders: new Map(), ...(signal ? { signal } : {}) };
  };
  const batch = (...ids: string[]) => create(ExportCustomersResponseSchema, { customers: ids.map((id) => ({ id, externalId: `e-${id}` })) });

  it("answers the first message's records as a stream, and each further message when asked for", async () => {
    let pulled = 0;
    const h = streamingPipeline(async function* () {
      for (const ids of [["cus_1", "cus_2"], ["cus_3"]]) {
        pulled++;
        yield batch(...ids);
      }
    });
    const answer = await h(req("/customers/export"));
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("");
    expect(answer.stream?.contentType).toBe("application/x-ndjson");
    expect(pulled).toBe(1);
    const first = await answer.stream!.chunks.next();
    expect((first.value as string).split("\n").filter(Boolean).map((l) => JSON.parse(l).id)).toEqual(["cus_1", "cus_2"]);
    expect(pulled).toBe(1);
    expect(JSON.parse(((await answer.stream!.chunks.next()).value as string).trim()).id).toBe("cus_3");
    expect((await answer.stream!.chunks.next()).done).toBe(true);
  });

  it("writes CSV when the format field says so, header first", async () => {
    const h = streamingPipeline(async function* () {
      yield batch("cus_1");
    });
    const answer = await h(req("/customers/export?format=csv"));
    expect(answer.stream?.contentType).toBe("text/csv; charset=utf-8");
    const head = (await answer.stream!.chunks.next()).value as string;
    expect(head.startsWith("id,externalId,")).toBe(true);
    expect(((await answer.stream!.chunks.next()).value as string).startsWith("cus_1,e-cus_1,")).toBe(true);
  });

  it("answers an error before the first message with the envelope, and cancels the call when the stream is dropped", async () => {
    const failing = streamingPipeline(async function* () {
      throw new ConnectError("bad format", Code.InvalidArgument);
    });
    const bad = await failing(req("/customers/export?format=x"));
    expect(bad.stream).toBeUndefined();
    expect(JSON.parse(bad.body)).toMatchObject({ success: false, error: { code: "VALIDATION_ERROR" } });

    let signal: AbortSignal | undefined;
    const h = streamingPipeline(async function* (_r, s) {
      signal = s;
      for (;;) yield batch("cus_1");
    });
    const gone = new AbortController();
    const answer = await h(req("/customers/export", gone.signal));
    await answer.stream!.chunks.next();
    expect(signal?.aborted).toBe(false);
    gone.abort();
    expect(signal?.aborted).toBe(true);
    const again = await h(req("/customers/export"));
    await again.stream!.chunks.return(undefined);
    expect(signal?.aborted).toBe(true);
  });
});
