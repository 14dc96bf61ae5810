/**
 * A stand-in for the customers and analytics services, served over real gRPC (HTTP/2 +
 * connectNodeAdapter) so the gateway can be tested through the mesh before (and apart
 * from) the real services. In-memory, per workspace; records every call's headers.
 */
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AnalyticsService, CustomerSchema, CustomersService, type Customer } from "@linquid/contracts";
import { invalidArgument, newId } from "@linquid/mesh";

export interface UpstreamCall {
  readonly rpc: string;
  readonly workspaceId: string;
  readonly headers: Record<string, string>;
}

/** What ExportCustomers streams: its workspace's customers `batches` times over, one message each. */
export interface FakeExport {
  batches: number;
  /** Fails the stream with UNAVAILABLE after this many messages (undefined = never). */
  failAfter: number | undefined;
  /** Messages the handler produced, and handlers that finished (ended, failed or closed). */
  produced: number;
  finished: number;
}

export interface FakeUpstream {
  readonly url: string;
  readonly calls: UpstreamCall[];
  readonly exports: FakeExport;
  /** Makes every call of `rpc` fail with `code` (undefined = stop failing). */
  fail(rpc: string, code: Code | undefined): void;
  stop(): Promise<void>;
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const calls: UpstreamCall[] = [];
  const exports: FakeExport = { batches: 1, failAfter: undefined, produced: 0, finished: 0 };
  const failures = new Map<string, Code>();
  const customers = new Map<string, Customer[]>();
  const list = (ws: string) => customers.get(ws) ?? customers.set(ws, []).get(ws)!;
  const find = (ws: string, id: string) => list(ws).find((c) => (id.startsWith("ext_") ? c.externalId === id.slice(4) : c.id === id));

  const record = (rpc: string, workspaceId: string, ctx: HandlerContext) => {
    calls.push({ rpc, workspaceId, headers: Object.fromEntries(ctx.requestHeader) });
    const code = failures.get(rpc);
    if (code !== undefined) throw new ConnectError(`${rpc} failed at mongo-internal.example:27017`, code);
  };
  const mustFind = (ws: string, id: string) => {
    const c = find(ws, id);
    if (c === undefined) throw new ConnectError("customer not found", Code.NotFound);
    return c;
  };

