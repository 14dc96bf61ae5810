/**
 * The Idempotency-Key step inside the whole pipeline, with the records service and the upstream
 * RPCs faked (the records against a real database: services/workspaces/test/integration; the
 * whole mesh: test/gateway/idempotency.test.ts).
 */
import { create, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ClaimIdempotencyKeyRequestSchema,
  ClaimIdempotencyKeyResponseSchema,
  CreateCustomerResponseSchema,
  RecordIdempotentAnswerRequestSchema,
  RecordIdempotentAnswerResponseSchema,
  ReleaseIdempotencyKeyRequestSchema,
  ReleaseIdempotencyKeyResponseSchema,
  TrackClickResponseSchema,
  UpdateCustomerResponseSchema,
  type ClaimIdempotencyKeyRequest,
  type IdempotentAnswer,
} from "@linquid/contracts";
import { createLogger } from "@linquid/mesh";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Authenticator } from "../../src/auth.js";
import { createCachePolicy } from "../../src/cache.js";
import type { GatewayRequest, Principal } from "../../src/context.js";
import { HttpError } from "../../src/http-error.js";
import { createIdempotencyPolicy, type IdempotencyRecords } from "../../src/idempotency.js";
import { REST_SERVICES } from "../../src/index.js";
import { createPipeline } from "../../src/pipeline.js";
import { createLocalLimiter } from "../../src/rate-limit.js";
import { buildRoutes, createRouteTable, type Route } from "../../src/route-table.js";

const ALL = ["links:read", "links:create", "links:update", "links:delete", "analytics:read", "events:write"];
const principals: Record<string, Principal> = {
  a: { workspaceId: "ws_a", keyId: "k1", scopes: new Set(ALL), entitlements: new Set(["revenue-tracking"]), rateLimit: null },
  b: { workspaceId: "ws_b", keyId: "k2", scopes: new Set(ALL), entitlements: new Set(["revenue-tracking"]), rateLimit: null },
  tiny: { workspaceId: "ws_tiny", keyId: "k3", scopes: new Set(ALL), entitlements: new Set(["revenue-tracking"]), rateLimit: 2 },
};
const authenticator: Authenticator = {
  async authenticate(key) {
    const p = principals[key];
    if (p === undefined) throw new HttpError(401, "INVALID_API_KEY", "invalid API key");
    return p;
  },
};

/** The records service's semantics in memory, with failures on demand. */
class FakeRecords implements IdempotencyRecords {
  readonly rows = new Map<string, { fingerprint: string; token: string; answer?: IdempotentAnswer }>();
  claims: ClaimIdempotencyKeyRequest[] = [];
  released = 0;
  recordFailures = 0;
  fail: ConnectError | undefined;
  forceInProgress = false;
  private n = 0;

  claimIdempotencyKey = async (init: MessageInitShape<typeof ClaimIdempotencyKeyRequestSchema>) => {
    if (this.fail !== undefined) throw this.fail;
    const req = create(ClaimIdempotencyKeyRequestSchema, init);
    this.claims.push(req);
    const id = `${req.workspaceId}:${req.key}`;
    const row = this.rows.get(id);
    const answer = (outcome: NonNullable<MessageInitShape<typeof ClaimIdempotencyKeyResponseSchema>["outcome"]>) => create(ClaimIdempotencyKeyResponseSchema, { outcome });
    if (this.forceInProgress) return answer({ case: "inProgress", value: {} });
    if (row === undefined) {
      const token = `claim_${++this.n}`;
      this.rows.set(id, { fingerprint: req.fingerprint, token });
      return answer({ case: "claimToken", value: token });
    }
    if (row.fingerprint !== req.fingerprint) return answer({ case: "keyReused", value: {} });
    if (row.answer === undefined) return answer({ case: "inProgress", value: {} });
    return answer({ case: "answer", value: row.answer });
  };
  recordIdempotentAnswer = async (init: MessageInitShape<typeof RecordIdempotentAnswerRequestSchema>) => {
    const req = create(RecordIdempotentAnswerRequestSchema, init);
    if (this.recordFailures > 0) {
      this.recordFailures--;
      throw new ConnectError("workspaces service unavailable", Code.Unavailable);
    }
    const row = this.rows.get(`${req.workspaceId}:${req.key}`);
    if (row === undefined || row.token !== req.claimToken) return create(RecordIdempotentAnswerResponseSchema, { recorded: false });
    row.answer = req.answer!;
    return create(RecordIdempotentAnswerResponseSchema, { recorded: true });
  };
  releaseIdempotencyKey = async (init: MessageInitShape<typeof ReleaseIdempotencyKeyRequestSchema>) => {
    const req = create(ReleaseIdempotencyKeyRequestSchema, init);
    const id = `${req.workspaceId}:${req.key}`;
    if (this.rows.get(id)?.token !== req.claimToken) return create(ReleaseIdempotencyKeyResponseSchema, { released: false });
    this.rows.delete(id);
    this.released++;
    return create(ReleaseIdempotencyKeyResponseSchema, { released: true });
  };
}

