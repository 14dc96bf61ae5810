import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { pluginDatabase, startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ts = (iso: string) => timestampFromDate(new Date(iso));

describe("analytics tracking and reads", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics" });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("stitches a late click to the customer that named it and moves its cohort", async () => {
    const { id: ws } = await mesh.workspace({ currency: "EUR" });
    const a = mesh.host.client(AnalyticsService);
    const lead = await a.trackLead({ workspaceId: ws, externalId: "u1", clickId: "c1", eventId: "l1", email: "u1@example.com", timestamp: ts("2026-03-10T10:00:00Z") });
    expect(lead.duplicate).toBe(false);
    expect(lead.customerId).toMatch(/^cus_/);
    const replay = await a.trackLead({ workspaceId: ws, externalId: "u1", eventId: "l1", timestamp: ts("2026-03-10T10:00:00Z") });
    expect(replay).toMatchObject({ eventId: lead.eventId, customerId: lead.customerId, duplicate: true });
    const sale = await a.trackSale({ workspaceId: ws, externalId: "u1", amount: 1500n, currency: "EUR", invoiceId: "inv1", timestamp: ts("2026-04-02T00:00:00Z") });
    expect(sale.customerId).toBe(lead.customerId);
    let cohorts = await a.getCohorts({ workspaceId: ws, groupBy: "month" });
    expect(cohorts.cohorts.map((c) => [c.cohort, c.customers, c.leads, c.sales, c.revenue])).toEqual([["2026-03", 1n, 1n, 1n, 1500n]]);
    // The click arrives late, dated in February: first touch and campaign move.
    const click = await a.trackClick({ workspaceId: ws, clickId: "c1", linkId: "lnk", campaignId: "spring", source: "google", timestamp: ts("2026-02-27T09:00:00Z") });
    expect(click.customerId).toBeUndefined();
    cohorts = await a.getCohorts({ workspaceId: ws, groupBy: "month" });
    expect(cohorts.cohorts.map((c) => [c.cohort, c.customers, c.revenue, c.conversionRate])).toEqual([["2026-02", 1n, 1500n, 1]]);
    const byCampaign = await a.getCohorts({ workspaceId: ws, groupBy: "campaign" });
    expect(byCampaign.cohorts.map((c) => c.cohort)).toEqual(["spring"]);
    const week = await a.getCohorts({ workspaceId: ws, start: "2026-02-27", end: "2026-02-27T09:00:00Z" });
    expect(week.cohorts.map((c) => [c.cohort, c.customers])).toEqual([["2026-W09", 1n]]);
    const none = await a.getCohorts({ workspaceId: ws, start: "2026-02-27T09:00:00.001Z" });
    expect(none.cohorts).toEqual([]);
    const attribution = await a.getAttribution({ workspaceId: ws, id: "ext_u1" });
    expect(attribution.attribution?.firstTouch).toMatchObject({ type: "click", clickId: "c1", linkId: "lnk", campaignId: "spring" });
    expect(attribution.attribution?.links.map((l) => [l.id, l.touches])).toEqual([["lnk", 1n]]);
    const journey = await a.getJourney({ workspaceId: ws, id: lead.customerId! });
    expect(journey.touchpoints.map((t) => t.type)).toEqual(["click", "lead", "sale"]);
    const summary = await a.getJourneySummary({ workspaceId: ws, id: lead.customerId! });
    expect(summary.summary).toMatchObject({ clicks: 1n, leads: 1n, sales: 1n, revenue: 1500n, currency: "EUR" });
    const customer = await mesh.host.client(CustomersService).getCustomer({ workspaceId: ws, id: lead.customerId! });
    expect(customer.customer?.stats).toMatchObject({ leads: 1n, sales: 1n, revenue: 1500n, currency: "EUR" });
    const recalc = await a.recalculateLtv({ workspaceId: ws, id: "ext_u1" });
    expect(recalc.before).toEqual(recalc.after);
  });

  it("rejects bad input with field violations", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const err = await a.trackSale({ workspaceId: ws, externalId: "", amount: -1n, currency: "usd", invoiceId: "" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect(violationsOf(err as ConnectError).map((v) => v.field).sort()).toEqual(["amount", "currency", "externalId", "invoiceId"]);
    const eur = await a.trackSale({ workspaceId: ws, externalId: "x", amount: 1n, currency: "EUR", invoiceId: "i" }).catch((e: unknown) => ConnectError.from(e));
    expect((eur as ConnectError).code).toBe(Code.InvalidArgument);
    const future = await a.trackClick({ workspaceId: ws, clickId: "c", linkId: "l", timestamp: timestampFromDate(new Date(Date.now() + 3_600_000)) }).catch((e: unknown) => ConnectError.from(e));
    expect(violationsOf(future as ConnectError).map((v) => v.field)).toEqual(["timestamp"]);
    const group = await a.getCohorts({ workspaceId: ws, groupBy: "day" }).catch((e: unknown) => ConnectError.from(e));
    expect(violationsOf(group as ConnectError).map((v) => v.field)).toEqual(["group_by"]);
    const order = await a.getCohorts({ workspaceId: ws, start: "2026-02-02", end: "2026-02-01" }).catch((e: unknown) => ConnectError.from(e));
    expect((order as ConnectError).code).toBe(Code.InvalidArgument);
    const missing = await a.getJourney({ workspaceId: ws, id: "cus_nope" }).catch((e: unknown) => ConnectError.from(e));
    expect((missing as ConnectError).code).toBe(Code.NotFound);
  });

  it("ingests a batch with per-event results and scrubs PII idempotently", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const events = [
      { event: { case: "click" as const, value: { workspaceId: "", clickId: "k1", linkId: "l1", timestamp: ts("2026-01-05T00:00:00Z") } } },
      { event: { case: "lead" as const, value: { workspaceId: "", externalId: "b1", email: "b1@example.com", clickId: "k1", eventId: "e1", timestamp: ts("2026-01-06T00:00:00Z") } } },
      { event: { case: "sale" as const, value: { workspaceId: "", externalId: "b1", amount: 10n, currency: "USD", invoiceId: "s1", timestamp: ts("2026-01-07T00:00:00Z") } } },
      { event: { case: "sale" as const, value: { workspaceId: "", externalId: "b1", amount: 10n, currency: "USD", invoiceId: "s1", timestamp: ts("2026-01-07T00:00:00Z") } } },
      { event: { case: "sale" as const, value: { workspaceId: "", externalId: "b1", amount: 10n, currency: "GBP", invoiceId: "s2" } } },
    ];
    const res = await a.trackBatch({ workspaceId: ws, events: events as never });
    expect(res.results.map((r) => r.duplicate)).toEqual([false, false, false, true, false]);
    expect(res.results[4]!.error).toMatch(/currency/);
    expect(res.results[3]!.eventId).toBe(res.results[2]!.eventId);
    const cust = res.results[1]!.customerId!;
    const summary = await a.getJourneySummary({ workspaceId: ws, id: cust });
    expect(summary.summary).toMatchObject({ clicks: 1n, leads: 1n, sales: 1n, revenue: 10n, timeToFirstSaleSeconds: 2n * 86400n });
    expect((await a.scrubCustomer({ workspaceId: ws, customerId: cust })).scrubbedEvents).toBe(2n);
    expect((await a.scrubCustomer({ workspaceId: ws, customerId: cust })).scrubbedEvents).toBe(0n);
    const journeyOf = async () => (await a.getJourney({ workspaceId: ws, id: cust })).touchpoints.map((t) => [t.type, timestampDate(t.timestamp!).toISOString()]);
    const journey = await journeyOf();
    expect(journey).toEqual([
      ["click", "2026-01-05T00:00:00.000Z"],
      ["lead", "2026-01-06T00:00:00.000Z"],
      ["sale", "2026-01-07T00:00:00.000Z"],
    ]);
    // A short sub-hour edge of a partial day reads the anchor-hour member lists (first touch: the click, 01-05 00:00).
    const partialDay = async () =>
      (await a.getCohorts({ workspaceId: ws, groupBy: "week", start: "2026-01-04T12:00:00Z", end: "2026-01-05T00:20:00Z" })).cohorts.map((c) => [c.cohort, c.customers]);
    expect(await partialDay()).toEqual([["2026-W02", 1n]]);
    // Member lists are derived: a rebuild recreates them from the raw events.
    const { db, close } = await pluginDatabase(mesh, "analytics");
    await db.collection("member_buckets").deleteMany({ workspaceId: ws });
    await close();
    expect(await partialDay()).toEqual([]);
    const rebuilt = await a.rebuildWorkspace({ workspaceId: ws });
    expect(rebuilt).toMatchObject({ customers: 1n, events: 3n });
    expect(await journeyOf()).toEqual(journey);
    expect(await partialDay()).toEqual([["2026-W02", 1n]]);
    const cohorts = await a.getCohorts({ workspaceId: ws, groupBy: "week" });
    expect(cohorts.cohorts.map((c) => [c.cohort, c.customers, c.sales, c.revenue])).toEqual([["2026-W02", 1n, 1n, 10n]]);
  });

  it("answers the whole hours of a partial day from hour cells, short sub-hour edges from the member lists and long ones as the hour's cell less the members outside", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const events = [
      // 10:15 spring/google; 10:45 a campaign with "|" and no source; 11:30 no click at all; 12:10 no campaign, the source "null".
      { event: { case: "click" as const, value: { workspaceId: "", clickId: "k1", linkId: "l1", campaignId: "spring", source: "google", timestamp: ts("2026-01-05T10:15:00Z") } } },
      { event: { case: "click" as const, value: { workspaceId: "", clickId: "k2", linkId: "l1", campaignId: "a|k:b", timestamp: ts("2026-01-05T10:45:00Z") } } },
      { event: { case: "click" as const, value: { workspaceId: "", clickId: "k4", linkId: "l1", source: "null", timestamp: ts("2026-01-05T12:10:00Z") } } },
      { event: { case: "lead" as const, value: { workspaceId: "", externalId: "p1", clickId: "k1", eventId: "e1", timestamp: ts("2026-01-05T15:00:00Z") } } },
      { event: { case: "lead" as const, value: { workspaceId: "", externalId: "p2", clickId: "k2", eventId: "e2", timestamp: ts("2026-01-05T15:00:00Z") } } },
      { event: { case: "lead" as const, value: { workspaceId: "", externalId: "p3", eventId: "e3", timestamp: ts("2026-01-05T11:30:00Z") } } },
      { event: { case: "lead" as const, value: { workspaceId: "", externalId: "p4", clickId: "k4", eventId: "e4", timestamp: ts("2026-01-05T15:00:00Z") } } },
      { event: { case: "sale" as const, value: { workspaceId: "", externalId: "p1", amount: 70n, currency: "USD", invoiceId: "s1", timestamp: ts("2026-01-06T00:00:00Z") } } },
    ];
    const res = await a.trackBatch({ workspaceId: ws, events: events as never });
    expect(res.results.every((r) => r.error === undefined)).toBe(true);
    const rows = async (groupBy: string, start: string, end: string) =>
      (await a.getCohorts({ workspaceId: ws, groupBy, start, end })).cohorts.map((c) => [c.cohort ?? null, c.customers, c.revenue]);
    // 10:00–11:59:59.999 whole, and a millisecond of each neighbouring hour at the edges.
    const whole = async () => ({
      campaign: await rows("campaign", "2026-01-05T09:59:59.999Z", "2026-01-05T12:00:00.000Z"),
      source: await rows("source", "2026-01-05T09:59:59.999Z", "2026-01-05T12:00:00.000Z"),
      week: await rows("week", "2026-01-05T09:59:59.999Z", "2026-01-05T12:00:00.000Z"),
      month: await rows("month", "2026-01-05T09:59:59.999Z", "2026-01-05T12:00:00.000Z"),
    });
    const expected = {
      campaign: [["a|k:b", 1n, 0n], ["spring", 1n, 70n], [null, 1n, 0n]],
      source: [["google", 1n, 70n], [null, 2n, 0n]],
      week: [["2026-W02", 3n, 70n]],
      month: [["2026-01", 3n, 70n]],
    };
    expect(await whole()).toEqual(expected);
    // A short sub-hour edge (at most half an hour): 12:05 to 12:30 holds the 12:10 customer (source "null", not null).
    const edge = () => rows("source", "2026-01-05T12:05:00Z", "2026-01-05T12:30:00Z");
    expect(await edge()).toEqual([["null", 1n, 0n]]);
    // Long edges: the 12:00 hour's cell, less its members anchored outside the range.
    const longEdge = () => rows("source", "2026-01-05T12:09:00Z", "2026-01-05T12:59:00Z");
    expect(await longEdge()).toEqual([["null", 1n, 0n]]);
    expect(await rows("source", "2026-01-05T12:11:00Z", "2026-01-05T12:59:00Z")).toEqual([]);
    expect(await rows("source", "2026-01-05T12:00:00Z", "2026-01-05T12:10:00Z")).toEqual([["null", 1n, 0n]]);

    const { db, close } = await pluginDatabase(mesh, "analytics");
    try {
      // Without the member lists the whole hours and the long edge still answer; the short edge does not.
      await db.collection("member_buckets").deleteMany({ workspaceId: ws });
      expect(await whole()).toEqual(expected);
      expect(await longEdge()).toEqual([["null", 1n, 0n]]);
      expect(await edge()).toEqual([]);
      // Without the hour cells the whole hours answer nothing: that is where they come from.
      expect(await db.collection("cohort_hour_cells").countDocuments({ workspaceId: ws })).toBe(4);
      await db.collection("cohort_hour_cells").deleteMany({ workspaceId: ws });
      expect((await whole()).campaign).toEqual([]);
      // A rebuild derives both again.
      await a.rebuildWorkspace({ workspaceId: ws });
      expect(await whole()).toEqual(expected);
      expect(await edge()).toEqual([["null", 1n, 0n]]);
    } finally {
      await close();
    }
  });

  it("records concurrent registrations of a workspace together: each customer once, in the cohort of its creation time, the same as a rebuild", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const at = (i: number) => ts(`2026-0${1 + (i % 3)}-1${i % 10}T0${i % 10}:00:00Z`);
    const ids = Array.from({ length: 30 }, (_, i) => `cus_reg${i}`);
    // 30 at once, one of them twice, and one customer that already has a touchpoint.
    await a.trackLead({ workspaceId: ws, externalId: "toucher", eventId: "t1", timestamp: ts("2026-05-01T00:00:00Z") });
    const toucher = (await mesh.host.client(CustomersService).getCustomer({ workspaceId: ws, id: "ext_toucher" })).customer!.id;
    const answers = await Promise.all([
      ...ids.map((customerId, i) => a.registerCustomer({ workspaceId: ws, customerId, createdAt: at(i) })),
      a.registerCustomer({ workspaceId: ws, customerId: ids[0]!, createdAt: at(0) }),
      a.registerCustomer({ workspaceId: ws, customerId: toucher, createdAt: ts("2026-04-01T00:00:00Z") }),
    ]);
    expect(answers.slice(0, 30).every((r) => r.registered)).toBe(true);
    // The repeat finds the creation time recorded (by its own batch or an earlier one).
    expect(answers[30]!.registered).toBe(false);
    // The customer with a touchpoint gets its creation time, but its first touch stays its cohort anchor.
    expect(answers[31]!.registered).toBe(true);
    const cohorts = async () => (await a.getCohorts({ workspaceId: ws, groupBy: "month" })).cohorts.map((c) => [c.cohort, c.customers]);
    const expected = [["2026-01", 10n], ["2026-02", 10n], ["2026-03", 10n], ["2026-05", 1n]];
    expect(await cohorts()).toEqual(expected);
    expect((await a.registerCustomer({ workspaceId: ws, customerId: ids[5]!, createdAt: at(5) })).registered).toBe(false);
    // The rollups written by the batches are those a rebuild computes from scratch.
    await a.rebuildWorkspace({ workspaceId: ws });
    expect(await cohorts()).toEqual(expected);
  });
});

describe("analytics with the customers service unreachable", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    const { freePort } = await import("@linquid/mesh");
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,analytics", CUSTOMERS_ADDR: `http://127.0.0.1:${await freePort()}` });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("answers Unavailable for events needing a customer and writes nothing for them", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    await a.trackClick({ workspaceId: ws, clickId: "c1", linkId: "l1" });
    const err = await a.trackLead({ workspaceId: ws, externalId: "u1", clickId: "c1", eventId: "e1" }).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    const batch = await a
      .trackBatch({ workspaceId: ws, events: [{ event: { case: "sale", value: { workspaceId: ws, externalId: "u1", amount: 1n, currency: "USD", invoiceId: "i1" } } }] as never })
      .catch((e: unknown) => ConnectError.from(e));
    expect((batch as ConnectError).code).toBe(Code.Unavailable);
    // Only the click is stored, and nobody claimed it.
    expect(await a.rebuildWorkspace({ workspaceId: ws })).toMatchObject({ events: 1n, customers: 0n });
    expect((await a.getCohorts({ workspaceId: ws })).cohorts).toEqual([]);
  });
});
