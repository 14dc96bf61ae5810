/**
 * THE invariant: whatever the order of delivery (shuffled, batched, concurrent, replayed),
 * every analytics answer equals a brute-force recomputation from the raw events, written here
 * from the REST contract's definitions without calling the implementation. Events may share an
 * instant (ties: first touch, first click and journey order then go by event id), up to 7 people
 * take part, and sales in a foreign currency are refused, never counted.
 */
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService, CustomersService, type TrackedEvent } from "@linquid/contracts";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// --- the model's own calendar helpers (independent of src/buckets.ts) ---------------------------
const iso = (ms: number) => new Date(ms).toISOString();
const month = (ms: number) => iso(ms).slice(0, 7);
const monthNo = (ms: number) => new Date(ms).getUTCFullYear() * 12 + new Date(ms).getUTCMonth();
function week(ms: number): string {
  // ISO week: the week's Thursday decides the year; week 1 contains January 4th.
  const d = new Date(ms);
  const day = (d.getUTCDay() + 6) % 7; // Monday 0
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3);
  const y = new Date(thursday).getUTCFullYear();
  const jan4 = Date.UTC(y, 0, 4);
  const week1Thursday = jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * 86_400_000 + 3 * 86_400_000;
  return `${y}-W${String(Math.round((thursday - week1Thursday) / (7 * 86_400_000)) + 1).padStart(2, "0")}`;
}

type Kind = "click" | "lead" | "sale" | "custom";

/**
 * A customer's credits under a model, from the contract: each sale is credited to the clicks at
 * or before it (to the first click when there is none), split in integers by the largest
 * remainder (ties to the earlier click); one credit per (link, campaign, source) in first-click
 * order; weights revenue-weighted (by sale count when revenue is 0; without sales, as if one
 * followed the last click).
 */
/** One sale's weights over its eligible clicks (ordered) and its integer parts (largest remainder, ties to the earlier). */
function splitSale(model: string, eligible: readonly GenEvent[], sale: { at: number; amount: number }, halfLifeDays: number) {
  const n = eligible.length;
  let w: number[];
  if (model === "first_touch") w = eligible.map((_, i) => (i === 0 ? 1 : 0));
  else if (model === "last_touch") w = eligible.map((_, i) => (i === n - 1 ? 1 : 0));
  else if (model === "linear") w = eligible.map(() => 1 / n);
  else if (model === "position_based") w = n === 1 ? [1] : n === 2 ? [0.5, 0.5] : eligible.map((_, i) => (i === 0 || i === n - 1 ? 0.4 : 0.2 / (n - 2)));
  else {
    const raw = eligible.map((c) => 0.5 ** ((sale.at - c.at) / (halfLifeDays * 86_400_000)));
    const sum = raw.reduce((x, y) => x + y, 0);
    w = raw.map((r) => r / sum);
  }
  const exact = w.map((x) => sale.amount * x);
  const parts = exact.map(Math.floor);
  const byRemainder = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((p, q) => q[0] - p[0] || p[1] - q[1]);
  for (let k = 0, left = sale.amount - parts.reduce((x, y) => x + y, 0); left > 0; k++, left--) parts[byRemainder[k % n]![1]]! += 1;
  return { w, parts };
}

/**
 * The workspace report from the contract: the sales of customers with clicks whose UTC day lies
 * in [loDay, hiDay], each split as above (time decay: half-life 7 days), summed per link,
 * campaign or source; `sales` and `customers` count the sales and distinct customers that gave a
 * key any weight. Deleted customers count.
 */