let records: FakeRecords;
let calls: Array<{ route: Route; request: Message }>;
let respond: (route: Route, request: Message) => Message;

function pipeline() {
  const logger = createLogger("test", "error", () => undefined);
  return createPipeline({
    routes: createRouteTable(buildRoutes(REST_SERVICES)),
    authenticator,
    limiter: createLocalLimiter(),
    cache: createCachePolicy({ redis: undefined, ttlOverrideSeconds: undefined, maxTtlSeconds: 30, logger }),
    idempotency: createIdempotencyPolicy({ records, leaseMs: 20_000, logger }),
    invoke: async (route, request) => {
      calls.push({ route, request });
      return respond(route, request);
    },
    logger,
  });
}

type Handle = ReturnType<typeof pipeline>;

async function send(h: Handle, method: string, path: string, options: { key?: string; body?: string; idem?: string | string[] } = {}) {
  const headers: Record<string, string> = { "x-api-key": options.key ?? "a", ...(options.body !== undefined ? { "content-type": "application/json" } : {}) };
  const distinct: Record<string, string[]> = {};
  if (typeof options.idem === "string") headers["idempotency-key"] = options.idem;
  if (Array.isArray(options.idem)) {
    headers["idempotency-key"] = options.idem.join(", ");
    distinct["idempotency-key"] = options.idem;
  }
  const req: GatewayRequest = {
    method,
    path,
    query: new URLSearchParams(),
    headers,
    headersDistinct: distinct,
    readBody: async () => Buffer.from(options.body ?? ""),
    responseHeaders: new Map(),
  };
  const answer = await h(req);
  return { status: answer.status, code: answer.code, text: answer.body, body: JSON.parse(answer.body), headers: Object.fromEntries(req.responseHeaders) as Record<string, string> };
}

const rpcs = (name: string) => calls.filter((c) => c.route.method.name === name).length;

