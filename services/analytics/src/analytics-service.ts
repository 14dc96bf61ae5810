/**
 * AnalyticsService: event tracking, cohort/LTV/journey/attribution reads, recalculation and
 * the PII scrub. Validation and answer shapes live here; the write path in ingestion.ts, totals
 * and rollups in rollups.ts, cohort math in reads.ts.
 */
import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client, type ServiceImpl } from "@connectrpc/connect";
import {
  AttributionSchema,
  CohortSchema,
  IngestResultSchema,
  JourneySummarySchema,
  LtvCohortSchema,
  PaginationSchema,
  TouchpointSchema,
  type AnalyticsService,
  type CustomersService,
  type GetAttributionRequest,
  type GetCohortsRequest,
  type GetJourneyRequest,
  type GetJourneySummaryRequest,
  type GetLtvCohortsRequest,
  type GetRebuildProgressRequest,
  type GetWorkspaceAttributionRequest,
  type IngestEventsRequest,
  type ListSnapshotInvalidationsRequest,
  type RebuildWorkspaceRequest,
  type RecalculateLtvRequest,
  type RegisterCustomerRequest,
  type ScrubCustomerRequest,
  type Touch as TouchMsg,
  type TrackBatchRequest,
  type TrackClickRequest,
  type TrackEventRequest,
  type TrackLeadRequest,
  type TrackSaleRequest,
} from "@linquid/contracts";
import { isUnavailable, unavailable, Violations } from "@linquid/mesh";
import { decodeItem, itemError, MAX_REST_BATCH } from "./batch-items.js";
import { customerCredits, DEFAULT_HALF_LIFE_DAYS, MODELS, type Credit, type Model } from "./attribution.js";
import { DIMENSIONS, type AttributionDimension } from "./attribution-cells.js";
import { workspaceAttribution } from "./attribution-report.js";
import { checkDayRange, checkRange } from "./dates.js";
import type { Coalescer } from "./coalescer.js";
import type { Ingestion, TrackOutcome } from "./ingestion.js";
import type { SnapshotInvalidations } from "./invalidations.js";
import { cohorts, ltvCohorts } from "./reads.js";
import type { AnalyticsRepository, TotalsDoc } from "./repository.js";
import { stateOf, type Rollups } from "./rollups.js";
import type { StatsPusher } from "./stats-push.js";
import type { WorkspaceCurrencies } from "./workspace-currency.js";
import { emptyTotals, foldEvents, type CohortDimension, type Touch, type TouchCount, type TotalsState } from "./totals.js";
import { checkClick, checkCustom, checkLead, checkSale, checkTracked, checkWorkspaceId, type IncomingEvent } from "./validation.js";

const GROUP_BY: readonly CohortDimension[] = ["week", "month", "campaign", "source"];
export const MAX_BATCH = 10_000;

/** Wraps a read so a failing query answers Internal (ANALYTICS_ERROR at the gateway); the rest passes. */
async function query<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw ConnectError.from(err, Code.Internal);
  }
}

function touchMsg(t: Touch | null): TouchMsg | undefined {
  if (t === null) return undefined;
  return {
    $typeName: "linquid.analytics.v1.Touch",
    type: t.type,
    timestamp: timestampFromDate(t.at),
    ...(t.clickId !== null ? { clickId: t.clickId } : {}),
    ...(t.linkId !== null ? { linkId: t.linkId } : {}),
    ...(t.campaignId !== null ? { campaignId: t.campaignId } : {}),
    ...(t.source !== null ? { source: t.source } : {}),
  } as TouchMsg;
}