function workspaceModel(model: string, dim: "link" | "campaign" | "source", people: ReadonlyArray<{ id: string; clicks: readonly GenEvent[]; sales: readonly GenEvent[] }>, loDay = "0000", hiDay = "9999") {
  const rows = new Map<string | null, { revenue: number; sales: number; customers: Set<string> }>();
  const keyOf = (c: GenEvent) => (dim === "link" ? c.linkId! : dim === "campaign" ? (c.campaignId ?? null) : (c.source ?? null));
  for (const p of people) {
    if (p.clicks.length === 0) continue;
    for (const sale of p.sales) {
      const day = iso(sale.at).slice(0, 10);
      if (day < loDay || day > hiDay) continue;
      const before = p.clicks.filter((c) => c.at <= sale.at);
      const eligible = before.length > 0 ? before : [p.clicks[0]!];
      const { w, parts } = splitSale(model, eligible, { at: sale.at, amount: sale.amount! }, 7);
      const credited = new Set<string | null>();
      eligible.forEach((c, i) => {
        const r = rows.get(keyOf(c)) ?? { revenue: 0, sales: 0, customers: new Set<string>() };
        r.revenue += parts[i]!;
        rows.set(keyOf(c), r);
        if (w[i]! > 0 || parts[i]! > 0) credited.add(keyOf(c));
      });
      for (const k of credited) {
        rows.get(k)!.sales += 1;
        rows.get(k)!.customers.add(p.id);
      }
    }
  }
  return [...rows]
    .filter(([, r]) => r.sales > 0)
    .map(([key, r]) => ({ key, revenue: r.revenue, sales: r.sales, customers: r.customers.size }))
    .sort((x, y) => (x.key === y.key ? 0 : x.key === null ? 1 : y.key === null ? -1 : x.key < y.key ? -1 : 1));
}

function creditsModel(model: string, clicks: readonly GenEvent[], sales: readonly GenEvent[], halfLifeDays: number) {
  if (clicks.length === 0) return [];
  const keyOf = (c: GenEvent) => JSON.stringify([c.linkId ?? null, c.campaignId ?? null, c.source ?? null]);
  const out = new Map<string, { linkId: string | null; campaignId: string | null; source: string | null; weight: number; revenue: number }>();
  for (const c of clicks) if (!out.has(keyOf(c))) out.set(keyOf(c), { linkId: c.linkId ?? null, campaignId: c.campaignId ?? null, source: c.source ?? null, weight: 0, revenue: 0 });
  const list = sales.length > 0 ? sales.map((x) => ({ at: x.at, amount: x.amount! })) : [{ at: clicks[clicks.length - 1]!.at, amount: 0 }];
  const total = list.reduce((n, x) => n + x.amount, 0);
  for (const sale of list) {
    const before = clicks.filter((c) => c.at <= sale.at);
    const eligible = before.length > 0 ? before : [clicks[0]!];
    const { w, parts } = splitSale(model, eligible, sale, halfLifeDays);
    eligible.forEach((c, i) => {
      const g = out.get(keyOf(c))!;
      g.weight += w[i]! * (total > 0 ? sale.amount / total : 1 / list.length);
      g.revenue += parts[i]!;
    });
  }
  return [...out.values()];
}
interface GenEvent {
  kind: Kind;
  key: string; // idempotency key (click id, event id, invoice id)
  at: number;
  person: number; // customer index (not for clicks)
  clickId?: string;
  linkId?: string;
  campaignId?: string;
  source?: string;
  amount?: number;
  /** A sale in another currency than the workspace's: refused. */
  foreign?: boolean;
}

/** The event's stored `_id` without the workspace: ties of time are broken by it. */
const idOf = (e: GenEvent) => `${e.kind}:${e.key}`;
const inOrder = (x: GenEvent, y: GenEvent) => x.at - y.at || (idOf(x) < idOf(y) ? -1 : idOf(x) > idOf(y) ? 1 : 0);

const NOW = Date.now();
const SPAN = 150 * 86_400_000;
const links = ["lnk_a", "lnk_b", "lnk_c"];
const campaigns = ["spring", "summer", undefined];
const sources = ["google", "newsletter", undefined];

