/**
 * The analytics routes through the real gateway: tracking answers, snapshot caching with
 * read-your-writes, running without Redis, and an analytics outage that the API survives.
 */
import { freePort } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("analytics over REST", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh();
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("answers /track/* with eventId, customerId and duplicate", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const click = await mesh.request("POST", "/track/click", { key, body: { clickId: "c1", linkId: "l1", campaignId: "spring", timestamp: "2026-03-01T10:00:00Z" } });
    expect(click.status).toBe(200);
    expect(click.body).toEqual({ success: true, data: { eventId: expect.stringMatching(/^evt_/), customerId: null, duplicate: false } });
    const lead = await mesh.request("POST", "/track/lead", { key, body: { externalId: "u1", clickId: "c1", eventId: "e1", timestamp: "2026-03-02T10:00:00Z" } });
    expect(lead.body.data).toMatchObject({ customerId: expect.stringMatching(/^cus_/), duplicate: false });
    const again = await mesh.request("POST", "/track/lead", { key, body: { externalId: "u1", eventId: "e1", timestamp: "2026-03-02T10:00:00Z" } });
    expect(again.body.data).toEqual({ ...lead.body.data, duplicate: true });
    const sale = await mesh.request("POST", "/track/sale", { key, body: { externalId: "u1", amount: 1999, currency: "USD", invoiceId: "i1" } });
    expect(sale.body.data.customerId).toBe(lead.body.data.customerId);
    const eur = await mesh.request("POST", "/track/sale", { key, body: { externalId: "u1", amount: 5, currency: "EUR", invoiceId: "i2" } });
    expect(eur.status).toBe(400);
    expect(eur.body.error.code).toBe("VALIDATION_ERROR");
    expect(eur.body.error.details).toEqual([{ field: "currency", issue: "must be the workspace's reporting currency USD" }]);
    const bad = await mesh.request("GET", "/customers/cohorts?group_by=year", { key });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details).toEqual([expect.objectContaining({ field: "group_by" })]);
    const attribution = await mesh.request("GET", "/customers/ext_u1/attribution", { key });
    expect(attribution.body.data.firstTouch).toMatchObject({ type: "click", clickId: "c1", campaignId: "spring" });
    const summary = await mesh.request("GET", "/customers/ext_u1/journey?summary=true", { key });
    expect(summary.body.data).toMatchObject({ clicks: 1, leads: 1, sales: 1, revenue: 1999, currency: "USD" });
  });

  it("credits a customer's revenue to its clicks under each attribution model", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const events = [
      { type: "click", clickId: "m1", linkId: "lnk_a", campaignId: "spring", source: "google", timestamp: "2026-02-01T00:00:00Z" },
      { type: "click", clickId: "m2", linkId: "lnk_b", timestamp: "2026-02-08T00:00:00Z" },
      { type: "click", clickId: "m3", linkId: "lnk_c", timestamp: "2026-02-15T00:00:00Z" },
      ...["m1", "m2", "m3"].map((clickId, i) => ({ type: "lead", externalId: "multi", clickId, eventId: `ml${i}`, timestamp: "2026-02-15T00:00:00Z" })),
      { type: "sale", externalId: "multi", amount: 1000, currency: "USD", invoiceId: "mi1", timestamp: "2026-02-15T00:00:00Z" },
    ];
    expect((await mesh.request("POST", "/track/batch", { key, body: { events } })).status).toBe(200);
    const credits = async (query: string) => (await mesh.request("GET", `/customers/ext_multi/attribution?${query}`, { key })).body.data;
    const linear = await credits("model=linear");
    expect(linear.model).toBe("linear");
    expect(linear.credits.map((c: { linkId: string; revenue: number }) => [c.linkId, c.revenue])).toEqual([["lnk_a", 334], ["lnk_b", 333], ["lnk_c", 333]]);
    expect(linear.credits[0]).toEqual({ linkId: "lnk_a", campaignId: "spring", source: "google", weight: 1 / 3, revenue: 334 });
    expect((await credits("model=position_based")).credits.map((c: { revenue: number }) => c.revenue)).toEqual([400, 200, 400]);
    // Clicks a week apart with a half-life of a week: 1 : 2 : 4.
    expect((await credits("model=time_decay")).credits.map((c: { revenue: number }) => c.revenue)).toEqual([143, 286, 571]);
    expect((await credits("model=time_decay&halfLifeDays=1000")).credits.map((c: { revenue: number }) => c.revenue)).toEqual([332, 333, 335]);
    expect((await credits("")).credits).toEqual([]);
    const bad = await mesh.request("GET", "/customers/ext_multi/attribution?model=w_shaped&halfLifeDays=0", { key });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(["halfLifeDays", "model"]);
  });

  it("reports the workspace's revenue credited per link, campaign or source, re-credited by a late click, deleted customers included", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const track = async (events: unknown[]) => {
      const r = await mesh.request("POST", "/track/batch", { key, body: { events } });
      expect(r.status).toBe(200);
      return r.body.data.results as Array<{ customerId: string | null }>;
    };
    await track([
      { type: "click", clickId: "w1", linkId: "lnk_a", campaignId: "spring", source: "google", timestamp: "2026-02-01T00:00:00Z" },
      { type: "click", clickId: "w2", linkId: "lnk_b", timestamp: "2026-02-08T00:00:00Z" },
      { type: "lead", externalId: "wa", clickId: "w1", eventId: "wl1", timestamp: "2026-02-01T00:00:00Z" },
      { type: "lead", externalId: "wa", clickId: "w2", eventId: "wl2", timestamp: "2026-02-08T00:00:00Z" },
      { type: "sale", externalId: "wa", amount: 1000, currency: "USD", invoiceId: "wi1", timestamp: "2026-02-10T00:00:00Z" },
      { type: "click", clickId: "w3", linkId: "lnk_a", campaignId: "spring", timestamp: "2026-02-20T00:00:00Z" },
      { type: "lead", externalId: "wb", clickId: "w3", eventId: "wl3", timestamp: "2026-02-20T00:00:00Z" },
      { type: "sale", externalId: "wb", amount: 500, currency: "USD", invoiceId: "wi2", timestamp: "2026-02-21T00:00:00Z" },
      { type: "sale", externalId: "wb", amount: 300, currency: "USD", invoiceId: "wi3", timestamp: "2026-03-05T00:00:00Z" },
      // A customer without clicks: its sale is credited to nobody.
      { type: "sale", externalId: "wc", amount: 70, currency: "USD", invoiceId: "wi4", timestamp: "2026-02-11T00:00:00Z" },
    ]);
    const report = async (query: string) => {
      const r = await mesh.request("GET", `/analytics/attribution?${query}`, { key });
      expect(r.status).toBe(200);
      return r.body.data;
    };
    expect(await report("model=first_touch&group_by=link")).toEqual([{ key: "lnk_a", revenue: 1800, sales: 3, customers: 2 }]);
    // A click tracked late, before every other click of "wa": its sale's first touch moves to it.
    await track([
      { type: "click", clickId: "w0", linkId: "lnk_c", timestamp: "2026-01-15T00:00:00Z" },
      { type: "lead", externalId: "wa", clickId: "w0", eventId: "wl0", timestamp: "2026-01-15T00:00:00Z" },
    ]);
    const firstTouch = [
      { key: "lnk_c", revenue: 1000, sales: 1, customers: 1 },
      { key: "lnk_a", revenue: 800, sales: 2, customers: 1 },
    ];
    expect(await report("model=first_touch&group_by=link")).toEqual(firstTouch);
    // By sale day: February, then March, where "wb" counts once more (it credited lnk_a before).
    expect(await report("model=first_touch&group_by=link&start=2026-02-01&end=2026-02-28")).toEqual([
      { key: "lnk_c", revenue: 1000, sales: 1, customers: 1 },
      { key: "lnk_a", revenue: 500, sales: 1, customers: 1 },
    ]);
    expect(await report("model=first_touch&group_by=link&start=2026-03-01")).toEqual([{ key: "lnk_a", revenue: 300, sales: 1, customers: 1 }]);
    expect(await report("model=first_touch&group_by=link&end=2026-01-31")).toEqual([]);
    // Linear by campaign: "wa"'s 1,000 over three clicks, two without a campaign (null).
    const linear = [
      { key: "spring", revenue: 1133, sales: 3, customers: 2 },
      { key: null, revenue: 667, sales: 1, customers: 1 },
    ];
    expect(await report("model=linear&group_by=campaign")).toEqual(linear);
    const sources = await report("model=time_decay&group_by=source");
    expect(sources.reduce((n: number, r: { revenue: number }) => n + r.revenue, 0)).toBe(1800);
    // A deleted customer keeps counting.
    const wb = await mesh.request("GET", "/customers/ext_wb", { key });
    expect((await mesh.request("DELETE", `/customers/${wb.body.data.id}`, { key })).status).toBeLessThan(300);
    expect(await report("model=first_touch&group_by=link")).toEqual(firstTouch);
    expect(await report("model=linear&group_by=campaign")).toEqual(linear);
    // Refusals: model and group_by are required, ranges are whole UTC days.
    const bad = await mesh.request("GET", "/analytics/attribution?group_by=week&start=2026-02-01T00:00:00Z", { key });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(["group_by", "model", "start"]);
    const reversed = await mesh.request("GET", "/analytics/attribution?model=linear&group_by=link&start=2026-03-01&end=2026-02-01", { key });
    expect(reversed.status).toBe(400);
    const { key: narrow } = await mesh.workspace({ currency: "USD", scopes: ["links:read"] });
    expect((await mesh.request("GET", "/analytics/attribution?model=linear&group_by=link", { key: narrow })).status).toBe(403);
  });

  it("caches reads and makes the next read fresh after a track call", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    await mesh.request("POST", "/track/sale", { key, body: { externalId: "u1", amount: 100, currency: "USD", invoiceId: "a", timestamp: "2026-01-10T00:00:00Z" } });
    const first = await mesh.request("GET", "/customers/cohorts?group_by=month", { key });
    expect(first.headers.get("x-cache")).toBe("MISS");
    const second = await mesh.request("GET", "/customers/cohorts?group_by=month", { key });
    expect(second.headers.get("x-cache")).toBe("HIT");
    expect(second.body).toEqual(first.body);
    await mesh.request("POST", "/track/sale", { key, body: { externalId: "u1", amount: 50, currency: "USD", invoiceId: "b", timestamp: "2026-01-11T00:00:00Z" } });
    const third = await mesh.request("GET", "/customers/cohorts?group_by=month", { key });
    expect(third.body.data).toEqual([{ cohort: "2026-01", customers: 1, leads: 0, sales: 2, revenue: 150, conversionRate: 1 }]);
  });

  it("places a customer without touchpoints in the cohort of its creation time, until its first event", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const created = await mesh.request("POST", "/customers", { key, body: { externalId: "quiet", email: "q@example.com" } });
    expect(created.status).toBe(201);
    const month = (created.body.data.createdAt as string).slice(0, 7);
    const byMonth = await mesh.request("GET", "/customers/cohorts?group_by=month", { key });
    expect(byMonth.body.data).toEqual([{ cohort: month, customers: 1, leads: 0, sales: 0, revenue: 0, conversionRate: 0 }]);
    const ltv = await mesh.request("GET", "/customers/ltv-cohorts?months=1", { key });
    expect(ltv.body.data).toEqual([expect.objectContaining({ cohort: month, customers: 1 })]);
    // A touchpoint, even one before the creation, becomes the first touch.
    await mesh.request("POST", "/track/lead", { key, body: { externalId: "quiet", eventId: "l1", timestamp: "2026-01-10T00:00:00Z" } });
    const moved = await mesh.request("GET", "/customers/cohorts?group_by=month", { key });
    expect(moved.body.data).toEqual([{ cohort: "2026-01", customers: 1, leads: 1, sales: 0, revenue: 0, conversionRate: 0 }]);
  });
});

