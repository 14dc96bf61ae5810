/**
 * The write path and the rollup maintenance shared by every RPC.
 *
 * Ingestion of a batch (one event for the single Track* RPCs):
 *  1. validate (caller) and check sale currencies against the workspace's;
 *  2. resolve each distinct externalId once through customers.StitchCustomers — nothing is
 *     written before every customer is known, so a customers outage leaves no trace;
 *  3. read the owners of every click id the batch names and claim unowned ones
 *     (`click_owners`, insert-only: the first claim wins);
 *  4. write an `ingest_ops` marker, then insertMany the raw events (ordered:false; E11000 =
 *     replay, answered from the stored original);
 *  5. under the workspace's write lock: attach stored clicks that were claimed now, add the
 *     events to their customers' timelines ($addToSet, idempotent), fold the
 *     new events into each customer's `customer_totals` (compare-and-set on `version`,
 *     recording the op in `recentOps`), then $inc the rollup cells by the difference between
 *     the customer's old and new contribution (one bulkWrite for the whole batch);
 *  6. delete the marker; push the changed customers' stats (versioned) to customers.
 *
 * Crash windows: before 4 nothing but click claims exist (harmless: they only say whose a click
 * is). Between 4 and the totals write, the marker stays and the sweeper folds the op's events
 * later (`recentOps` makes that idempotent). Between a totals write and the end of its cell
 * $incs the marker also stays; the sweeper then finds the op already in `recentOps`, cannot
 * know which cells got their share, and logs the workspace for `RebuildWorkspace`, which
 * recomputes every total and cell from the raw events.
 */
import { performance } from "node:perf_hooks";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { CustomersService, WorkspacesService } from "@linquid/contracts";
import { invalidArgument, newId, violationsIn, type Logger } from "@linquid/mesh";
import { timelineEntry, type AnalyticsRepository, type ClickOwnerDoc, type EventDoc, type TotalsDoc } from "./repository.js";
import { accumulate, contributions, anchorMember, diffCells, emptyTotals, foldEvents, nonZero, type CellDelta, type AnchorMember, type TotalsState } from "./totals.js";
import type { IncomingEvent } from "./validation.js";

export interface TrackOutcome {
  eventId: string;
  customerId: string | null;
  duplicate: boolean;
  failure?: ConnectError;
}

/** Runs calls with the same key one after another (in this process). */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev === undefined ? mine : prev.then(() => mine);
    this.tails.set(key, tail);
    if (prev !== undefined) await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

export function stateOf(doc: TotalsDoc | undefined): TotalsState {
  if (doc === undefined) return emptyTotals();
  const { leads, sales, revenue, clicks, customEvents, firstTouch, lastTouch, firstClick, firstSaleAt, links, campaigns, sources, revenueByMonth } = doc;
  return { leads, sales, revenue, clicks, customEvents, firstTouch, lastTouch, firstClick, firstSaleAt, links, campaigns, sources, revenueByMonth, createdAt: doc.createdAt ?? null };
}

function totalsDoc(ws: string, customerId: string, s: TotalsState, version: number, recentOps: string[]): TotalsDoc {
  return { _id: `${ws}:${customerId}`, workspaceId: ws, customerId, ...s, version, recentOps, updatedAt: new Date() };
}

const RECENT_OPS = 32;

/** Items per StitchCustomers call (the customers service takes up to 1,000). */
const STITCH_BATCH = 1000;

function isUnavailable(err: unknown): boolean {
  const ce = ConnectError.from(err);
  return ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded || ce.code === Code.Canceled;
}

export class AnalyticsEngine {
  private readonly currencies = new Map<string, string>();
  readonly lock = new KeyedLock();

  constructor(
    readonly repo: AnalyticsRepository,
    private readonly customers: () => Client<typeof CustomersService>,
    private readonly workspaces: () => Client<typeof WorkspacesService>,
    private readonly logger: Logger,
  ) {}