/** Most touches first, then by id. */
export function sortTouchCounts(list: readonly TouchCount[]): TouchCount[] {
  return [...list].sort((a, b) => b.touches - a.touches || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

const totalsOf = (s: TotalsState) => ({ leads: BigInt(s.leads), sales: BigInt(s.sales), revenue: BigInt(s.revenue) });

/** What the handler works with. */
export interface AnalyticsParts {
  readonly repo: AnalyticsRepository;
  readonly ingestion: Pick<Ingestion, "ingest">;
  /** Single tracking calls, gathered into batches (coalescer.ts). */
  readonly tracking: Pick<Coalescer<IncomingEvent, TrackOutcome>, "submit">;
  /** Registrations, gathered into batches (coalescer.ts, Rollups.registerMany). */
  readonly registrations: Pick<Coalescer<{ customerId: string; createdAt: Date }, TotalsDoc | null>, "submit">;
  readonly rollups: Pick<Rollups, "recalculate" | "rebuild">;
  readonly stats: Pick<StatsPusher, "push">;
  readonly currencies: Pick<WorkspaceCurrencies, "of">;
  readonly invalidations: Pick<SnapshotInvalidations, "since">;
}

export class AnalyticsHandler implements ServiceImpl<typeof AnalyticsService> {
  constructor(
    private readonly parts: AnalyticsParts,
    private readonly customers: () => Client<typeof CustomersService>,
    private readonly now: () => number = Date.now,
  ) {}

  private async trackOne(ws: string, check: () => IncomingEvent) {
    checkWorkspaceId(ws);
    const event = check();
    const o = await this.parts.tracking.submit(ws, event);
    if (o.failure !== undefined) throw o.failure;
    return answer(o);
  }

  trackClick(req: TrackClickRequest) {
    return this.trackOne(req.workspaceId, () => checkClick(req.workspaceId, req, this.now()));
  }
  trackLead(req: TrackLeadRequest) {
    return this.trackOne(req.workspaceId, () => checkLead(req.workspaceId, req, this.now()));
  }
  trackSale(req: TrackSaleRequest) {
    return this.trackOne(req.workspaceId, () => checkSale(req.workspaceId, req, this.now()));
  }
  trackEvent(req: TrackEventRequest) {
    return this.trackOne(req.workspaceId, () => checkCustom(req.workspaceId, req, this.now()));
  }

  async trackBatch(req: TrackBatchRequest) {
    checkWorkspaceId(req.workspaceId);
    if (req.events.length > MAX_BATCH) new Violations().add("events", `at most ${MAX_BATCH} per call`).throwIfAny();
    const now = this.now();
    const checked = req.events.map((e) => checkTracked(req.workspaceId, e, now));
    const valid: IncomingEvent[] = [];
    const at: number[] = [];
    checked.forEach((c, i) => {
      if (!("error" in c)) {
        valid.push(c);
        at.push(i);
      }
    });
    const outcomes = await this.parts.ingestion.ingest(req.workspaceId, valid);
    const results: Array<{ eventId: string; customerId?: string; duplicate: boolean; error?: string } | undefined> = checked.map((c) =>
      "error" in c ? { eventId: "", duplicate: false, error: c.error } : undefined,
    );
    outcomes.forEach((o, k) => {
      results[at[k]!] =
        o.failure !== undefined ? { eventId: "", duplicate: false, error: o.failure.rawMessage } : { ...answer(o) };
    });
    return { results: results.map((r) => r!) };
  }

  async ingestEvents(req: IngestEventsRequest) {
    const ws = req.workspaceId;
    const v = new Violations();
    if (ws === "") v.add("workspaceId", "is required");
    if (req.events.length === 0 || req.events.length > MAX_REST_BATCH) v.add("events", `must hold 1 to ${MAX_REST_BATCH.toLocaleString("en-US")} items`);
    v.throwIfAny();
    const now = this.now();
    const decoded = req.events.map((item) => {
      try {
        return decodeItem(ws, toJson(ValueSchema, item), now);
      } catch (err) {
        if (itemError(err) === null) throw err;
        return err as ConnectError;
      }
    });
    const valid = decoded.filter((d): d is IncomingEvent => !(d instanceof ConnectError));
    const outcomes = await this.parts.ingestion.ingest(ws, valid);
    let k = 0;
    return {
      results: decoded.map((d) => {
        const o: TrackOutcome | undefined = d instanceof ConnectError ? undefined : outcomes[k++];
        const error = o === undefined ? itemError(d) : o.failure !== undefined ? itemError(o.failure) : undefined;
        if (error === null) throw o!.failure!; // not the item's own fault: the whole call fails
        if (error !== undefined) return create(IngestResultSchema, { error });
        return create(IngestResultSchema, answer(o!));
      }),
    };
  }

  async getCohorts(req: GetCohortsRequest) {
    const v = new Violations();
    if (req.workspaceId === "") v.add("workspaceId", "is required");
    const groupBy = (req.groupBy ?? "week") as CohortDimension;
    if (!GROUP_BY.includes(groupBy)) v.add("group_by", `must be one of ${GROUP_BY.join(", ")}`);
    const range = checkRange(v, req.start, req.end);
    v.throwIfAny();
    const rows = await query(() => cohorts(this.parts.repo, req.workspaceId, groupBy, range));
    return {
      cohorts: rows.map((r) =>
        create(CohortSchema, {
          ...(r.cohort !== null ? { cohort: r.cohort } : {}),
          customers: BigInt(r.customers),
          leads: BigInt(r.leads),
          sales: BigInt(r.sales),
          revenue: BigInt(r.revenue),
          conversionRate: r.conversionRate,
        }),
      ),
    };
  }

  async getLtvCohorts(req: GetLtvCohortsRequest) {
    const v = new Violations();
    if (req.workspaceId === "") v.add("workspaceId", "is required");
    const months = req.months ?? 12;
    if (!Number.isInteger(months) || months < 1 || months > 24) v.add("months", "must be an integer 1..24");
    v.throwIfAny();
    const rows = await query(() => ltvCohorts(this.parts.repo, req.workspaceId, months, new Date(this.now())));
    return {
      cohorts: rows.map((r) =>
        create(LtvCohortSchema, {
          cohort: r.cohort,
          customers: BigInt(r.customers),
          revenue: r.revenue.map(BigInt),
          cumulativeRevenue: r.cumulativeRevenue.map(BigInt),
          ltv: r.ltv,
        }),
      ),
    };
  }

  /** The live customer an id names; NotFound for deleted and unknown ones (customers decides). */
  private async resolve(ws: string, id: string): Promise<string> {
    const v = new Violations();
    if (ws === "") v.add("workspaceId", "is required");
    if (id === "") v.add("id", "is required");
    v.throwIfAny();
    try {
      const res = await this.customers().getCustomer({ workspaceId: ws, id });
      return res.customer!.id;
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.NotFound || ce.code === Code.InvalidArgument) throw new ConnectError("customer not found", Code.NotFound);
      if (isUnavailable(ce)) throw unavailable("customers service", ce);
      throw ce;
    }
  }

  async recalculateLtv(req: RecalculateLtvRequest) {
    const customerId = await this.resolve(req.workspaceId, req.id);
    const r = await this.parts.rollups.recalculate(req.workspaceId, customerId);
    await this.parts.stats.push(req.workspaceId, [r.doc]);
    return { customerId, before: totalsOf(r.before), after: totalsOf(r.after) };
  }

  async getJourney(req: GetJourneyRequest) {
    const v = new Violations();
    const page = req.page ?? 1;
    const limit = req.limit ?? 100;
    if (!Number.isInteger(page) || page < 1) v.add("page", "must be an integer >= 1");
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) v.add("limit", "must be an integer 1..1000");
    const range = checkRange(v, req.start, req.end);
    v.throwIfAny();
    const customerId = await this.resolve(req.workspaceId, req.id);
    const repo = this.parts.repo;
    const { events, total } = await query(() => repo.journey(req.workspaceId, customerId, range.start, range.end, (page - 1) * limit, limit));
    const totalPages = Math.ceil(total / limit);
    return {
      touchpoints: events.map((e) =>
        create(TouchpointSchema, {
          type: e.type,
          timestamp: timestampFromDate(e.at),
          ...(e.eventName !== undefined ? { eventName: e.eventName } : {}),
          ...(e.clickId !== undefined ? { clickId: e.clickId } : {}),
          ...(e.linkId !== undefined ? { linkId: e.linkId } : {}),
          ...(e.campaignId !== undefined ? { campaignId: e.campaignId } : {}),
          ...(e.source !== undefined ? { source: e.source } : {}),
          ...(e.amount !== undefined ? { amount: BigInt(e.amount) } : {}),
          ...(e.currency !== undefined ? { currency: e.currency } : {}),
        }),
      ),
      pagination: create(PaginationSchema, { page, limit, total: BigInt(total), totalPages, hasMore: page < totalPages }),
    };
  }

  async getJourneySummary(req: GetJourneySummaryRequest) {
    const v = new Violations();
    const range = checkRange(v, req.start, req.end);
    v.throwIfAny();
    const customerId = await this.resolve(req.workspaceId, req.id);
    const repo = this.parts.repo;
    const s: TotalsState = await query(async () =>
      range.start === undefined && range.end === undefined
        ? stateOf((await repo.findTotals(req.workspaceId, [customerId])).get(customerId))
        : foldEvents(emptyTotals(), (await repo.journey(req.workspaceId, customerId, range.start, range.end, 0, 0)).events),
    );
    const currency = await this.parts.currencies.of(req.workspaceId);
    return {
      summary: create(JourneySummarySchema, {
        ...(s.firstTouch !== null ? { firstSeenAt: timestampFromDate(s.firstTouch.at) } : {}),
        ...(s.lastTouch !== null ? { lastSeenAt: timestampFromDate(s.lastTouch.at) } : {}),
        clicks: BigInt(s.clicks),
        leads: BigInt(s.leads),
        sales: BigInt(s.sales),
        customEvents: BigInt(s.customEvents),
        revenue: BigInt(s.revenue),
        currency,
        ...(s.firstSaleAt !== null && s.firstTouch !== null
          ? { timeToFirstSaleSeconds: BigInt(Math.floor((s.firstSaleAt.getTime() - s.firstTouch.at.getTime()) / 1000)) }
          : {}),
      }),
    };
  }

  async getAttribution(req: GetAttributionRequest) {
    const v = new Violations();
    if (req.model !== undefined && !(MODELS as readonly string[]).includes(req.model)) v.add("model", `must be one of ${MODELS.join(", ")}`);
    const halfLifeDays = req.halfLifeDays ?? DEFAULT_HALF_LIFE_DAYS;
    if (!(halfLifeDays > 0 && halfLifeDays <= 3650)) v.add("halfLifeDays", "must be a number of days > 0 and <= 3650");
    v.throwIfAny();
    const customerId = await this.resolve(req.workspaceId, req.id);
    const model = req.model as Model | undefined;
    const [doc, credits] = await query(() =>
      Promise.all([
        this.parts.repo.findTotals(req.workspaceId, [customerId]).then((m) => m.get(customerId)),
        model === undefined ? Promise.resolve([]) : this.credits(req.workspaceId, customerId, model, halfLifeDays),
      ]),
    );
    const s = stateOf(doc);
    const counts = (list: readonly TouchCount[]) =>
      sortTouchCounts(list).map((t) => ({ id: t.id, touches: BigInt(t.touches), firstAt: timestampFromDate(t.firstAt), lastAt: timestampFromDate(t.lastAt) }));
    const first = touchMsg(s.firstTouch);
    const last = touchMsg(s.lastTouch);
    return {
      attribution: create(AttributionSchema, {
        ...(first !== undefined ? { firstTouch: first } : {}),
        ...(last !== undefined ? { lastTouch: last } : {}),
        links: counts(s.links),
        campaigns: counts(s.campaigns),
        sources: counts(s.sources),
        ...(model !== undefined ? { model } : {}),
        credits: credits.map((c) => ({
          ...(c.linkId !== null ? { linkId: c.linkId } : {}),
          ...(c.campaignId !== null ? { campaignId: c.campaignId } : {}),
          ...(c.source !== null ? { source: c.source } : {}),
          weight: c.weight,
          revenue: BigInt(c.revenue),
        })),
      }),
    };
  }

  async getWorkspaceAttribution(req: GetWorkspaceAttributionRequest) {
    const v = new Violations();
    if (req.workspaceId === "") v.add("workspaceId", "is required");
    if (req.model === undefined || req.model === "") v.add("model", `is required: one of ${MODELS.join(", ")}`);
    else if (!(MODELS as readonly string[]).includes(req.model)) v.add("model", `must be one of ${MODELS.join(", ")}`);
    if (req.groupBy === undefined || req.groupBy === "") v.add("group_by", `is required: one of ${DIMENSIONS.join(", ")}`);
    else if (!(DIMENSIONS as readonly string[]).includes(req.groupBy)) v.add("group_by", `must be one of ${DIMENSIONS.join(", ")}`);
    const range = checkDayRange(v, req.start, req.end);
    v.throwIfAny();
    const rows = await query(() => workspaceAttribution(this.parts.repo, req.workspaceId, req.model as Model, req.groupBy as AttributionDimension, range));
    return {
      rows: rows.map((r) => ({ ...(r.key !== null ? { key: r.key } : {}), revenue: BigInt(r.revenue), sales: BigInt(r.sales), customers: BigInt(r.customers) })),
    };
  }

  /** A customer's credits under a model, from its stored clicks and sales (attribution.ts). */
  private async credits(ws: string, customerId: string, model: Model, halfLifeDays: number): Promise<Credit[]> {
    const events = await this.parts.repo.customersClicksAndSales(ws, [customerId]);
    const clicks = events.filter((e) => e.type === "click").map((e) => ({ at: e.at, ref: e._id, linkId: e.linkId ?? null, campaignId: e.campaignId ?? null, source: e.source ?? null }));
    const sales = events.filter((e) => e.type === "sale").map((e) => ({ at: e.at, amount: e.amount ?? 0 }));
    return customerCredits(model, clicks, sales, halfLifeDays);
  }

  async scrubCustomer(req: ScrubCustomerRequest) {
    const v = new Violations();
    if (req.workspaceId === "") v.add("workspaceId", "is required");
    if (req.customerId === "") v.add("customerId", "is required");
    v.throwIfAny();
    return { scrubbedEvents: BigInt(await this.parts.repo.scrub(req.workspaceId, req.customerId)) };
  }

  async registerCustomer(req: RegisterCustomerRequest) {
    const v = new Violations();
    if (req.workspaceId === "") v.add("workspaceId", "is required");
    if (req.customerId === "") v.add("customerId", "is required");
    if (req.createdAt === undefined) v.add("createdAt", "is required");
    v.throwIfAny();
    const createdAt = timestampDate(req.createdAt!);
    const doc = await this.parts.registrations.submit(req.workspaceId, { customerId: req.customerId, createdAt });
    return { registered: doc !== null };
  }

  async rebuildWorkspace(req: RebuildWorkspaceRequest) {
    checkWorkspaceId(req.workspaceId);
    // An unknown workspace is refused (NOT_FOUND), not "rebuilt" to zeros.
    await this.parts.currencies.of(req.workspaceId);
    const r = await this.parts.rollups.rebuild(req.workspaceId);
    return { customers: BigInt(r.customers), events: BigInt(r.events) };
  }

  async getRebuildProgress(req: GetRebuildProgressRequest) {
    checkWorkspaceId(req.workspaceId);
    const lease = await query(() => this.parts.repo.findRebuildLease(req.workspaceId));
    if (lease === null || lease.until.getTime() <= this.now() || lease.progress === undefined) return { running: false, phase: "", eventsDone: 0n, eventsTotal: 0n };
    const p = lease.progress;
    return { running: true, phase: p.phase, eventsDone: BigInt(p.eventsDone), eventsTotal: BigInt(p.eventsTotal) };
  }

  async listSnapshotInvalidations(req: ListSnapshotInvalidationsRequest) {
    const page = await this.parts.invalidations.since(req.cursor);
    return { invalidations: page.entries.map((e) => ({ id: e.id, workspaceId: e.workspaceId })), cursor: page.cursor, complete: page.complete };
  }
}

function answer(o: TrackOutcome) {
  return { eventId: o.eventId, ...(o.customerId !== null ? { customerId: o.customerId } : {}), duplicate: o.duplicate };
}