describe("analytics over REST without Redis", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("still answers correctly, uncached", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    await mesh.request("POST", "/track/sale", { key, body: { externalId: "u1", amount: 100, currency: "USD", invoiceId: "a", timestamp: "2026-01-10T00:00:00Z" } });
    for (let i = 0; i < 2; i++) {
      const r = await mesh.request("GET", "/customers/cohorts?group_by=week", { key });
      expect(r.status).toBe(200);
      expect(r.headers.get("x-cache")).not.toBe("HIT");
      expect(r.body.data).toEqual([{ cohort: "2026-W02", customers: 1, leads: 0, sales: 1, revenue: 100, conversionRate: 1 }]);
    }
  });
});

describe("analytics outage", () => {
  let main: TestMesh;
  let analytics: TestMesh | undefined;
  let port: number;
  const prefix = `tout${Date.now().toString(36)}`;
  const startAnalytics = () =>
    startTestMesh({ MESH_PLUGINS: "analytics", GRPC_PORT: String(port), MONGODB_DB_PREFIX: prefix, CUSTOMERS_ADDR: main.host.grpcUrl!, WORKSPACES_ADDR: main.host.grpcUrl! });
  beforeAll(async () => {
    port = await freePort();
    main = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,gateway", ANALYTICS_ADDR: `http://127.0.0.1:${port}`, CACHE_TTL_SECONDS: "0" });
    analytics = await startAnalytics();
  });
  afterAll(async () => {
    await analytics?.stop();
    await main?.stop();
  });

  it("answers 503 on analytics routes while customers keep working, and recovers without restart", async () => {
    const { key } = await main.workspace({ currency: "USD" });
    const ok = await main.request("POST", "/track/lead", { key, body: { externalId: "u1", eventId: "e1" } });
    expect(ok.status).toBe(200);
    await analytics!.stop();
    analytics = undefined;
    const down = await main.request("GET", "/customers/cohorts", { key });
    expect(down.status).toBe(503);
    expect(down.body.error.code).toBe("SERVICE_UNAVAILABLE");
    expect((await main.request("POST", "/track/click", { key, body: { clickId: "c", linkId: "l" } })).status).toBe(503);
    const list = await main.request("GET", "/customers", { key });
    expect(list.status).toBe(200);
    expect(list.body.data.map((c: { externalId: string }) => c.externalId)).toEqual(["u1"]);
    analytics = await startAnalytics();
    let back = await main.request("GET", "/customers/cohorts", { key });
    for (let i = 0; i < 50 && back.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      back = await main.request("GET", "/customers/cohorts", { key });
    }
    expect(back.status).toBe(200);
    expect(back.body.data).toEqual([expect.objectContaining({ customers: 1, leads: 1 })]);
  });

  it("records a customer created while analytics is down once it is back (creation-time cohort)", async () => {
    const { key } = await main.workspace({ currency: "USD" });
    await analytics!.stop();
    analytics = undefined;
    const created = await main.request("POST", "/customers", { key, body: { externalId: "while-down" } });
    expect(created.status).toBe(201);
    analytics = await startAnalytics();
    // The customers service's sweeper retries every 3 s.
    let cohorts = await main.request("GET", "/customers/cohorts?group_by=month", { key });
    for (let i = 0; i < 100 && !(cohorts.status === 200 && cohorts.body.data.length === 1); i++) {
      await new Promise((r) => setTimeout(r, 100));
      cohorts = await main.request("GET", "/customers/cohorts?group_by=month", { key });
    }
    expect(cohorts.body.data).toEqual([{ cohort: (created.body.data.createdAt as string).slice(0, 7), customers: 1, leads: 0, sales: 0, revenue: 0, conversionRate: 0 }]);
  });
});