  const server: Http2Server = createServer(
    connectNodeAdapter({
      routes(router) {
        router.service(CustomersService, {
          listCustomers(req, ctx) {
            record("ListCustomers", req.workspaceId, ctx);
            if (req.limit !== undefined && (req.limit < 1 || req.limit > 100)) throw invalidArgument([{ field: "limit", issue: "must be 1..100" }]);
            const all = list(req.workspaceId);
            const limit = req.limit ?? 20;
            return {
              customers: all.slice(0, limit),
              pagination: { case: "page", value: { page: req.page ?? 1, limit, total: BigInt(all.length), totalPages: Math.ceil(all.length / limit), hasMore: all.length > limit } },
            };
          },
          countCustomers(req, ctx) {
            record("CountCustomers", req.workspaceId, ctx);
            return { count: BigInt(list(req.workspaceId).length) };
          },
          getCustomer(req, ctx) {
            record("GetCustomer", req.workspaceId, ctx);
            return { customer: mustFind(req.workspaceId, req.id) };
          },
          createCustomer(req, ctx) {
            record("CreateCustomer", req.workspaceId, ctx);
            if (req.externalId === "") throw invalidArgument([{ field: "externalId", issue: "is required" }]);
            const existing = find(req.workspaceId, `ext_${req.externalId}`);
            if (existing !== undefined) return { customer: existing, created: false };
            const c = create(CustomerSchema, { id: newId("cus"), externalId: req.externalId, createdAt: timestampNow(), updatedAt: timestampNow(), stats: {}, ...(req.email !== undefined ? { email: req.email } : {}) });
            list(req.workspaceId).push(c);
            return { customer: c, created: true };
          },
          updateCustomer(req, ctx) {
            record("UpdateCustomer", req.workspaceId, ctx);
            const c = mustFind(req.workspaceId, req.id);
            if (req.updateMask?.paths.includes("email")) {
              if (req.email === undefined) delete c.email;
              else c.email = req.email;
            }
            return { customer: c };
          },
          async *exportCustomers(req, ctx) {
            record("ExportCustomers", req.workspaceId, ctx);
            if (req.format !== undefined && req.format !== "ndjson" && req.format !== "csv") throw invalidArgument([{ field: "format", issue: "must be ndjson or csv" }]);
            try {
              for (let i = 0; i < exports.batches; i++) {
                if (exports.failAfter !== undefined && i >= exports.failAfter) throw new ConnectError("export failed at mongo-internal.example:27017", Code.Unavailable);
                exports.produced++;
                yield { customers: list(req.workspaceId) };
              }
            } finally {
              exports.finished++;
            }
          },
          deleteCustomer(req, ctx) {
            record("DeleteCustomer", req.workspaceId, ctx);
            const c = mustFind(req.workspaceId, req.id);
            customers.set(req.workspaceId, list(req.workspaceId).filter((x) => x !== c));
            return { id: c.id, deleted: true };
          },
        });
        router.service(AnalyticsService, {
          trackClick(req, ctx) {
            record("TrackClick", req.workspaceId, ctx);
            return { eventId: newId("evt"), duplicate: false };
          },
          trackLead(req, ctx) {
            record("TrackLead", req.workspaceId, ctx);
            return { eventId: newId("evt"), customerId: "cus_x", duplicate: false };
          },
          trackSale(req, ctx) {
            record("TrackSale", req.workspaceId, ctx);
            return { eventId: newId("evt"), customerId: "cus_x", duplicate: false };
          },
          trackEvent(req, ctx) {
            record("TrackEvent", req.workspaceId, ctx);
            return { eventId: newId("evt"), customerId: "cus_x", duplicate: false };
          },
          ingestEvents(req, ctx) {
            record("IngestEvents", req.workspaceId, ctx);
            return { results: req.events.map(() => ({ eventId: newId("evt"), duplicate: false })) };
          },
          getWorkspaceAttribution(req, ctx) {
            record("GetWorkspaceAttribution", req.workspaceId, ctx);
            return { rows: [] };
          },
          getCohorts(req, ctx) {
            record("GetCohorts", req.workspaceId, ctx);
            if (req.groupBy !== undefined && !["week", "month", "campaign", "source"].includes(req.groupBy)) throw invalidArgument([{ field: "group_by", issue: "must be week, month, campaign or source" }]);
            return { cohorts: [{ cohort: "2026-W14", customers: 2n, leads: 2n, sales: 1n, revenue: 1999n, conversionRate: 0.5 }] };
          },
          getLtvCohorts(req, ctx) {
            record("GetLtvCohorts", req.workspaceId, ctx);
            return { cohorts: [] };
          },
          recalculateLtv(req, ctx) {
            record("RecalculateLtv", req.workspaceId, ctx);
            return { customerId: req.id, before: {}, after: {} };
          },
          getJourney(req, ctx) {
            record("GetJourney", req.workspaceId, ctx);
            return { touchpoints: [], pagination: { page: 1, limit: req.limit ?? 100, total: 0n, totalPages: 0, hasMore: false } };
          },
          getJourneySummary(req, ctx) {
            record("GetJourneySummary", req.workspaceId, ctx);
            return { summary: {} };
          },
          getAttribution(req, ctx) {
            record("GetAttribution", req.workspaceId, ctx);
            return { attribution: {} };
          },
        });
      },
    }),
  );
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    exports,
    fail(rpc, code) {
      if (code === undefined) failures.delete(rpc);
      else failures.set(rpc, code);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.destroy();
      }),
  };
}
