/**
 * The write path of event tracking, one code path for the single Track* RPCs and TrackBatch:
 *  1. validate (caller) and check sale currencies against the workspace's;
 *  2. resolve each distinct externalId once through customers.StitchCustomers — nothing is
 *     written before every customer is known, so a customers outage leaves no trace;
 *  3. read the owners of every click id the batch names and claim unowned ones
 *     (`click_owners`, insert-only: the first claim wins), then read which of the named clicks
 *     are stored without an owner;
 *  4. write the op's marker (write-ops.ts; refused while a rebuild of the workspace runs), then
 *     insertMany the raw events (ordered:false; E11000 = replay, answered from the stored
 *     original);
 *  5. attach those clicks and the batch's own clicks claimed meanwhile (each conditional on
 *     being unowned), then fold the new events into their customers' totals and
 *     rollup cells (rollups.ts);
 *  6. delete the marker; push the changed customers' stats (versioned) to customers.
 *
 * Nothing is serialized in this process: concurrent ingestions of one workspace, in any number
 * of processes, meet only in atomic single-document writes (unique `_id`s, conditional updates,
 * compare-and-set on totals versions, `$inc`).
 *
 * Deadlines: steps 1–4 run under the caller's deadline (a refusal there stores nothing); from
 * the marker on, the write runs to its end under its own budget (WriteOps.run), so a caller
 * giving up never leaves a half-applied write for recovery to rebuild around.
 *
 * Crash windows: before 4 nothing but click claims exist (harmless: they only say whose a click
 * is, and the retry of the batch attaches the stored clicks they name, as does any later event
 * naming them). The same holds for a batch refused during a rebuild. Between 4 and the totals write, the marker stays and recovery folds the op's events
 * later (`recentOps` makes that idempotent). Between a totals write and the end of its cell
 * $incs the marker also stays; recovery then finds the op already in `recentOps`, cannot know
 * which cells got their share, and logs the workspace for `RebuildWorkspace`, which recomputes
 * every total and cell from the raw events.
 */
import { performance } from "node:perf_hooks";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CustomersService } from "@linquid/contracts";
import { eventsIngested, invalidArgument, isUnavailable, newId, unavailable, violationsIn, type Logger } from "@linquid/mesh";
import type { AnalyticsRepository, ClickOwnerDoc, EventDoc, TotalsDoc } from "./repository.js";
import type { Rollups } from "./rollups.js";
import type { StatsPusher } from "./stats-push.js";
import type { IncomingEvent } from "./validation.js";
import type { WorkspaceCurrencies } from "./workspace-currency.js";
import type { WriteOps } from "./write-ops.js";

export interface TrackOutcome {
  eventId: string;
  customerId: string | null;
  duplicate: boolean;
  failure?: ConnectError;
}

/** Items per StitchCustomers call (the customers service takes up to 1,000). */
const STITCH_BATCH = 1000;