const scenario = fc
  .record({
    people: fc.integer({ min: 1, max: 7 }),
    // Whole seconds, a quarter of them drawn from three instants: many events share one.
    times: fc.array(
      fc.oneof({ arbitrary: fc.integer({ min: 0, max: SPAN / 1000 }), weight: 3 }, { arbitrary: fc.constantFrom(6_000_000, 6_000_001, 9_000_000), weight: 1 }),
      { minLength: 40, maxLength: 40 },
    ),
    clicks: fc.array(fc.record({ link: fc.nat(2), campaign: fc.nat(2), source: fc.nat(2), owner: fc.integer({ min: -1, max: 6 }) }), { maxLength: 10 }),
    others: fc.array(
      fc.record({ kind: fc.constantFrom<Kind>("lead", "sale", "sale", "custom"), person: fc.nat(6), click: fc.nat(9), withClick: fc.boolean(), amount: fc.nat(50_000) }),
      { minLength: 1, maxLength: 16 },
    ),
    foreign: fc.array(fc.record({ person: fc.nat(6), amount: fc.nat(9_000) }), { maxLength: 3 }),
    replays: fc.array(fc.nat(30), { maxLength: 5 }),
    deletes: fc.array(fc.nat(6), { maxLength: 2 }),
    late: fc.array(fc.record({ person: fc.nat(6), amount: fc.nat(9_000) }), { maxLength: 3 }),
    halfLifeDays: fc.constantFrom(0.5, 7, 30),
    recalc: fc.nat(3),
    chunking: fc.array(fc.record({ size: fc.integer({ min: 1, max: 6 }), mode: fc.constantFrom("batch", "concurrent", "serial") }), { minLength: 12, maxLength: 12 }),
    seed: fc.integer(),
    range: fc.record({ a: fc.nat(SPAN / 1000), b: fc.nat(SPAN / 1000), dateOnly: fc.boolean() }),
    // A range around one of the instants, its edges any millisecond up to 30 hours away (often
    // on the instant itself, an hour, or a millisecond off one): partial days with whole hours
    // and sub-hour edges where there are customers.
    narrow: fc.record({
      around: fc.nat(39),
      before: fc.oneof(fc.constant(0), fc.constant(3_600_000), fc.constant(3_600_001), fc.integer({ min: 0, max: 30 * 3_600_000 })),
      after: fc.oneof(fc.constant(0), fc.constant(3_599_999), fc.integer({ min: 0, max: 30 * 3_600_000 })),
      snap: fc.constantFrom("none", "start", "end", "both"),
    }),
  })
  .map((s) => {
    const at = (i: number) => NOW - SPAN - 86_400_000 + s.times[i]! * 1000;
    const events: GenEvent[] = [];
    const clickOwner = new Map<string, number>();
    s.clicks.forEach((c, i) => {
      const clickId = `clk_${i}`;
      if (c.owner >= 0 && c.owner < s.people) clickOwner.set(clickId, c.owner);
      events.push({ kind: "click", key: clickId, at: at(i), person: -1, clickId, linkId: links[c.link]!, ...(campaigns[c.campaign] ? { campaignId: campaigns[c.campaign]! } : {}), ...(sources[c.source] ? { source: sources[c.source]! } : {}) });
    });
    s.others.forEach((o, i) => {
      const person = o.person % s.people;
      // An event may name only a click its person owns, so every click has one claimant.
      const owned = [...clickOwner].filter(([, p]) => p === person).map(([c]) => c);
      const clickId = o.withClick && owned.length > 0 ? owned[o.click % owned.length] : undefined;
      events.push({ kind: o.kind, key: `${o.kind}_${i}`, at: at(10 + i), person, ...(clickId ? { clickId } : {}), ...(o.kind === "sale" ? { amount: o.amount } : {}) });
    });
    // Every claimed click is named by at least one event of its owner.
    for (const [clickId, person] of clickOwner) {
      if (!events.some((e) => e.clickId === clickId && e.kind !== "click")) events.push({ kind: "lead", key: `claim_${clickId}`, at: at(25 + events.length % 10), person, clickId });
    }
    const late = s.late.map((l, i) => ({ kind: "sale" as const, key: `late_${i}`, at: at(36 + i), person: l.person % s.people, amount: l.amount }));
    const foreign = s.foreign.map((f, i) => ({ kind: "sale" as const, key: `usd_${i}`, at: at(30 + i), person: f.person % s.people, amount: f.amount, foreign: true }));
    return { ...s, events, late, foreign };
  });

