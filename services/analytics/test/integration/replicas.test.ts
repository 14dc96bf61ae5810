/**
 * Several replicas of the analytics plugin on one database, as Kubernetes runs them: this
 * process's mesh and two more `main.ts` processes (customers and analytics each), tracking into
 * one workspace at the same time — overlapping batches, single events and replays of the same
 * keys through different replicas — and a RebuildWorkspace while they do. Nothing coordinates
 * them but the database. Totals and cells must equal a recomputation from the raw events.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { AnalyticsService, type TrackedEvent } from "@linquid/contracts";
import { pluginDatabase, startReplicas, startTestMesh, type MeshProcess, type TestMesh } from "@linquid/mesh/testing";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPLICAS = 2;
const DAY = 86_400_000;

interface Ev {
  kind: "click" | "lead" | "sale" | "custom";
  key: string;
  at: number;
  person?: string;
  clickId?: string;
  linkId?: string;
  campaignId?: string;
  source?: string;
  amount?: number;
}

/** A deterministic pseudo-random source. */
function rng(seed: number): () => number {
  let x = seed | 1;
  return () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

/**
 * Clicks (each owned by at most one person, who names it in a lead), leads, sales concentrated
 * on a few hot customers (so replicas contend for the same totals), custom events; distinct
 * times within the last four months.
 */
function workload(tag: string, seed: number, people: number): Ev[] {
  const r = rng(seed);
  const used = new Set<number>();
  const at = () => {
    let t: number;
    do t = Date.now() - DAY - Math.floor(r() * 120 * DAY);
    while (used.has(t));
    used.add(t);
    return t;
  };
  const person = (hot = false) => `${tag}-p${hot && r() < 0.6 ? Math.floor(r() * 2) : Math.floor(r() * people)}`;
  const out: Ev[] = [];
  for (let i = 0; i < 24; i++) {
    const clickId = `${tag}-c${i}`;
    const campaign = ["spring", "summer", undefined][i % 3];
    const source = ["google", "mail", undefined][Math.floor(i / 3) % 3];
    out.push({ kind: "click", key: clickId, at: at(), clickId, linkId: `l${i % 4}`, ...(campaign ? { campaignId: campaign } : {}), ...(source ? { source } : {}) });
    // Two of three clicks are claimed by a person's lead.
    if (i % 3 !== 2) out.push({ kind: "lead", key: `${tag}-claim${i}`, at: at(), person: `${tag}-p${i % people}`, clickId });
  }
  for (let i = 0; i < people; i++) out.push({ kind: "lead", key: `${tag}-lead${i}`, at: at(), person: `${tag}-p${i}` });
  for (let i = 0; i < 45; i++) out.push({ kind: "sale", key: `${tag}-inv${i}`, at: at(), person: person(true), amount: 100 + Math.floor(r() * 9000) });
  for (let i = 0; i < 10; i++) out.push({ kind: "custom", key: `${tag}-ev${i}`, at: at(), person: person() });
  return out;
}

function tracked(e: Ev): TrackedEvent {
  const timestamp = timestampFromDate(new Date(e.at));
  const externalId = e.person ?? "";
  switch (e.kind) {
    case "click":
      return { event: { case: "click", value: { workspaceId: "", clickId: e.clickId!, linkId: e.linkId!, campaignId: e.campaignId, source: e.source, timestamp } } } as never;
    case "lead":
      return { event: { case: "lead", value: { workspaceId: "", externalId, eventId: e.key, clickId: e.clickId, timestamp } } } as never;
    case "sale":
      return { event: { case: "sale", value: { workspaceId: "", externalId, invoiceId: e.key, amount: BigInt(e.amount!), currency: "USD", timestamp } } } as never;
    case "custom":
      return { event: { case: "custom", value: { workspaceId: "", externalId, eventName: "signup", eventId: e.key, timestamp } } } as never;
  }
}

interface Answer {
  eventId: string;
  customerId: string | undefined;
  duplicate: boolean;
}

const month = (ms: number) => new Date(ms).toISOString().slice(0, 7);

/** Per customer and per cohort, straight from the events as generated and the customers the API answered. */
function recompute(events: readonly Ev[], customerOf: ReadonlyMap<string, string>) {
  const clickOwner = new Map<string, string>();
  for (const e of events) if (e.kind !== "click" && e.clickId !== undefined) clickOwner.set(e.clickId, customerOf.get(e.person!)!);
  const touches = new Map<string, Ev[]>();
  for (const e of events) {
    const c = e.kind === "click" ? clickOwner.get(e.clickId!) : customerOf.get(e.person!)!;
    if (c !== undefined) touches.set(c, [...(touches.get(c) ?? []), e]);
  }
  const customers = [...touches].map(([id, list]) => {
    list.sort((a, b) => a.at - b.at);
    const sales = list.filter((e) => e.kind === "sale");
    const firstClick = list.find((e) => e.kind === "click");
    return {
      id,
      leads: list.filter((e) => e.kind === "lead").length,
      sales: sales.length,
      revenue: sales.reduce((n, e) => n + e.amount!, 0),
      clicks: list.filter((e) => e.kind === "click").length,
      customEvents: list.filter((e) => e.kind === "custom").length,
      firstAt: list[0]!.at,
      campaign: firstClick?.campaignId ?? null,
      source: firstClick?.source ?? null,
    };
  });
  const cohorts = (key: (c: (typeof customers)[number]) => string | null) => {
    const m = new Map<string | null, { customers: number; leads: number; sales: number; revenue: number }>();
    for (const c of customers) {
      const k = key(c);
      const cur = m.get(k) ?? { customers: 0, leads: 0, sales: 0, revenue: 0 };
      m.set(k, { customers: cur.customers + 1, leads: cur.leads + c.leads, sales: cur.sales + c.sales, revenue: cur.revenue + c.revenue });
    }
    return [...m].map(([cohort, v]) => ({ cohort: cohort ?? "", ...v })).sort((a, b) => a.cohort.localeCompare(b.cohort));
  };
  return { customers, month: cohorts((c) => month(c.firstAt)), campaign: cohorts((c) => c.campaign), source: cohorts((c) => c.source) };
}

describe("analytics replicas on one database", () => {
  let main: TestMesh;
  let replicas: MeshProcess[] = [];
  let clients: Array<Client<typeof AnalyticsService>>;
  let db: Db;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    main = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics" });
    ({ replicas, clients } = await startReplicas(main, REPLICAS, { MESH_PLUGINS: "customers,analytics", WORKSPACES_ADDR: main.host.grpcUrl! }, AnalyticsService));
    ({ db, close: closeDb } = await pluginDatabase(main, "analytics"));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await closeDb?.();
    await main?.stop();
  });

  /**
   * Sends events in chunks of 1–6 through random replicas, all chunks at once (16 in flight), a
   * fifth of them twice through two replicas at the same time. A write that meets a rebuild
   * waits for it; one refused after waiting (UNAVAILABLE) is retried 200 ms later, as a client
   * would. Returns every answer per key.
   */
  async function deliver(ws: string, events: readonly Ev[], seed: number, refusals: { count: number }): Promise<Map<string, Answer[]>> {
    const r = rng(seed);
    const order = [...events].sort(() => r() - 0.5);
    const sends: Array<{ chunk: Ev[]; client: Client<typeof AnalyticsService> }> = [];
    for (let i = 0; i < order.length; ) {
      const chunk = order.slice(i, (i += 1 + Math.floor(r() * 6)));
      const first = Math.floor(r() * clients.length);
      sends.push({ chunk, client: clients[first]! });
      if (r() < 0.2) sends.push({ chunk, client: clients[(first + 1) % clients.length]! });
    }
    const answers = new Map<string, Answer[]>();
    const record = (e: Ev, a: { eventId: string; customerId?: string | undefined; duplicate: boolean; error?: string | undefined }) => {
      expect(a.error, e.key).toBeUndefined();
      answers.set(e.key, [...(answers.get(e.key) ?? []), { eventId: a.eventId, customerId: a.customerId, duplicate: a.duplicate }]);
    };
    const send = async ({ chunk, client }: (typeof sends)[number]) => {
      for (let attempt = 0; ; attempt++) {
        try {
          if (chunk.length > 1) {
            const res = await client.trackBatch({ workspaceId: ws, events: chunk.map(tracked) });
            chunk.forEach((e, k) => record(e, res.results[k]!));
          } else {
            const t = tracked(chunk[0]!).event;
            const v = { ...t.value!, workspaceId: ws } as never;
            const a = t.case === "click" ? await client.trackClick(v) : t.case === "lead" ? await client.trackLead(v) : t.case === "sale" ? await client.trackSale(v) : await client.trackEvent(v);
            record(chunk[0]!, a);
          }
          return;
        } catch (err) {
          const ce = ConnectError.from(err);
          if (ce.code !== Code.Unavailable || !ce.rawMessage.includes("rebuilt") || attempt > 200) throw err;
          refusals.count++;
          await new Promise((res) => setTimeout(res, 200));
        }
      }
    };
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < sends.length) await send(sends[next++]!);
    }));
    return answers;
  }

  /** The customer each externalId got, checking that every answer for a key agrees. */
  function customersFrom(events: readonly Ev[], answers: ReadonlyMap<string, Answer[]>, into: Map<string, string>): void {
    for (const e of events) {
      const list = answers.get(e.key)!;
      expect(list.filter((a) => !a.duplicate), `first answers for ${e.key}`).toHaveLength(1);
      expect(new Set(list.map((a) => a.eventId)).size, e.key).toBe(1);
      expect(new Set(list.map((a) => a.customerId)).size, e.key).toBe(1);
      if (e.person !== undefined) {
        const id = list[0]!.customerId!;
        expect(into.get(e.person) ?? id, `customer of ${e.person}`).toBe(id);
        into.set(e.person, id);
      }
    }
  }

  /** A cell without its zero figures (top-level, or a model's in attribution cells) and models left without any. */
  function withoutZeros(d: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(d)) {
      if (v === 0) continue;
      if (v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date)) {
        const inner = withoutZeros(v as Record<string, unknown>);
        if (Object.keys(inner).length > 0) out[k] = inner;
      } else out[k] = v;
    }
    return out;
  }
  const FIGURES = ["customers", "leads", "sales", "revenue", "customersWithSale"];
  const hasFigures = (d: Record<string, unknown>): boolean =>
    FIGURES.some((k) => typeof d[k] === "number") || Object.values(d).some((v) => v !== null && typeof v === "object" && !Array.isArray(v) && hasFigures(v as Record<string, unknown>));

  /** Cells (non-zero ones; cohort, LTV and attribution), totals and sale credits as stored, in a comparable form. */
  async function snapshot(ws: string) {
    const cells: unknown[] = [];
    for (const name of ["cohort_cells", "cohort_day_cells", "cohort_hour_cells", "ltv_cells", "attribution_cells", "attribution_day_cells", "attribution_return_cells"]) {
      const docs = await db.collection(name).find({ workspaceId: ws }).sort({ _id: 1 }).toArray();
      cells.push(...docs.map(withoutZeros).filter((d) => hasFigures(d)));
    }
    const sortBy = (list: Array<Record<string, unknown>>, k: string) => [...list].sort((a, b) => String(a[k]).localeCompare(String(b[k])));
    const totals = (await db.collection("customer_totals").find({ workspaceId: ws }).sort({ _id: 1 }).toArray()).map(({ version: _v, recentOps: _r, updatedAt: _u, ...t }) => ({
      ...t,
      links: sortBy(t["links"], "id"),
      campaigns: sortBy(t["campaigns"], "id"),
      sources: sortBy(t["sources"], "id"),
      revenueByMonth: sortBy(t["revenueByMonth"], "month"),
    }));
    // What each sale credits (the attribution cells' source), without its compare-and-set version.
    const credits = (await db.collection("sale_credits").find({ workspaceId: ws }).sort({ _id: 1 }).toArray()).map(({ v: _v, ...c }) => c);
    return { cells, totals, credits };
  }

  async function assertMatchesRecomputation(ws: string, events: readonly Ev[], customerOf: ReadonlyMap<string, string>): Promise<void> {
    const expected = recompute(events, customerOf);
    expect(await db.collection("events").countDocuments({ workspaceId: ws })).toBe(events.length);
    // Every claimed click ended with its claimant, whichever replica stored it or claimed it.
    for (const e of events) {
      if (e.kind === "lead" && e.clickId !== undefined) {
        expect((await db.collection("events").findOne({ _id: `${ws}:click:${e.clickId}` as never }))?.["customerId"], e.clickId).toBe(customerOf.get(e.person!));
      }
    }
    const totals = new Map((await db.collection("customer_totals").find({ workspaceId: ws }).toArray()).map((t) => [t["customerId"] as string, t]));
    expect(totals.size).toBe(expected.customers.length);
    for (const c of expected.customers) {
      const t = totals.get(c.id)!;
      expect({ leads: t["leads"], sales: t["sales"], revenue: t["revenue"], clicks: t["clicks"], customEvents: t["customEvents"], firstAt: (t["firstTouch"] as { at: Date }).at.getTime() }, c.id).toEqual({
        leads: c.leads,
        sales: c.sales,
        revenue: c.revenue,
        clicks: c.clicks,
        customEvents: c.customEvents,
        firstAt: c.firstAt,
      });
    }
    for (const groupBy of ["month", "campaign", "source"] as const) {
      const client = clients[Math.floor(Math.random() * clients.length)]!;
      const rows = (await client.getCohorts({ workspaceId: ws, groupBy })).cohorts.map((r) => ({
        cohort: r.cohort ?? "",
        customers: Number(r.customers),
        leads: Number(r.leads),
        sales: Number(r.sales),
        revenue: Number(r.revenue),
      }));
      expect(rows.sort((a, b) => a.cohort.localeCompare(b.cohort)), groupBy).toEqual(expected[groupBy]);
    }
    // The cells kept incrementally by every replica are exactly what a rebuild computes from scratch.
    const before = await snapshot(ws);
    expect(before.credits.length).toBeGreaterThan(0);
    await clients[0]!.rebuildWorkspace({ workspaceId: ws });
    expect(await snapshot(ws)).toEqual(before);
  }

  it("keeps totals and cells equal to a recomputation from the raw events when every replica tracks at once", async () => {
    const { id: ws } = await main.workspace({ currency: "USD" });
    const events = workload("a", 7, 8);
    const customerOf = new Map<string, string>();
    customersFrom(events, await deliver(ws, events, 11, { count: 0 }), customerOf);
    await assertMatchesRecomputation(ws, events, customerOf);
    // Nothing is left half-done: every write removed its marker.
    expect(await db.collection("write_ops").countDocuments({ workspaceId: ws })).toBe(0);
  });

  it("keeps them equal when a rebuild runs while the replicas track (writes wait for it, none is lost or counted twice)", async () => {
    const { id: ws } = await main.workspace({ currency: "USD" });
    const first = workload("b", 21, 8);
    const customerOf = new Map<string, string>();
    customersFrom(first, await deliver(ws, first, 5, { count: 0 }), customerOf);
    const second = workload("c", 33, 8);
    const refusals = { count: 0 };
    let tracked = false;
    const tracking = deliver(ws, second, 9, refusals).finally(() => (tracked = true));
    // Rebuilds through each replica in turn while the second workload goes in (the first at
    // once, then after pauses that let writes through).
    let overlapped = 0;
    const rebuilds = (async () => {
      let n = 0;
      do {
        await clients[n++ % clients.length]!.rebuildWorkspace({ workspaceId: ws });
        if (!tracked) overlapped++;
        await new Promise((r) => setTimeout(r, 150));
      } while (!tracked && n < clients.length);
      return n;
    })();
    const [answers, rebuilt] = await Promise.all([tracking, rebuilds]);
    customersFrom(second, answers, customerOf);
    // The rebuilds did overlap the tracking: writes that met one waited for it (or, past its
    // wait, were refused and retried, counted in `refusals`).
    expect(rebuilt).toBeGreaterThan(0);
    expect(overlapped).toBeGreaterThan(0);
    await assertMatchesRecomputation(ws, [...first, ...second], customerOf);
    expect(await db.collection("write_ops").countDocuments({ workspaceId: ws })).toBe(0);
    expect(await db.collection("workspace_rebuilds").countDocuments({ _id: ws as never })).toBe(0);
  });
});
