/**
 * CustomersService: customer identity per workspace. Validation and the shape of answers live
 * here; every database access is the repository's, so tests can hand this class a fake.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  CustomerSchema,
  CustomerStatsSchema,
  ListCustomersResponse_CursorPaginationSchema,
  ListCustomersResponse_PagePaginationSchema,
  type CountCustomersRequest,
  type CreateCustomerRequest,
  type Customer,
  type CustomersService,
  type CustomerStats,
  type DeleteCustomerRequest,
  type ExportCustomersRequest,
  type GetCustomerRequest,
  type ListCustomersRequest,
  type SetCustomerStatsRequest,
  type SetCustomersStatsRequest,
  type StitchCustomerRequest,
  type StitchCustomersRequest,
  type BadRequest,
  type UpdateCustomerRequest,
} from "@linquid/contracts";
import { badRequest, invalidArgument, Violations } from "@linquid/mesh";
import { parseCustomerRef } from "./identity.js";
import { metadataOf, type CustomerDoc, type StatsDoc } from "./customer-doc.js";
import type { CursorCodec, CursorScope } from "./cursor.js";
import type { CustomersRepository } from "./customers-repository.js";
import { canonicalFilters, checkFilters } from "./filters.js";
import { pageWithTotal } from "./page-total.js";
import type { Retrier } from "./retry-sweeper.js";
import {
  checkExternalId,
  checkField,
  checkListQuery,
  checkMetadata,
  checkOptionalFields,
  checkWorkspaceId,
  maskFields,
  type CustomerPatch,
} from "./validation.js";

/** StitchCustomers items per call. */
export const MAX_STITCH_ITEMS = 1000;
/** SetCustomersStats items per call. */
export const MAX_STATS_ITEMS = 1000;

/** Formats of ExportCustomers (written by the gateway). */
const EXPORT_FORMATS = new Set(["ndjson", "csv"]);

const notFound = () => new ConnectError("customer not found", Code.NotFound);

export class CustomersHandler implements ServiceImpl<typeof CustomersService> {
  constructor(
    private readonly repo: CustomersRepository,
    /** Follow-ups in the analytics service: scrubbing a deleted customer, recording a created one. */
    private readonly followUps: { scrub: Retrier; register: Retrier },
    /** Signs and checks list cursors. */
    private readonly cursors: CursorCodec,
  ) {}

  async listCustomers(req: ListCustomersRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    const query = checkListQuery(v, req);
    const filters = checkFilters(v, req);
    if (req.cursor !== undefined && req.page !== undefined) v.add("page", "is not allowed with cursor");
    v.throwIfAny();
    const scope: CursorScope = { workspaceId: req.workspaceId, sortOrder: query.sortOrder, filters: canonicalFilters(filters) };
    const { limit, sortOrder } = query;
    const nextCursor = (docs: CustomerDoc[], hasMore: boolean, span: number) => {
      const last = docs[docs.length - 1];
      // The next page looks a quarter further than this one spanned: usually one window (keyset.ts).
      return hasMore && last !== undefined ? { nextCursor: this.cursors.encode({ t: last.createdAt.getTime(), id: last._id, span: Math.ceil(span * 1.25) }, scope) } : {};
    };

    if (req.cursor !== undefined) {
      const from = this.cursors.decode(req.cursor, scope);
      if (from === null) {
        throw invalidArgument([{ field: "cursor", issue: "is not a cursor of this list: malformed or altered, or made for another workspace, sort order or filters" }]);
      }
      const page = await this.repo.page(req.workspaceId, filters, sortOrder, { from }, limit);
      return {
        customers: page.docs.map(toCustomer),
        pagination: {
          case: "cursor" as const,
          value: create(ListCustomersResponse_CursorPaginationSchema, { limit, hasMore: page.hasMore, ...nextCursor(page.docs, page.hasMore, page.spanMs) }),
        },
      };
    }

    const pageNo = query.page ?? 1;
    const { page, total } = await pageWithTotal(this.repo, req.workspaceId, filters, sortOrder, (pageNo - 1) * limit, limit);
    return {
      customers: page.docs.map(toCustomer),
      pagination: {
        case: "page" as const,
        value: create(ListCustomersResponse_PagePaginationSchema, {
          page: pageNo,
          limit,
          total: BigInt(total),
          totalPages: Math.ceil(total / limit),
          hasMore: page.hasMore,
          ...nextCursor(page.docs, page.hasMore, page.spanMs),
        }),
      },
    };
  }

  async countCustomers(req: CountCustomersRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    const filters = checkFilters(v, req);
    v.throwIfAny();
    return { count: BigInt(await this.repo.count(req.workspaceId, filters)) };
  }