describe("Idempotency-Key", () => {
  let n = 0;
  beforeEach(() => {
    records = new FakeRecords();
    calls = [];
    respond = (route) => {
      n++;
      if (route.method.name === "CreateCustomer") return create(CreateCustomerResponseSchema, { customer: { id: `cus_${n}`, externalId: "u1" }, created: true });
      if (route.method.name === "UpdateCustomer") return create(UpdateCustomerResponseSchema, { customer: { id: "cus_1", externalId: "u1", name: `n${n}` } });
      if (route.method.name === "TrackClick") return create(TrackClickResponseSchema, { eventId: `evt_${n}` });
      throw new ConnectError("not in this fake", Code.Unimplemented);
    };
  });

  it("answers a retry with the first answer, Idempotent-Replayed: true, and runs nothing", async () => {
    const h = pipeline();
    const first = await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "order-1" });
    expect(first.status).toBe(201);
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    const again = await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "order-1" });
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    // Its own request id and budget, not the first's.
    expect(again.headers["x-request-id"]).not.toBe(first.headers["x-request-id"]);
    expect(again.headers["x-ratelimit-limit"]).toBe("unlimited");
    expect(rpcs("CreateCustomer")).toBe(1);
  });

  it("without the header, or on other methods, nothing is claimed", async () => {
    const h = pipeline();
    await send(h, "POST", "/customers", { body: '{"externalId":"u1"}' });
    await send(h, "POST", "/customers", { body: '{"externalId":"u1"}' });
    expect(rpcs("CreateCustomer")).toBe(2);
    expect(records.claims).toHaveLength(0);
  });

  it.each([
    ["empty", ""],
    ["too long", "k".repeat(256)],
    ["a tab", "a\tb"],
    ["non-ASCII", "clé"],
  ])("400 VALIDATION_ERROR naming the header for a key that is %s, before anything is claimed or run", async (_what, idem) => {
    const h = pipeline();
    const r = await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem });
    expect(r).toMatchObject({ status: 400, body: { error: { code: "VALIDATION_ERROR", details: [{ field: "Idempotency-Key" }] } } });
    expect(records.claims).toHaveLength(0);
    expect(calls).toHaveLength(0);
  });

  it("400 for a key sent twice; 255 printable characters, spaces included, are a key", async () => {
    const h = pipeline();
    expect((await send(h, "POST", "/customers", { body: "{}", idem: ["a", "b"] })).body.error.details).toEqual([{ field: "Idempotency-Key", issue: "must be sent once" }]);
    expect((await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: ` ~${"x".repeat(253)}` })).status).toBe(201);
    expect(records.claims.map((c) => c.key)).toEqual([` ~${"x".repeat(253)}`]);
  });

  it("422 IDEMPOTENCY_KEY_REUSED for another body, another route or another path parameter", async () => {
    const h = pipeline();
    expect((await send(h, "PATCH", "/customers/cus_1", { body: '{"name":"a"}', idem: "k" })).status).toBe(200);
    for (const [method, path, body] of [
      ["PATCH", "/customers/cus_1", '{"name":"b"}'],
      ["PATCH", "/customers/cus_1", '{ "name":"a"}'],
      ["PATCH", "/customers/cus_2", '{"name":"a"}'],
      ["POST", "/customers", '{"name":"a"}'],
    ] as const) {
      const r = await send(h, method, path, { body, idem: "k" });
      expect(r).toMatchObject({ status: 422, body: { success: false, error: { code: "IDEMPOTENCY_KEY_REUSED" } } });
    }
    expect(rpcs("UpdateCustomer")).toBe(1);
    expect(rpcs("CreateCustomer")).toBe(0);
  });

  it("409 IDEMPOTENCY_IN_PROGRESS with Retry-After while the first runs", async () => {
    records.forceInProgress = true;
    const r = await send(pipeline(), "POST", "/track/click", { body: '{"clickId":"c1","linkId":"l1"}', idem: "k" });
    expect(r).toMatchObject({ status: 409, body: { error: { code: "IDEMPOTENCY_IN_PROGRESS" } } });
    expect(r.headers["retry-after"]).toBe("1");
    expect(calls).toHaveLength(0);
  });

  it("a 5xx is not kept: the key is released and the retry runs", async () => {
    const h = pipeline();
    const ok = respond;
    respond = () => {
      throw new ConnectError("customers service unavailable", Code.Unavailable);
    };
    expect((await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "k" })).status).toBe(503);
    respond = (route) => {
      throw new ConnectError("boom", Code.Internal, undefined, undefined, route);
    };
    expect((await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "k" })).status).toBe(500);
    expect(records.released).toBe(2);
    respond = ok;
    const r = await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "k" });
    expect(r.status).toBe(201);
    expect(r.headers["idempotent-replayed"]).toBeUndefined();
    expect(rpcs("CreateCustomer")).toBe(3);
  });

  it("a 4xx the service answers is kept and replayed", async () => {
    const h = pipeline();
    respond = () => {
      throw new ConnectError("customer not found", Code.NotFound);
    };
    const first = await send(h, "PATCH", "/customers/cus_404", { body: '{"name":"x"}', idem: "k" });
    expect(first).toMatchObject({ status: 404, body: { error: { code: "NOT_FOUND", message: "customer not found" } } });
    const again = await send(h, "PATCH", "/customers/cus_404", { body: '{"name":"x"}', idem: "k" });
    expect(again.text).toBe(first.text);
    expect(again.code).toBe("NOT_FOUND");
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(rpcs("UpdateCustomer")).toBe(1);
  });

  it("the same key in two workspaces is two keys", async () => {
    const h = pipeline();
    expect((await send(h, "POST", "/customers", { key: "a", body: '{"externalId":"u1"}', idem: "k" })).headers["idempotent-replayed"]).toBeUndefined();
    expect((await send(h, "POST", "/customers", { key: "b", body: '{"externalId":"u2"}', idem: "k" })).status).toBe(201);
    expect(rpcs("CreateCustomer")).toBe(2);
  });

  it("a replay spends a token of the budget like any request", async () => {
    const h = pipeline();
    expect((await send(h, "POST", "/customers", { key: "tiny", body: '{"externalId":"u1"}', idem: "k" })).status).toBe(201);
    const replayed = await send(h, "POST", "/customers", { key: "tiny", body: '{"externalId":"u1"}', idem: "k" });
    expect(replayed.headers).toMatchObject({ "idempotent-replayed": "true", "x-ratelimit-remaining": "0" });
    expect((await send(h, "POST", "/customers", { key: "tiny", body: '{"externalId":"u1"}', idem: "k" })).status).toBe(429);
  });

  it("the records service unreachable → 503; failing otherwise → 500 INTERNAL_ERROR, on an analytics route too", async () => {
    const h = pipeline();
    records.fail = new ConnectError("workspaces service unavailable", Code.Unavailable);
    const down = await send(h, "POST", "/track/click", { body: '{"clickId":"c1","linkId":"l1"}', idem: "k" });
    expect(down).toMatchObject({ status: 503, body: { error: { code: "SERVICE_UNAVAILABLE" } } });
    expect(down.headers["retry-after"]).toBe("1");
    records.fail = new ConnectError("bad", Code.InvalidArgument);
    expect(await send(h, "POST", "/track/click", { body: '{"clickId":"c1","linkId":"l1"}', idem: "k" })).toMatchObject({ status: 500, body: { error: { code: "INTERNAL_ERROR" } } });
    expect(calls).toHaveLength(0);
  });

  it("an answer that could not be recorded still goes out, and is recorded by a retry in the background", async () => {
    const h = pipeline();
    records.recordFailures = 1;
    const first = await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "k" });
    expect(first.status).toBe(201);
    await vi.waitFor(() => expect([...records.rows.values()][0]?.answer).toBeDefined(), { timeout: 5000, interval: 100 });
    const again = await send(h, "POST", "/customers", { body: '{"externalId":"u1"}', idem: "k" });
    expect(again.text).toBe(first.text);
    expect(rpcs("CreateCustomer")).toBe(1);
  });
});
