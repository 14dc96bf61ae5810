/**
 * Keeping customers' totals and the rollups derived from them: folding new events in,
 * registering a creation time, recalculating one customer, rebuilding a workspace.
 *
 * No lock, in this process or any other: each customer's totals move from version to version
 * by compare-and-set (`replaceOne({_id, version})`, or the insert of the first version), so every
 * transition before → after is won by exactly one writer; the winner then `$inc`s the cells by
 * contributions(after) − contributions(before). Increments commute, so the cells end up equal to
 * the sum of every customer's contributions whatever the order in which concurrent writers'
 * increments land. Member lists (bucketed, bucket-lists.ts) get the new anchor entry added; old
 * entries stay (entries are only added, so no interleaving of writers loses a current one), and
 * readers check candidates against the totals. Every write that changes totals
 * is recorded in `write_ops` while it runs (write-ops.ts) and its op id in the totals'
 * `recentOps`, so recovery can finish it and never fold it twice.
 */
import { newId, pauseBeforeRetry } from "@linquid/mesh";
import { AttributionRollups } from "./attribution-rollups.js";
import type { SnapshotInvalidations } from "./invalidations.js";
import type { AnalyticsRepository, EventDoc, TotalsDoc } from "./repository.js";
import type { StatsPusher } from "./stats-push.js";
import { accumulate, anchorMember, contributions, diffCells, emptyTotals, foldEvents, nonZero, type AnchorMember, type CellDelta, type TotalsState } from "./totals.js";
import type { WriteOps } from "./write-ops.js";

/** How many op ids a totals document remembers (recovery looks an op up there). */
const RECENT_OPS = 32;
/** How long a fold retries against concurrent writers of the same customers. */
const CONTENTION_MS = 15_000;
const CONTENDED = "customer totals keep changing; retry";
/** How often a rebuild records how far it has got (GetRebuildProgress). */
const PROGRESS_EVERY_MS = 250;

export function stateOf(doc: TotalsDoc | undefined): TotalsState {
  if (doc === undefined) return emptyTotals();
  const { leads, sales, revenue, clicks, customEvents, firstTouch, lastTouch, firstClick, firstSaleAt, links, campaigns, sources, revenueByMonth } = doc;
  return { leads, sales, revenue, clicks, customEvents, firstTouch, lastTouch, firstClick, firstSaleAt, links, campaigns, sources, revenueByMonth, createdAt: doc.createdAt ?? null };
}

function totalsDoc(ws: string, customerId: string, s: TotalsState, version: number, recentOps: string[]): TotalsDoc {
  return { _id: `${ws}:${customerId}`, workspaceId: ws, customerId, ...s, version, recentOps: recentOps.slice(-RECENT_OPS), updatedAt: new Date() };
}

/** The member entry a transition adds: the new anchor, when it moved. */
function movedAnchor(customerId: string, before: TotalsState, after: TotalsState): AnchorMember | null {
  const from = anchorMember(customerId, before);
  const to = anchorMember(customerId, after);
  return to === null || to.entry === from?.entry ? null : to;
}

export class Rollups {
  /** The workspace attribution cells, refreshed after every fold of a click or sale. */
  readonly attribution: AttributionRollups;

  constructor(
    readonly repo: AnalyticsRepository,
    private readonly ops: WriteOps,
    private readonly stats: StatsPusher,
    private readonly invalidations: Pick<SnapshotInvalidations, "record">,
  ) {
    this.attribution = new AttributionRollups(repo);
  }