  /**
   * Every live customer matching the filters, oldest first. Each batch is read from the
   * database when the caller asks for it, so the walk goes at the caller's pace and stops
   * when the caller goes away (the stream is cancelled and this generator returns).
   */
  async *exportCustomers(req: ExportCustomersRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    const filters = checkFilters(v, req);
    if (req.format !== undefined && !EXPORT_FORMATS.has(req.format)) v.add("format", "must be ndjson or csv");
    v.throwIfAny();
    for await (const batch of this.repo.walk(req.workspaceId, filters)) {
      if (batch.length > 0) yield { customers: batch.map(toCustomer) };
    }
  }

  async getCustomer(req: GetCustomerRequest) {
    return { customer: toCustomer(await this.resolve(req.workspaceId, req.id)) };
  }

  async createCustomer(req: CreateCustomerRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    checkExternalId(v, req.externalId);
    const patch = checkOptionalFields(v, req);
    v.throwIfAny();
    const { doc, created } = await this.repo.upsertByExternalId(req.workspaceId, req.externalId, patch, "overwrite");
    // Never throws: when analytics cannot be reached the sweeper records the creation later.
    if (created) await this.followUps.register.attempt(req.workspaceId, doc._id);
    return { customer: toCustomer(doc), created };
  }

  async updateCustomer(req: UpdateCustomerRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    v.throwIfAny();
    const fields = maskFields(v, req.updateMask?.paths ?? []);
    const patch: CustomerPatch = {};
    for (const f of fields) {
      switch (f) {
        case "externalId":
          if (req.externalId === undefined) v.add("externalId", "cannot be cleared");
          else {
            checkExternalId(v, req.externalId);
            patch.externalId = req.externalId;
          }
          break;
        case "metadata":
          if (req.metadata !== undefined) checkMetadata(v, req.metadata);
          patch.metadata = req.metadata ?? null;
          break;
        default: {
          const value = req[f];
          patch[f] = value === undefined ? null : (checkField(v, f, value) ?? null);
        }
      }
    }
    v.throwIfAny();
    const cur = await this.resolve(req.workspaceId, req.id);
    if (fields.size === 0) return { customer: toCustomer(cur) };
    const updated = await this.repo.update(req.workspaceId, cur._id, patch);
    if (updated === null) throw notFound();
    return { customer: toCustomer(updated) };
  }

  async deleteCustomer(req: DeleteCustomerRequest) {
    const cur = await this.resolve(req.workspaceId, req.id);
    const deleted = await this.repo.softDelete(req.workspaceId, cur._id);
    if (deleted === null) throw notFound();
    // Never throws: when analytics cannot be reached the sweeper finishes the scrub later.
    await this.followUps.scrub.attempt(req.workspaceId, cur._id);
    return { id: cur._id, deleted: true };
  }

  async stitchCustomer(req: StitchCustomerRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    checkExternalId(v, req.externalId);
    const patch = checkOptionalFields(v, { email: req.email, name: req.name, clickId: req.clickId });
    v.throwIfAny();
    const { doc, created } = await this.repo.upsertByExternalId(req.workspaceId, req.externalId, patch, "fill");
    return { customer: toCustomer(doc), created };
  }

  async stitchCustomers(req: StitchCustomersRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    if (req.items.length > MAX_STITCH_ITEMS) v.add("items", `at most ${MAX_STITCH_ITEMS} per call`);
    const seen = new Set<string>();
    for (const item of req.items) {
      if (seen.has(item.externalId)) v.add("items", `externalId "${item.externalId}" is given more than once`);
      seen.add(item.externalId);
    }
    v.throwIfAny();
    const results: Array<{ customer?: Customer; created?: boolean; invalid?: BadRequest }> = new Array(req.items.length);
    const valid: Array<{ index: number; externalId: string; patch: CustomerPatch }> = [];
    req.items.forEach((item, index) => {
      const iv = new Violations();
      checkExternalId(iv, item.externalId);
      const patch = checkOptionalFields(iv, { email: item.email, name: item.name, clickId: item.clickId });
      if (iv.empty) valid.push({ index, externalId: item.externalId, patch });
      else results[index] = { invalid: badRequest(iv.all) };
    });
    const stitched = await this.repo.stitchMany(req.workspaceId, valid);
    valid.forEach(({ index }, k) => (results[index] = { customer: toCustomer(stitched[k]!.doc), created: stitched[k]!.created }));
    return { results };
  }