function shuffle<T>(list: T[], seed: number): T[] {
  let x = seed | 1;
  const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

interface Stored extends GenEvent {
  customerId: string | null;
}

describe("analytics invariants", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics" });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("every answer equals a recomputation from the raw events, in any delivery order", async () => {
    const a = mesh.host.client(AnalyticsService);
    const customers = mesh.host.client(CustomersService);
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const { id: ws } = await mesh.workspace({ currency: "EUR" });
        const ext = (p: number, gen: number) => `person_${p}_${gen}`;
        const generation = new Map<number, number>();
        const tracked = (e: GenEvent): TrackedEvent => {
          const timestamp = timestampFromDate(new Date(e.at));
          const externalId = ext(e.person, generation.get(e.person) ?? 0);
          switch (e.kind) {
            case "click":
              return { event: { case: "click", value: { workspaceId: ws, clickId: e.clickId!, linkId: e.linkId!, campaignId: e.campaignId, source: e.source, timestamp } } } as never;
            case "lead":
              return { event: { case: "lead", value: { workspaceId: ws, externalId, eventId: e.key, clickId: e.clickId, email: `${externalId}@example.com`, timestamp } } } as never;
            case "sale":
              return { event: { case: "sale", value: { workspaceId: ws, externalId, invoiceId: e.key, amount: BigInt(e.amount!), currency: e.foreign ? "USD" : "EUR", clickId: e.clickId, timestamp } } } as never;
            case "custom":
              return { event: { case: "custom", value: { workspaceId: ws, externalId, eventName: "signup", eventId: e.key, clickId: e.clickId, timestamp } } } as never;
          }
        };
        const answers = new Map<string, Array<{ eventId: string; customerId: string | undefined; duplicate: boolean }>>();
        const record = (e: GenEvent, r: { eventId: string; customerId?: string | undefined; duplicate: boolean; error?: string | undefined }) => {
          if (e.foreign) {
            expect(r.error).toMatch(/reporting currency EUR/);
            return;
          }
          expect(r.error).toBeUndefined();
          const list = answers.get(e.key) ?? [];
          list.push({ eventId: r.eventId, customerId: r.customerId, duplicate: r.duplicate });
          answers.set(e.key, list);
        };
        const single = async (e: GenEvent) => {
          const t = tracked(e).event;
          const r = await (t.case === "click" ? a.trackClick(t.value) : t.case === "lead" ? a.trackLead(t.value) : t.case === "sale" ? a.trackSale(t.value) : a.trackEvent(t.value!)).catch(
            (err: unknown) => {
              const ce = ConnectError.from(err);
              // A foreign-currency sale is refused alone, also when it is gathered with others.
              if (!e.foreign || ce.code !== Code.InvalidArgument) throw err;
              return { eventId: "", duplicate: false, error: ce.rawMessage };
            },
          );
          record(e, r);
        };
        const deliver = async (list: GenEvent[], chunking: typeof s.chunking) => {
          let i = 0;
          let c = 0;
          while (i < list.length) {
            const { size, mode } = chunking[c++ % chunking.length]!;
            const chunk = list.slice(i, i + size);
            i += size;
            if (mode === "batch") {
              const res = await a.trackBatch({ workspaceId: ws, events: chunk.map(tracked) });
              chunk.forEach((e, k) => record(e, res.results[k]!));
            } else if (mode === "concurrent") await Promise.all(chunk.map(single));
            else for (const e of chunk) await single(e);
          }
        };

        // Phase 1: everything, shuffled, with replays of idempotency keys mixed in.
        const replays = s.replays.map((r) => s.events[r % s.events.length]!);
        const order = shuffle([...s.events, ...replays, ...s.foreign], s.seed);
        const half = Math.floor(order.length / 2);
        await deliver(order.slice(0, half), s.chunking);
        // A recalculation in between must change nothing.
        const someone = [...answers.values()].flat().find((x) => x.customerId !== undefined)?.customerId;
        if (someone !== undefined) {
          const recalc = await a.recalculateLtv({ workspaceId: ws, id: someone });
          expect(recalc.after).toEqual(recalc.before);
        }
        await deliver(order.slice(half), s.chunking.slice(3));

        // Each key: counted once, same eventId and customer on every replay, exactly one first answer.
        const stored: Stored[] = [];
        for (const e of s.events) {
          const list = answers.get(e.key)!;
          expect(list.filter((x) => !x.duplicate)).toHaveLength(1);
          expect(new Set(list.map((x) => x.eventId)).size).toBe(1);
          expect(new Set(list.map((x) => x.customerId)).size).toBe(1);
          stored.push({ ...e, customerId: list[0]!.customerId ?? null });
        }

        // Phase 2: delete some customers; their externalIds then start new customers.
        const deleted = new Set<string>();
        for (const p of new Set(s.deletes.map((d) => d % s.people))) {
          const id = stored.find((e) => e.person === p)?.customerId;
          if (id === undefined || id === null) continue;
          await customers.deleteCustomer({ workspaceId: ws, id });
          deleted.add(id);
          generation.set(p, 1);
        }
        await deliver(s.late, s.chunking);
        for (const e of s.late) {
          const list = answers.get(e.key)!;
          stored.push({ ...e, customerId: list[0]!.customerId ?? null });
          if (deleted.size > 0 && list[0]!.customerId !== undefined) {
            const before = stored.find((x) => x.person === e.person && x !== stored[stored.length - 1])?.customerId;
            if (before !== undefined && deleted.has(before!)) expect(list[0]!.customerId).not.toBe(before);
          }
        }
        if (s.recalc % 2 === 0) {
          const live = stored.find((e) => e.customerId !== null && !deleted.has(e.customerId))?.customerId;
          if (live) await a.recalculateLtv({ workspaceId: ws, id: live });
        }

        // --- brute force -------------------------------------------------------------------
        const owner = new Map<string, string>();
        for (const e of stored) if (e.kind !== "click" && e.clickId !== undefined) owner.set(e.clickId, e.customerId!);
        const touchesOf = new Map<string, Stored[]>();
        for (const e of stored) {
          const c = e.kind === "click" ? owner.get(e.clickId!) : e.customerId!;
          if (c === undefined) continue;
          touchesOf.set(c, [...(touchesOf.get(c) ?? []), e]);
        }
        for (const list of touchesOf.values()) list.sort(inOrder);
        const model = [...touchesOf].map(([id, t]) => {
          const clicks = t.filter((e) => e.kind === "click");
          const sales = t.filter((e) => e.kind === "sale");
          return {
            id,
            first: t[0]!,
            last: t[t.length - 1]!,
            firstClick: clicks[0],
            clicks,
            leads: t.filter((e) => e.kind === "lead").length,
            sales,
            customs: t.filter((e) => e.kind === "custom").length,
            revenue: sales.reduce((n, e) => n + e.amount!, 0),
            touches: t,
          };
        });
        const cohortsModel = (by: string, lo = -Infinity, hi = Infinity) => {
          const m = new Map<string | null, { customers: number; leads: number; sales: number; revenue: number; withSale: number }>();
          for (const c of model) {
            if (c.first.at < lo || c.first.at > hi) continue;
            const key = by === "week" ? week(c.first.at) : by === "month" ? month(c.first.at) : by === "campaign" ? (c.firstClick?.campaignId ?? null) : (c.firstClick?.source ?? null);
            const r = m.get(key) ?? { customers: 0, leads: 0, sales: 0, revenue: 0, withSale: 0 };
            m.set(key, { customers: r.customers + 1, leads: r.leads + c.leads, sales: r.sales + c.sales.length, revenue: r.revenue + c.revenue, withSale: r.withSale + (c.sales.length > 0 ? 1 : 0) });
          }
          return [...m]
            .sort(([x], [y]) => (x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1))
            .map(([cohort, r]) => ({ cohort: cohort ?? undefined, customers: BigInt(r.customers), leads: BigInt(r.leads), sales: BigInt(r.sales), revenue: BigInt(r.revenue), conversionRate: r.withSale / r.customers }));
        };
        const plain = (rows: Array<{ cohort?: string | undefined; customers: bigint; leads: bigint; sales: bigint; revenue: bigint; conversionRate: number }>) =>
          rows.map((r) => ({ cohort: r.cohort, customers: r.customers, leads: r.leads, sales: r.sales, revenue: r.revenue, conversionRate: r.conversionRate }));

        // Cohorts, every grouping, with and without a range.
        const lo = NOW - SPAN - 86_400_000 + Math.min(s.range.a, s.range.b) * 1000;
        const hi = NOW - SPAN - 86_400_000 + Math.max(s.range.a, s.range.b) * 1000;
        const start = s.range.dateOnly ? iso(lo).slice(0, 10) : iso(lo);
        const end = s.range.dateOnly ? iso(hi).slice(0, 10) : iso(hi);
        const loMs = Date.parse(s.range.dateOnly ? `${start}T00:00:00Z` : start);
        const hiMs = s.range.dateOnly ? Date.parse(`${end}T00:00:00Z`) + 86_400_000 - 1 : Date.parse(end);
        for (const by of ["week", "month", "campaign", "source"]) {
          expect(plain((await a.getCohorts({ workspaceId: ws, groupBy: by })).cohorts), `cohorts ${by}`).toEqual(cohortsModel(by));
          expect(plain((await a.getCohorts({ workspaceId: ws, groupBy: by, start, end })).cohorts), `cohorts ${by} ${start}..${end}`).toEqual(cohortsModel(by, loMs, hiMs));
        }
        expect(plain((await a.getCohorts({ workspaceId: ws, start })).cohorts)).toEqual(cohortsModel("week", loMs));
        // Time-of-day edges near the customers: whole hours of partial days and their sub-hour edges.
        const instant = NOW - SPAN - 86_400_000 + s.times[s.narrow.around]! * 1000;
        const hourOf = (ms: number) => ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000);
        let nLo = instant - s.narrow.before;
        let nHi = instant + s.narrow.after;
        if (s.narrow.snap === "start" || s.narrow.snap === "both") nLo = hourOf(nLo);
        if (s.narrow.snap === "end" || s.narrow.snap === "both") nHi = hourOf(nHi) + 3_599_999;
        for (const by of ["week", "month", "campaign", "source"]) {
          expect(plain((await a.getCohorts({ workspaceId: ws, groupBy: by, start: iso(nLo), end: iso(nHi) })).cohorts), `cohorts ${by} ${iso(nLo)}..${iso(nHi)}`).toEqual(cohortsModel(by, nLo, nHi));
        }

        // LTV cohorts.
        const months = 7;
        const cur = monthNo(Date.now());
        const ltv = (await a.getLtvCohorts({ workspaceId: ws, months })).cohorts;
        const expected = Array.from({ length: months }, (_, i) => {
          const idx = cur - months + 1 + i;
          const members = model.filter((c) => monthNo(c.first.at) === idx);
          const revenue = Array.from({ length: months - i }, (_, k) =>
            members.reduce((n, c) => n + c.sales.filter((e) => monthNo(e.at) - idx === k).reduce((x, e) => x + e.amount!, 0), 0),
          );
          const cumulative = revenue.map((_, k) => revenue.slice(0, k + 1).reduce((x, y) => x + y, 0));
          return {
            cohort: `${Math.floor(idx / 12)}-${String((idx % 12) + 1).padStart(2, "0")}`,
            customers: BigInt(members.length),
            revenue: revenue.map(BigInt),
            cumulativeRevenue: cumulative.map(BigInt),
            ltv: cumulative.map((x) => (members.length === 0 ? 0 : x / members.length)),
          };
        });
        expect(ltv.map((r) => ({ cohort: r.cohort, customers: r.customers, revenue: r.revenue, cumulativeRevenue: r.cumulativeRevenue, ltv: r.ltv }))).toEqual(expected);

        // The workspace attribution report: every model and grouping, all time and over whole
        // days, from rollups; deleted customers count. Checked again after a rebuild.
        const checkWorkspaceAttribution = async (label: string) => {
          const loDay = iso(lo).slice(0, 10);
          const hiDay = iso(hi).slice(0, 10);
          for (const m of ["first_touch", "last_touch", "linear", "position_based", "time_decay"]) {
            for (const dim of ["link", "campaign", "source"] as const) {
              for (const [from, to] of [[undefined, undefined], [loDay, hiDay], [loDay, undefined], [undefined, hiDay]] as const) {
                const rows = (await a.getWorkspaceAttribution({ workspaceId: ws, model: m, groupBy: dim, start: from, end: to })).rows;
                const got = rows.map((r) => ({ key: r.key ?? null, revenue: Number(r.revenue), sales: Number(r.sales), customers: Number(r.customers) }));
                const what = `${label} workspace attribution ${m} by ${dim} ${from}..${to}`;
                // Most revenue first, then by key, null last.
                expect(got.map((r) => r.revenue), what).toEqual([...got.map((r) => r.revenue)].sort((x, y) => y - x));
                const want = workspaceModel(m, dim, model, from, to);
                const byKey = [...got].sort((x, y) => (x.key === y.key ? 0 : x.key === null ? 1 : y.key === null ? -1 : x.key < y.key ? -1 : 1));
                expect(byKey.map(({ revenue: _r, ...k }) => k), what).toEqual(want.map(({ revenue: _r, ...k }) => k));
                // Integer splits are exact; time decay's up to how floating point rounds a near-tie (1 per sale).
                if (m === "time_decay") byKey.forEach((x, i) => expect(Math.abs(x.revenue - want[i]!.revenue), what).toBeLessThanOrEqual(want[i]!.sales));
                else expect(byKey.map((x) => x.revenue), what).toEqual(want.map((x) => x.revenue));
                // Over all keys: exactly the revenue of the period's sales by customers with clicks.
                const total = model
                  .filter((c) => c.clicks.length > 0)
                  .flatMap((c) => c.sales)
                  .filter((e) => iso(e.at).slice(0, 10) >= (from ?? "0000") && iso(e.at).slice(0, 10) <= (to ?? "9999"))
                  .reduce((n, e) => n + e.amount!, 0);
                expect(got.reduce((n, x) => n + x.revenue, 0), what).toBe(total);
              }
            }
          }
        };
        await checkWorkspaceAttribution("ingested");
        if (s.recalc % 2 === 1) {
          await a.rebuildWorkspace({ workspaceId: ws });
          await checkWorkspaceAttribution("rebuilt");
        }

        // Per customer: journey, summary, attribution, stats; deleted ones answer NotFound.
        const ts = (t: Timestamp | undefined) => (t === undefined ? undefined : timestampDate(t).getTime());
        for (const c of model) {
          if (deleted.has(c.id)) {
            for (const call of [() => a.getJourney({ workspaceId: ws, id: c.id }), () => a.getAttribution({ workspaceId: ws, id: c.id })]) {
              const err = await call().then(() => undefined, (e: unknown) => ConnectError.from(e));
              expect(err?.code).toBe(Code.NotFound);
            }
            continue;
          }
          const journey = await a.getJourney({ workspaceId: ws, id: c.id, limit: 3, page: 2 });
          expect(journey.pagination?.total).toBe(BigInt(c.touches.length));
          expect(journey.touchpoints.map((t) => [t.type, ts(t.timestamp), t.clickId, t.linkId, t.amount])).toEqual(
            c.touches.slice(3, 6).map((e) => [e.kind, e.at, e.clickId, e.linkId, e.amount === undefined ? undefined : BigInt(e.amount)]),
          );
          const inRange = c.touches.filter((e) => e.at >= loMs && e.at <= hiMs);
          const ranged = await a.getJourney({ workspaceId: ws, id: c.id, start, end, limit: 1000 });
          expect(ranged.touchpoints.map((t) => ts(t.timestamp))).toEqual(inRange.map((e) => e.at));
          const summary = (await a.getJourneySummary({ workspaceId: ws, id: c.id })).summary!;
          const firstSale = c.sales[0];
          expect({ ...summary, $typeName: undefined, firstSeenAt: ts(summary.firstSeenAt), lastSeenAt: ts(summary.lastSeenAt) }).toEqual({
            $typeName: undefined,
            firstSeenAt: c.first.at,
            lastSeenAt: c.last.at,
            clicks: BigInt(c.clicks.length),
            leads: BigInt(c.leads),
            sales: BigInt(c.sales.length),
            customEvents: BigInt(c.customs),
            revenue: BigInt(c.revenue),
            currency: "EUR",
            timeToFirstSaleSeconds: firstSale === undefined ? undefined : BigInt(Math.floor((firstSale.at - c.first.at) / 1000)),
          });
          const attr = (await a.getAttribution({ workspaceId: ws, id: c.id })).attribution!;
          const touch = (e: Stored) => ({ type: e.kind, at: e.at, clickId: e.clickId, linkId: e.kind === "click" ? e.linkId : undefined, campaignId: e.kind === "click" ? e.campaignId : undefined, source: e.kind === "click" ? e.source : undefined });
          const got = (t: typeof attr.firstTouch) => ({ type: t!.type, at: ts(t!.timestamp), clickId: t!.clickId, linkId: t!.linkId, campaignId: t!.campaignId, source: t!.source });
          expect(got(attr.firstTouch)).toEqual(touch(c.first));
          expect(got(attr.lastTouch)).toEqual(touch(c.last));
          const counts = (field: "linkId" | "campaignId" | "source") => {
            const m = new Map<string, number[]>();
            for (const e of c.clicks) if (e[field] !== undefined) m.set(e[field]!, [...(m.get(e[field]!) ?? []), e.at]);
            return [...m]
              .map(([id, ats]) => ({ id, touches: BigInt(ats.length), firstAt: Math.min(...ats), lastAt: Math.max(...ats) }))
              .sort((x, y) => Number(y.touches - x.touches) || (x.id < y.id ? -1 : 1));
          };
          const gotCounts = (list: typeof attr.links) => list.map((t) => ({ id: t.id, touches: t.touches, firstAt: ts(t.firstAt), lastAt: ts(t.lastAt) }));
          expect(gotCounts(attr.links)).toEqual(counts("linkId"));
          expect(gotCounts(attr.campaigns)).toEqual(counts("campaignId"));
          expect(gotCounts(attr.sources)).toEqual(counts("source"));
          // Multi-touch credits, every model (rest-api.md "Attribution models").
          for (const m of ["first_touch", "last_touch", "linear", "position_based", "time_decay"]) {
            const credited = (await a.getAttribution({ workspaceId: ws, id: c.id, model: m, halfLifeDays: s.halfLifeDays })).attribution!;
            expect(credited.model).toBe(m);
            const want = creditsModel(m, c.clicks, c.sales, s.halfLifeDays);
            const got = credited.credits.map((x) => ({ linkId: x.linkId ?? null, campaignId: x.campaignId ?? null, source: x.source ?? null, weight: x.weight, revenue: Number(x.revenue) }));
            expect(got.map(({ weight: _w, revenue: _r, ...k }) => k), `credits ${m}`).toEqual(want.map(({ weight: _w, revenue: _r, ...k }) => k));
            got.forEach((x, i) => expect(x.weight).toBeCloseTo(want[i]!.weight, 9));
            // Integer splits are exact; time decay's are exact up to how floating point rounds a near-tie.
            if (m === "time_decay") got.forEach((x, i) => expect(Math.abs(x.revenue - want[i]!.revenue)).toBeLessThanOrEqual(1));
            else expect(got.map((x) => x.revenue)).toEqual(want.map((x) => x.revenue));
            if (c.clicks.length > 0) expect(got.reduce((n, x) => n + x.revenue, 0)).toBe(c.revenue);
          }
          // Batches push stats in the background: wait for them to land.
          const want = { leads: BigInt(c.leads), sales: BigInt(c.sales.length), revenue: BigInt(c.revenue), currency: "EUR", first: c.first.at, last: c.last.at };
          let stored_: unknown;
          for (let i = 0; i < 100; i++) {
            const stats = (await customers.getCustomer({ workspaceId: ws, id: c.id })).customer!.stats;
            stored_ = stats && { leads: stats.leads, sales: stats.sales, revenue: stats.revenue, currency: stats.currency, first: ts(stats.firstSeenAt), last: ts(stats.lastSeenAt) };
            if (JSON.stringify(stored_, (_k, v) => (typeof v === "bigint" ? String(v) : v)) === JSON.stringify(want, (_k, v) => (typeof v === "bigint" ? String(v) : v))) break;
            await new Promise((r) => setTimeout(r, 50));
          }
          expect(stored_).toEqual(want);
        }
      }),
      { numRuns: 30, endOnFailure: true, seed: Number(process.env["INVARIANT_SEED"] ?? Date.now() % 2 ** 31) },
    );
  }, 180_000);
});