  /**
   * Folds events into their customers' totals and moves the rollup cells and member entries
   * accordingly, as op `opId` (skipping customers that have it already). Returns the totals written.
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
    const { written, cells } = await this.transition(ws, opId, [...byCustomer.keys()], (c, before) => foldEvents(before, byCustomer.get(c)!));
    // Attribution reads the customers' stored clicks and sales (these events included: they were
    // stored before the fold), alongside the cell writes. Customers that already had the op
    // (recovery) are refreshed too: a refresh is idempotent.
    const credited = [...byCustomer].filter(([, list]) => list.some((e) => e.type === "click" || e.type === "sale")).map(([c]) => c);
    await Promise.all([cells, this.attribution.refresh(ws, credited)]);
    return [...written.values()];
  }

  /**
   * Moves customers' totals from their current state to `next(customer, current)` as op `opId`
   * (null: leave it), each by compare-and-set, retrying the customers another writer moved
   * first; customers that have the op already (recovery) are left. Then the cells and member
   * lists move by the winners' differences, in one bulk each: `cells`, already under way, for
   * the caller to await with whatever else it writes meanwhile. `written`: the totals written, by customer.
   */
  private async transition(
    ws: string,
    opId: string,
    customerIds: readonly string[],
    next: (customerId: string, before: TotalsState) => TotalsState | null,
  ): Promise<{ written: Map<string, TotalsDoc>; cells: Promise<unknown> }> {
    let current = await this.repo.findTotals(ws, customerIds);
    const deadline = Date.now() + CONTENTION_MS;
    const deltas = new Map<string, CellDelta>();
    const members: AnchorMember[] = [];
    const written = new Map<string, TotalsDoc>();
    let pending = [...customerIds];
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) {
        await pauseBeforeRetry(attempt, deadline, CONTENDED);
        current = await this.repo.findTotals(ws, pending);
      }
      const writes: Array<{ customerId: string; before: TotalsState; after: TotalsState; doc: TotalsDoc; expectedVersion: number }> = [];
      for (const customerId of pending) {
        const doc = current.get(customerId);
        if (doc?.recentOps.includes(opId)) continue; // already done (recovery)
        const before = stateOf(doc);
        const after = next(customerId, before);
        if (after === null) continue;
        const expectedVersion = doc?.version ?? 0;
        writes.push({ customerId, before, after, expectedVersion, doc: totalsDoc(ws, customerId, after, expectedVersion + 1, [...(doc?.recentOps ?? []), opId]) });
      }
      const lost = await this.writeAll(ws, opId, writes);
      for (const w of writes) {
        if (lost.has(w.customerId)) continue;
        accumulate(deltas, contributions(ws, w.before), -1);
        accumulate(deltas, contributions(ws, w.after), 1);
        const member = movedAnchor(w.customerId, w.before, w.after);
        if (member !== null) members.push(member);
        written.set(w.customerId, w.doc);
      }
      pending = [...lost];
    }
    return { written, cells: Promise.all([this.repo.applyDeltas(nonZero(deltas)), this.repo.addMembers(ws, members)]) };
  }

  /**
   * Compare-and-set of many customers' totals in one round of bulk writes; the customers whose
   * write lost (another writer moved their totals first). A replace that did not match is found
   * by reading the totals back: the op is in `recentOps` exactly when its write won, as long as
   * fewer than RECENT_OPS writes followed it; past that (a customer written that often within
   * milliseconds) it cannot be told, so the write counts as won — never folded twice — and the
   * workspace's rebuild is requested to make the figures exact.
   */
  private async writeAll(ws: string, opId: string, writes: ReadonlyArray<{ customerId: string; doc: TotalsDoc; expectedVersion: number }>): Promise<Set<string>> {
    const { insertLost, replaced } = await this.repo.writeTotalsMany(writes);
    const lost = new Set(insertLost);
    const replaces = writes.filter((w) => w.expectedVersion !== 0);
    if (replaced === replaces.length) return lost;
    const now = await this.repo.findTotals(ws, replaces.map((w) => w.customerId));
    for (const w of replaces) {
      const cur = now.get(w.customerId);
      if (cur?.recentOps.includes(opId) === true) continue;
      if (cur !== undefined && cur.version - w.doc.version >= RECENT_OPS - 1) await this.ops.requestRebuild(ws);
      else lost.add(w.customerId);
    }
    return lost;
  }

  /** Moves one customer's rollup cells and member entry from its old totals to its new ones. */
  private async moveCustomer(ws: string, customerId: string, before: TotalsState, after: TotalsState): Promise<void> {
    await this.repo.applyDeltas(diffCells(ws, before, after));
    const member = movedAnchor(customerId, before, after);
    if (member !== null) await this.repo.addMembers(ws, [member]);
  }

  /** Rebuilds one customer's totals from its raw events and moves its cells by the difference. */
  async recalculate(ws: string, customerId: string): Promise<{ before: TotalsState; after: TotalsState; doc: TotalsDoc }> {
    const opId = newId("op");
    return this.ops.run({ _id: opId, workspaceId: ws, kind: "recalculate", eventIds: [], customerId }, async () => {
      const deadline = Date.now() + CONTENTION_MS;
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) await pauseBeforeRetry(attempt, deadline, CONTENDED);
        const doc = (await this.repo.findTotals(ws, [customerId])).get(customerId);
        const events = await this.repo.customerEvents(ws, customerId);
        const before = stateOf(doc);
        const after = foldEvents({ ...emptyTotals(), createdAt: before.createdAt }, events);
        // The events' ops count as folded: an ingestion still in flight must not add them again.
        const ops = [...new Set([...(doc?.recentOps ?? []), ...events.map((e) => e.opId), opId])];
        const next = totalsDoc(ws, customerId, after, (doc?.version ?? 0) + 1, ops);
        if (!(await this.repo.writeTotals(next, doc?.version ?? 0))) continue;
        await this.moveCustomer(ws, customerId, before, after);
        await this.attribution.refresh(ws, [customerId]);
        return { before, after, doc: next };
      }
    });
  }

  /**
   * Records customers' creation times (RegisterCustomer, gathered per workspace by the
   * registration coalescer), all under one op: each customer without a touchpoint moves into the
   * cohort of its creation time. One outcome per item: its totals, or null when its creation
   * time was known already (or an earlier item of the same customer recorded it).
   */
  async registerMany(ws: string, items: ReadonlyArray<{ customerId: string; createdAt: Date }>): Promise<Array<TotalsDoc | null>> {
    const createdAt = new Map<string, Date>();
    for (const { customerId, createdAt: at } of items) if (!createdAt.has(customerId)) createdAt.set(customerId, at);
    const customerIds = [...createdAt.keys()];
    const opId = newId("op");
    const written = await this.ops.run({ _id: opId, workspaceId: ws, kind: "register", eventIds: [], customerIds }, async () => {
      const moved = await this.transition(ws, opId, customerIds, (c, before) => (before.createdAt !== null ? null : { ...before, createdAt: createdAt.get(c)! }));
      await moved.cells;
      return moved.written;
    });
    const answered = new Set<string>();
    return items.map(({ customerId }) => {
      if (answered.has(customerId)) return null;
      answered.add(customerId);
      return written.get(customerId) ?? null;
    });
  }

  /**
   * Rebuilds every total, member list and rollup cell of a workspace from its raw
   * events. Holds the workspace's rebuild lease throughout, so no write of the workspace runs
   * meanwhile, in any process (write-ops.ts).
   */
  async rebuild(ws: string): Promise<{ customers: number; events: number }> {
    const lease = await this.ops.holdRebuild(ws);
    let done = false;
    try {
      const eventsTotal = await this.repo.countWorkspaceEvents(ws);
      await lease.report({ phase: "reading customers", eventsDone: 0, eventsTotal });
      const versions = new Map<string, number>();
      const createdAt = new Map<string, Date>();
      for await (const t of this.repo.workspaceTotals(ws)) {
        versions.set(t.customerId, t.version);
        if (t.createdAt != null) createdAt.set(t.customerId, t.createdAt);
      }
      const byCustomer = new Map<string, TotalsState>([...createdAt].map(([id, at]) => [id, { ...emptyTotals(), createdAt: at }]));
      const opsOf = new Map<string, string[]>();
      const creditedOf = new Map<string, EventDoc[]>();
      let events = 0;
      let reported = Date.now();
      for await (const e of this.repo.workspaceEvents(ws)) {
        events++;
        if (Date.now() - reported >= PROGRESS_EVERY_MS) {
          reported = Date.now();
          await lease.report({ phase: "reading events", eventsDone: events, eventsTotal: Math.max(eventsTotal, events) });
        }
        if (e.customerId === null) continue;
        byCustomer.set(e.customerId, foldEvents(byCustomer.get(e.customerId) ?? emptyTotals(), [e]));
        const ops = opsOf.get(e.customerId) ?? [];
        ops.push(e.opId);
        opsOf.set(e.customerId, ops);
        if (e.type === "click" || e.type === "sale") {
          const list = creditedOf.get(e.customerId) ?? [];
          list.push(e);
          creditedOf.set(e.customerId, list);
        }
      }
      lease.check();
      await lease.report({ phase: "writing rollups", eventsDone: events, eventsTotal: Math.max(eventsTotal, events) });
      await this.repo.dropWorkspaceRollups(ws);
      const docs = [...byCustomer].map(([id, s]) => totalsDoc(ws, id, s, (versions.get(id) ?? 0) + 1, [...new Set(opsOf.get(id))]));
      await this.repo.insertTotalsMany(docs);
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
      await this.repo.insertMembersMany(ws, members);
      await this.attribution.rebuild(ws, creditedOf);
      lease.check();
      // Snapshots from before show the old figures; until this is recorded the rebuild stays due.
      await this.invalidations.record(ws);
      done = true;
      await this.stats.push(ws, docs);
      return { customers: docs.length, events };
    } finally {
      // A rebuild that failed midway (it may have dropped rollups) stays due: recovery runs it again.
      if (done) await lease.release();
      else await lease.abandon().catch(() => undefined);
    }
  }
}