  /** The workspace's reporting currency, cached in-process (it never changes). */
  async currency(ws: string): Promise<string> {
    const hit = this.currencies.get(ws);
    if (hit !== undefined) return hit;
    let currency: string;
    try {
      const res = await this.workspaces().getWorkspace({ id: ws });
      currency = res.workspace?.currency ?? "USD";
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.NotFound) throw new ConnectError("workspace not found", Code.NotFound);
      if (isUnavailable(ce)) throw new ConnectError("workspaces service unavailable", Code.Unavailable, undefined, undefined, ce);
      throw ce;
    }
    this.currencies.set(ws, currency);
    return currency;
  }

  /** Ingests validated events of one workspace; one outcome per input, in order. */
  async ingest(ws: string, events: readonly IncomingEvent[]): Promise<TrackOutcome[]> {
    const t0 = performance.now();
    const phase: Record<string, number> = {};
    const mark = (name: string) => (phase[name] = Math.round(performance.now() - t0));
    const out: Array<TrackOutcome | undefined> = new Array(events.length);
    // Sales in another currency are rejected, never mixed.
    if (events.some((e) => e.type === "sale")) {
      const currency = await this.currency(ws);
      events.forEach((e, i) => {
        if (e.type === "sale" && e.currency !== currency) {
          out[i] = { eventId: "", customerId: null, duplicate: false, failure: invalidArgument([{ field: "currency", issue: `must be the workspace's reporting currency ${currency}` }]) };
        }
      });
    }

    // Within one batch, a repeated key is a replay of its first occurrence.
    const primary = new Map<string, number>();
    const sameAs = new Map<number, number>();
    events.forEach((e, i) => {
      if (out[i] !== undefined) return;
      const first = primary.get(e._id);
      if (first === undefined) primary.set(e._id, i);
      else sameAs.set(i, first);
    });
    const live = [...primary.values()];

    // Customers: one stitch per distinct externalId, with the first email/name/clickId given.
    const stitchArgs = new Map<string, { email?: string; name?: string; clickId?: string }>();
    for (const i of live) {
      const e = events[i]!;
      if (e.externalId === undefined) continue;
      const a = stitchArgs.get(e.externalId) ?? {};
      if (a.email === undefined && e.email !== undefined) a.email = e.email;
      if (a.name === undefined && e.name !== undefined) a.name = e.name;
      if (a.clickId === undefined && e.clickId !== undefined) a.clickId = e.clickId;
      stitchArgs.set(e.externalId, a);
    }
    const customerOf = new Map<string, { id: string; clickId: string | undefined } | ConnectError>();
    const customers = this.customers();
    const items = [...stitchArgs].map(([externalId, a]) => ({ externalId, ...a }));
    for (let i = 0; i < items.length; i += STITCH_BATCH) {
      const part = items.slice(i, i + STITCH_BATCH);
      let results;
      try {
        ({ results } = await customers.stitchCustomers({ workspaceId: ws, items: part }));
      } catch (err) {
        const ce = ConnectError.from(err);
        if (isUnavailable(ce)) throw new ConnectError("customers service unavailable", Code.Unavailable, undefined, undefined, ce);
        throw new ConnectError("customer stitching failed", Code.Internal, undefined, undefined, ce);
      }
      part.forEach(({ externalId }, k) => {
        const r = results[k];
        if (r?.customer !== undefined) customerOf.set(externalId, { id: r.customer.id, clickId: r.customer.clickId });
        else if (r?.invalid !== undefined) customerOf.set(externalId, invalidArgument(violationsIn(r.invalid)));
        else throw new ConnectError("customer stitching answered without a result", Code.Internal);
      });
    }
    mark("stitch");
    const toStore: number[] = [];
    for (const i of live) {
      const e = events[i]!;
      const c = e.externalId === undefined ? undefined : customerOf.get(e.externalId);
      if (c instanceof ConnectError) out[i] = { eventId: "", customerId: null, duplicate: false, failure: c };
      else toStore.push(i);
    }

    // Click ownership: read, then claim what nobody owns yet (first claim wins).
    const claims = new Map<string, string>();
    for (const i of toStore) {
      const e = events[i]!;
      if (e.type === "click" || e.externalId === undefined) continue;
      const c = customerOf.get(e.externalId) as { id: string; clickId: string | undefined };
      if (e.clickId !== undefined && !claims.has(e.clickId)) claims.set(e.clickId, c.id);
    }
    for (const c of customerOf.values()) {
      if (!(c instanceof ConnectError) && c.clickId !== undefined && !claims.has(c.clickId)) claims.set(c.clickId, c.id);
    }
    const clickIds = toStore.filter((i) => events[i]!.type === "click").map((i) => events[i]!.clickId!);
    const owners = await this.repo.findOwners(ws, [...clickIds, ...claims.keys()]);
    const now = new Date();
    const newClaims: ClickOwnerDoc[] = [...claims]
      .filter(([clickId]) => !owners.has(clickId))
      .map(([clickId, customerId]) => ({ _id: `${ws}:${clickId}`, workspaceId: ws, clickId, customerId, claimedAt: now }));
    const won = newClaims.length > 0 ? await this.repo.claimClicks(newClaims) : new Set<string>();
    for (const c of newClaims) if (won.has(c.clickId)) owners.set(c.clickId, c.customerId);
    const lost = newClaims.filter((c) => !won.has(c.clickId)).map((c) => c.clickId);
    if (lost.length > 0) for (const [k, v] of await this.repo.findOwners(ws, lost)) owners.set(k, v);

    mark("owners");
    // Raw events, after the marker.
    const opId = newId("op");
    const docs: EventDoc[] = toStore.map((i) => {
      const { keyed: _keyed, ...e } = events[i]!;
      const customerId = e.type === "click" ? (owners.get(e.clickId!) ?? null) : (customerOf.get(e.externalId!) as { id: string }).id;
      return { ...e, workspaceId: ws, customerId, opId, receivedAt: now };
    });
    if (docs.length === 0) return this.finishOutcomes(out, sameAs, events);
    await this.repo.startOp({ _id: opId, workspaceId: ws, eventIds: [...docs.map((d) => d._id), ...[...won].map((c) => `${ws}:click:${c}`)], startedAt: now });
    const dups = await this.repo.insertEvents(docs);
    const originals = new Map((await this.repo.findEvents([...dups])).map((d) => [d._id, d]));
    docs.forEach((d, k) => {
      const i = toStore[k]!;
      const orig = dups.has(d._id) ? originals.get(d._id) : undefined;
      out[i] = orig === undefined ? { eventId: d.eventId, customerId: d.customerId, duplicate: dups.has(d._id) } : { eventId: orig.eventId, customerId: orig.customerId, duplicate: true };
      if (d.type === "click") out[i]!.customerId = null;
    });
    const fresh = docs.filter((d) => !dups.has(d._id));
    // Clicks claimed now that this batch did not store itself (absent, or a replay of a click
    // stored unowned earlier) may sit in the database unowned: attach them.
    const freshClickIds = new Set(fresh.filter((d) => d.type === "click").map((d) => d.clickId!));
    const attachCandidates = [...won].filter((c) => !freshClickIds.has(c));
    mark("insert");

    const changed = await this.lock.run(ws, async () => {
      const fold: EventDoc[] = fresh.filter((d) => d.customerId !== null);
      // Stored clicks claimed by this batch, and clicks of this batch claimed meanwhile.
      const unowned = fresh.filter((d) => d.type === "click" && d.customerId === null).map((d) => d.clickId!);
      const lateOwners = unowned.length > 0 ? await this.repo.findOwners(ws, unowned) : new Map<string, string>();
      const attach: Array<[string, string]> = [...attachCandidates.map((c) => [c, owners.get(c)!] as [string, string]), ...lateOwners];
      for (const [clickId, customerId] of attach) {
        const click = await this.repo.attachClick(`${ws}:click:${clickId}`, customerId, opId);
        if (click !== null) fold.push(click);
      }
      return this.foldInto(ws, opId, fold);
    });
    mark("fold");
    await this.repo.endOp(opId);
    // A single event's caller sees the customer's stats at once; batches (bulk loads) push in
    // the background, coalesced per customer, so the customers service does not pace ingestion.
    if (events.length === 1) await this.pushStats(ws, changed);
    else this.queueStats(ws, changed);
    mark("stats");
    this.logger.debug("ingested", { workspaceId: ws, events: events.length, customers: stitchArgs.size, ms: phase });
    return this.finishOutcomes(out, sameAs, events);
  }

  private finishOutcomes(out: Array<TrackOutcome | undefined>, sameAs: Map<number, number>, events: readonly IncomingEvent[]): TrackOutcome[] {
    for (const [i, first] of sameAs) {
      const o = out[first]!;
      out[i] = o.failure !== undefined ? o : { eventId: o.eventId, customerId: events[i]!.type === "click" ? null : o.customerId, duplicate: true };
    }
    return out as TrackOutcome[];
  }

  /**
   * Folds events into their customers' totals and moves the rollup cells accordingly. Call
   * under the workspace lock. Returns the totals written.
   */
  async foldInto(ws: string, opId: string, events: readonly EventDoc[]): Promise<TotalsDoc[]> {
    const byCustomer = new Map<string, EventDoc[]>();
    for (const e of events) {
      if (e.customerId === null) continue;
      const list = byCustomer.get(e.customerId) ?? [];
      list.push(e);
      byCustomer.set(e.customerId, list);
    }
    if (byCustomer.size === 0) return [];
    // Timelines first: adding is idempotent, so a crash after it leaves nothing to undo.
    await this.repo.addToTimelines(ws, byCustomer);
    let current = await this.repo.findTotals(ws, [...byCustomer.keys()]);
    const deltas = new Map<string, CellDelta>();
    const moves: Array<{ before: AnchorMember | null; after: AnchorMember | null }> = [];
    const written: TotalsDoc[] = [];
    let pending = [...byCustomer.keys()];
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) {
        if (attempt > 20) throw new ConnectError("customer totals keep changing; retry", Code.Unavailable);
        current = await this.repo.findTotals(ws, pending);
      }
      const retry: string[] = [];
      await mapLimit(pending, 8, async (customerId) => {
        const doc = current.get(customerId);
        if (doc?.recentOps.includes(opId)) return; // already folded (recovery)
        const before = stateOf(doc);
        const after = foldEvents(before, byCustomer.get(customerId)!);
        const next = totalsDoc(ws, customerId, after, (doc?.version ?? 0) + 1, [...(doc?.recentOps ?? []), opId].slice(-RECENT_OPS));
        if (!(await this.repo.writeTotals(next, doc?.version ?? 0))) {
          retry.push(customerId);
          return;
        }
        accumulate(deltas, contributions(ws, before), -1);
        accumulate(deltas, contributions(ws, after), 1);
        moves.push({ before: anchorMember(customerId, before), after: anchorMember(customerId, after) });
        written.push(next);
      });
      pending = retry;
    }
    await this.repo.applyDeltas(nonZero(deltas));
    await this.repo.moveMembers(ws, moves);
    return written;
  }

  /** Moves one customer's rollup cells and member entry from its old totals to its new ones. */
  private async moveCustomer(ws: string, customerId: string, before: TotalsState, after: TotalsState): Promise<void> {
    await this.repo.applyDeltas(diffCells(ws, before, after));
    await this.repo.moveMembers(ws, [{ before: anchorMember(customerId, before), after: anchorMember(customerId, after) }]);
  }

  /** Rebuilds one customer from its raw events. Call under the workspace lock. */
  async recalculate(ws: string, customerId: string): Promise<{ before: TotalsState; after: TotalsState; doc: TotalsDoc }> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const doc = (await this.repo.findTotals(ws, [customerId])).get(customerId);
      const events = await this.repo.customerEvents(ws, customerId);
      await this.repo.setTimeline(ws, customerId, events);
      const before = stateOf(doc);
      const after = foldEvents({ ...emptyTotals(), createdAt: before.createdAt }, events);
      const ops = [...new Set([...(doc?.recentOps ?? []), ...events.map((e) => e.opId)])].slice(-RECENT_OPS);
      const next = totalsDoc(ws, customerId, after, (doc?.version ?? 0) + 1, ops);
      if (!(await this.repo.writeTotals(next, doc?.version ?? 0))) continue;
      await this.moveCustomer(ws, customerId, before, after);
      return { before, after, doc: next };
    }
    throw new ConnectError("customer totals keep changing; retry", Code.Unavailable);
  }

  /** Rebuilds every total, timeline and rollup cell of a workspace from its raw events. Call under the workspace lock. */
  async rebuild(ws: string): Promise<{ customers: number; events: number }> {
    const versions = new Map<string, number>();
    const createdAt = new Map<string, Date>();
    for await (const t of this.repo.workspaceTotals(ws)) {
      versions.set(t.customerId, t.version);
      if (t.createdAt != null) createdAt.set(t.customerId, t.createdAt);
    }
    const byCustomer = new Map<string, TotalsState>([...createdAt].map(([id, at]) => [id, { ...emptyTotals(), createdAt: at }]));
    const opsOf = new Map<string, string[]>();
    const timelineOf = new Map<string, string[]>();
    let events = 0;
    for await (const e of this.repo.workspaceEvents(ws)) {
      events++;
      if (e.customerId === null) continue;
      byCustomer.set(e.customerId, foldEvents(byCustomer.get(e.customerId) ?? emptyTotals(), [e]));
      const ops = opsOf.get(e.customerId) ?? [];
      ops.push(e.opId);
      opsOf.set(e.customerId, ops);
      const timeline = timelineOf.get(e.customerId) ?? [];
      timeline.push(timelineEntry(e));
      timelineOf.set(e.customerId, timeline);
    }
    await this.repo.dropWorkspaceRollups(ws);
    const docs = [...byCustomer].map(([id, s]) => totalsDoc(ws, id, s, (versions.get(id) ?? 0) + 1, [...new Set(opsOf.get(id))].slice(-RECENT_OPS)));
    await this.repo.insertTotalsMany(docs);
    await this.repo.insertTimelinesMany([...timelineOf].map(([customerId, entries]) => ({ _id: `${ws}:${customerId}`, workspaceId: ws, customerId, entries })));
    const deltas = new Map<string, CellDelta>();
    const members = new Map<string, string[]>();
    for (const [id, s] of byCustomer) {
      accumulate(deltas, contributions(ws, s), 1);
      const m = anchorMember(id, s);
      if (m === null) continue;
      const list = members.get(m.hour) ?? [];
      list.push(m.entry);
      members.set(m.hour, list);
    }
    await this.repo.applyDeltas(nonZero(deltas));
    await this.repo.insertMembersMany([...members].map(([hour, entries]) => ({ _id: `${ws}|${hour}`, workspaceId: ws, hour, entries })));
    await this.pushStats(ws, docs);
    return { customers: docs.length, events };
  }

  /**
   * Records a customer's creation time (RegisterCustomer); moves it into the cohort of that time
   * when it has no touchpoint. Call under the workspace lock. Null when it was known already.
   */
  async register(ws: string, customerId: string, createdAt: Date): Promise<TotalsDoc | null> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const doc = (await this.repo.findTotals(ws, [customerId])).get(customerId);
      const before = stateOf(doc);
      if (before.createdAt !== null) return null;
      const after = { ...before, createdAt };
      const next = totalsDoc(ws, customerId, after, (doc?.version ?? 0) + 1, doc?.recentOps ?? []);
      if (!(await this.repo.writeTotals(next, doc?.version ?? 0))) continue;
      await this.moveCustomer(ws, customerId, before, after);
      return next;
    }
    throw new ConnectError("customer totals keep changing; retry", Code.Unavailable);
  }

  /** Finishes ingestions whose process died midway (see the file comment). */
  async recover(olderThanMs = 60_000): Promise<number> {
    const ops = await this.repo.staleOps(new Date(Date.now() - olderThanMs));
    for (const op of ops) {
      const changed = await this.lock.run(op.workspaceId, async () => {
        const events = (await this.repo.findEvents(op.eventIds)).filter((e) => e.opId === op._id && e.customerId !== null);
        const customerIds = [...new Set(events.map((e) => e.customerId!))];
        const current = await this.repo.findTotals(op.workspaceId, customerIds);
        if (customerIds.some((c) => current.get(c)?.recentOps.includes(op._id))) {
          this.logger.error("an interrupted ingestion may have left rollup cells short; run RebuildWorkspace", { workspaceId: op.workspaceId, opId: op._id });
        }
        return this.foldInto(op.workspaceId, op._id, events);
      });
      await this.repo.endOp(op._id);
      await this.pushStats(op.workspaceId, changed);
    }
    return ops.length;
  }

  private readonly statsQueue = new Map<string, { ws: string; doc: TotalsDoc }>();
  private draining: Promise<void> | undefined;

  /** Queues stats pushes; a newer version of a queued customer replaces the older one. */
  queueStats(ws: string, docs: readonly TotalsDoc[]): void {
    for (const doc of docs) {
      const key = `${ws}:${doc.customerId}`;
      const queued = this.statsQueue.get(key);
      if (queued === undefined || queued.doc.version < doc.version) this.statsQueue.set(key, { ws, doc });
    }
    if (this.statsQueue.size > 0) this.draining ??= this.drain().finally(() => (this.draining = undefined));
  }

  private async drain(): Promise<void> {
    while (this.statsQueue.size > 0) {
      const take = [...this.statsQueue].slice(0, 64);
      for (const [key] of take) this.statsQueue.delete(key);
      const byWs = new Map<string, TotalsDoc[]>();
      for (const [, { ws, doc }] of take) byWs.set(ws, [...(byWs.get(ws) ?? []), doc]);
      for (const [ws, docs] of byWs) await this.pushStats(ws, docs);
    }
  }

  /** Waits until every queued stats push was sent. */
  async flushStats(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
  }

  /** Pushes customers' stats; versions keep a late push from overwriting a newer one. */
  async pushStats(ws: string, docs: readonly TotalsDoc[]): Promise<void> {
    if (docs.length === 0) return;
    const currency = await this.currency(ws).catch(() => undefined);
    const customers = this.customers();
    await mapLimit(docs, 8, async (d) => {
      try {
        await customers.setCustomerStats({
          workspaceId: ws,
          customerId: d.customerId,
          version: BigInt(d.version),
          stats: {
            leads: BigInt(d.leads),
            sales: BigInt(d.sales),
            revenue: BigInt(d.revenue),
            ...(currency !== undefined ? { currency } : {}),
            ...(d.firstTouch !== null ? { firstSeenAt: timestampFromDate(d.firstTouch.at) } : {}),
            ...(d.lastTouch !== null ? { lastSeenAt: timestampFromDate(d.lastTouch.at) } : {}),
          },
        });
      } catch (err) {
        // The next change of this customer pushes again; RecalculateLtv pushes on demand.
        this.logger.warn("could not push customer stats", { workspaceId: ws, customerId: d.customerId, code: Code[ConnectError.from(err).code] });
      }
    });
  }
}