  async setCustomerStats(req: SetCustomerStatsRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    if (req.customerId === "") v.add("customerId", "is required");
    const stats = checkStats(v, req.stats);
    if (req.version < 0n || req.version > BigInt(Number.MAX_SAFE_INTEGER)) v.add("version", `must be 0..${Number.MAX_SAFE_INTEGER}`);
    v.throwIfAny();
    const result = await this.repo.setStats(req.workspaceId, req.customerId, stats, Number(req.version));
    if (result === "not_found") throw notFound();
    return { applied: result === "applied" };
  }

  async setCustomersStats(req: SetCustomersStatsRequest) {
    const v = new Violations();
    checkWorkspaceId(v, req.workspaceId);
    if (req.items.length === 0) v.add("items", "at least one per call");
    if (req.items.length > MAX_STATS_ITEMS) v.add("items", `at most ${MAX_STATS_ITEMS} per call`);
    const seen = new Set<string>();
    const items = req.items.map((item, i) => {
      const at = `items[${i}]`;
      if (item.customerId === "") v.add(`${at}.customerId`, "is required");
      else if (seen.has(item.customerId)) v.add(`${at}.customerId`, "appears twice");
      seen.add(item.customerId);
      if (item.version < 0n || item.version > BigInt(Number.MAX_SAFE_INTEGER)) v.add(`${at}.version`, `must be 0..${Number.MAX_SAFE_INTEGER}`);
      return { customerId: item.customerId, stats: checkStats(v, item.stats, `${at}.`), version: Number(item.version) };
    });
    v.throwIfAny();
    return { applied: BigInt(await this.repo.setStatsMany(req.workspaceId, items)) };
  }

  /** The live customer an `id` argument names in this workspace; NOT_FOUND otherwise. */
  private async resolve(workspaceId: string, id: string): Promise<CustomerDoc> {
    const v = new Violations();
    checkWorkspaceId(v, workspaceId);
    v.throwIfAny();
    const ref = parseCustomerRef(id);
    if (ref === null) throw notFound();
    const doc = ref.kind === "id" ? await this.repo.findLive(workspaceId, ref.id) : await this.repo.findLiveByExternalId(workspaceId, ref.externalId);
    if (doc === null) throw notFound();
    return doc;
  }
}

/** `prefix`: where the stats sit in the request ("" for SetCustomerStats, "items[3]." for an item). */
function checkStats(v: Violations, stats: CustomerStats | undefined, prefix = ""): StatsDoc {
  const count = (field: string, n: bigint | undefined): number => {
    const x = n ?? 0n;
    if (x < 0n || x > BigInt(Number.MAX_SAFE_INTEGER)) v.add(`${prefix}stats.${field}`, `must be 0..${Number.MAX_SAFE_INTEGER}`);
    return Number(x);
  };
  if (stats?.currency !== undefined && !/^[A-Z]{3}$/.test(stats.currency)) v.add(`${prefix}stats.currency`, "must be an ISO 4217 code such as USD");
  return {
    leads: count("leads", stats?.leads),
    sales: count("sales", stats?.sales),
    revenue: count("revenue", stats?.revenue),
    currency: stats?.currency ?? null,
    firstSeenAt: dateOf(stats?.firstSeenAt),
    lastSeenAt: dateOf(stats?.lastSeenAt),
  };
}

function dateOf(ts: Timestamp | undefined): Date | null {
  return ts === undefined ? null : timestampDate(ts);
}

/** The API's view of a stored customer. */
export function toCustomer(doc: CustomerDoc): Customer {
  const opt = <K extends string>(k: K, v: string | null) => (v === null ? {} : ({ [k]: v } as Record<K, string>));
  const metadata = metadataOf(doc);
  const s = doc.stats;
  return create(CustomerSchema, {
    id: doc._id,
    externalId: doc.externalId ?? "",
    ...opt("email", doc.email),
    ...opt("name", doc.name),
    ...opt("avatar", doc.avatar),
    ...opt("country", doc.country),
    ...opt("clickId", doc.clickId),
    ...(metadata === null ? {} : { metadata }),
    createdAt: timestampFromDate(doc.createdAt),
    updatedAt: timestampFromDate(doc.updatedAt),
    stats: create(CustomerStatsSchema, {
      leads: BigInt(s.leads),
      sales: BigInt(s.sales),
      revenue: BigInt(s.revenue),
      ...opt("currency", s.currency),
      ...(s.firstSeenAt === null ? {} : { firstSeenAt: timestampFromDate(s.firstSeenAt) }),
      ...(s.lastSeenAt === null ? {} : { lastSeenAt: timestampFromDate(s.lastSeenAt) }),
    }),
  });
}