/** Adds a batch's outcomes to the ingestion counter: one increment per type and outcome, not per event. */
function countOutcomes(events: readonly IncomingEvent[], outcomes: readonly TrackOutcome[]): void {
  const counts = new Map<string, number>();
  outcomes.forEach((o, i) => {
    const key = `${events[i]!.type} ${o.failure !== undefined ? "rejected" : o.duplicate ? "duplicate" : "stored"}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  });
  for (const [key, n] of counts) {
    const [type, outcome] = key.split(" ") as [string, string];
    eventsIngested.inc({ type, outcome }, n);
  }
}

export class Ingestion {
  constructor(
    private readonly repo: AnalyticsRepository,
    private readonly rollups: Rollups,
    private readonly ops: WriteOps,
    private readonly stats: StatsPusher,
    private readonly currencies: WorkspaceCurrencies,
    private readonly customers: () => Client<typeof CustomersService>,
    private readonly logger: Logger,
  ) {}

  /**
   * Ingests validated events of one workspace; one outcome per input, in order. `stats`: whether
   * the changed customers' stats reach the customers service before this returns ("await": the
   * callers of single tracking calls read their own writes) or in the background, coalesced per
   * customer ("background": bulk loads, which the customers service must not pace).
   */
  async ingest(ws: string, events: readonly IncomingEvent[], stats: "await" | "background" = events.length === 1 ? "await" : "background"): Promise<TrackOutcome[]> {
    const t0 = performance.now();
    const phase: Record<string, number> = {};
    const mark = (name: string) => (phase[name] = Math.round(performance.now() - t0));
    const out: Array<TrackOutcome | undefined> = new Array(events.length);
    // Sales in another currency are rejected, never mixed.
    if (events.some((e) => e.type === "sale")) {
      const currency = await this.currencies.of(ws);
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
        if (isUnavailable(ce)) throw unavailable("customers service", ce);
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

    // Stored clicks the batch names that are still unowned: their owner's event arrived after
    // them, or an earlier attempt of this batch claimed them and stopped before storing its
    // events (a crash, a refusal during a rebuild). A click stored after this read is attached
    // by its own ingestion, which reads the owners after storing it (see below), so every
    // claimed click gets attached by someone.
    const named = [...claims.keys()].filter((c) => owners.has(c));
    const storedUnowned = named.length === 0 ? [] : (await this.repo.findEvents(named.map((c) => `${ws}:click:${c}`))).filter((e) => e.customerId === null).map((e) => e.clickId!);
    mark("owners");
    // Raw events, after the marker.
    const opId = newId("op");
    const docs: EventDoc[] = toStore.map((i) => {
      const { keyed: _keyed, ...e } = events[i]!;
      const customerId = e.type === "click" ? (owners.get(e.clickId!) ?? null) : (customerOf.get(e.externalId!) as { id: string }).id;
      return { ...e, workspaceId: ws, customerId, opId, receivedAt: now };
    });
    if (docs.length === 0) return this.finishOutcomes(out, sameAs, events);
    // Refused (UNAVAILABLE, nothing stored) while a rebuild of the workspace runs; past its
    // marker, the write runs to its end under its own budget, whatever the caller's deadline.
    const op = { _id: opId, workspaceId: ws, kind: "ingest" as const, eventIds: [...docs.map((d) => d._id), ...storedUnowned.map((c) => `${ws}:click:${c}`)] };
    const changed = await this.ops.run(op, () => this.storeAndFold(ws, opId, docs, toStore, storedUnowned, owners, out));
    mark("fold");
    if (stats === "await") await this.stats.push(ws, changed);
    else this.stats.enqueue(ws, changed);
    mark("stats");
    this.logger.debug("ingested", { workspaceId: ws, events: events.length, customers: stitchArgs.size, ms: phase });
    return this.finishOutcomes(out, sameAs, events);
  }

  /** Steps 4–5 after the marker: store the events, attach clicks, fold. Returns the totals written. */
  private async storeAndFold(
    ws: string,
    opId: string,
    docs: readonly EventDoc[],
    toStore: readonly number[],
    storedUnowned: readonly string[],
    owners: ReadonlyMap<string, string>,
    out: Array<TrackOutcome | undefined>,
  ): Promise<TotalsDoc[]> {
    const dups = await this.repo.insertEvents(docs);
    const originals = new Map((await this.repo.findEvents([...dups])).map((d) => [d._id, d]));
    docs.forEach((d, k) => {
      const i = toStore[k]!;
      const orig = dups.has(d._id) ? originals.get(d._id) : undefined;
      out[i] = orig === undefined ? { eventId: d.eventId, customerId: d.customerId, duplicate: dups.has(d._id) } : { eventId: orig.eventId, customerId: orig.customerId, duplicate: true };
      if (d.type === "click") out[i]!.customerId = null;
    });
    const fresh = docs.filter((d) => !dups.has(d._id));

    const fold: EventDoc[] = fresh.filter((d) => d.customerId !== null);
    // Stored clicks this batch names that were unowned (above), and clicks this batch stored
    // unowned that another ingestion claimed meanwhile. Attaching is conditional on the click
    // being unowned, so whichever ingestion attaches a click first folds it, exactly once.
    const unowned = fresh.filter((d) => d.type === "click" && d.customerId === null).map((d) => d.clickId!);
    const lateOwners = unowned.length > 0 ? await this.repo.findOwners(ws, unowned) : new Map<string, string>();
    const attach: Array<[string, string]> = [...storedUnowned.map((c) => [c, owners.get(c)!] as [string, string]), ...lateOwners];
    for (const [clickId, customerId] of attach) {
      const click = await this.repo.attachClick(`${ws}:click:${clickId}`, customerId, opId);
      if (click !== null) fold.push(click);
    }
    return this.rollups.foldInto(ws, opId, fold);
  }

  private finishOutcomes(out: Array<TrackOutcome | undefined>, sameAs: Map<number, number>, events: readonly IncomingEvent[]): TrackOutcome[] {
    for (const [i, first] of sameAs) {
      const o = out[first]!;
      out[i] = o.failure !== undefined ? o : { eventId: o.eventId, customerId: events[i]!.type === "click" ? null : o.customerId, duplicate: true };
    }
    countOutcomes(events, out as TrackOutcome[]);
    return out as TrackOutcome[];
  }
}
