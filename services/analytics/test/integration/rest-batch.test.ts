/**
 * POST /track/batch through the real gateway: results in order, each the single route's answer
 * or the item's own error; a bad item never sinks the others; idempotency per item, a replay
 * inside one batch included; scope, entitlement, one request against the rate budget, and the
 * whole request refused over 1,000 items or over the body limit. Concurrent single calls, which
 * the service gathers into batches, each get their own answer.
 */
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const evt = expect.stringMatching(/^evt_/);
const cus = expect.stringMatching(/^cus_/);

describe("POST /track/batch", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ CACHE_TTL_SECONDS: "0" });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("answers every item in order, refuses bad items alone and counts replays once", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const events = [
      { type: "click", clickId: "c1", linkId: "l1", campaignId: "spring", timestamp: "2026-03-01T10:00:00Z" },
      { type: "lead", externalId: "u1", clickId: "c1", eventId: "e1", email: "u1@example.com", timestamp: "2026-03-02T10:00:00Z" },
      { type: "sale", externalId: "u1", amount: 1999, currency: "USD", invoiceId: "i1", timestamp: "2026-03-03T10:00:00Z" },
      { type: "event", externalId: "u1", eventName: "upgrade", eventId: "x1", metadata: { plan: "pro" }, timestamp: "2026-03-04T10:00:00Z" },
      // The same invoice again, in the same batch: a replay.
      { type: "sale", externalId: "u1", amount: 1999, currency: "USD", invoiceId: "i1", timestamp: "2026-03-03T10:00:00Z" },
      { type: "sale", externalId: "u1", amount: 5, currency: "EUR", invoiceId: "i2" },
      { type: "sale", externalId: "u1", amount: "lots", currency: "USD", invoiceId: "i3", colour: "red" },
      { type: "lead", workspaceId: "ws_other", externalId: "u2" },
      { type: "purchase", externalId: "u1" },
      { externalId: "u1" },
      42,
      { type: "lead", externalId: "u3", timestamp: "yesterday" },
      { type: "click", clickId: "c2", linkId: "l2", source: "newsletter", timestamp: "2026-03-05T10:00:00Z" },
    ];
    const res = await mesh.request("POST", "/track/batch", { key, body: { events } });
    expect(res.status).toBe(200);
    expect(res.body.success).toBe(true);
    const results = res.body.data.results as Array<Record<string, any>>;
    expect(results).toHaveLength(events.length);
    const ok = (customerId: unknown, duplicate = false) => ({ eventId: evt, customerId, duplicate, error: null });
    expect(results[0]).toEqual(ok(null));
    expect(results[1]).toEqual(ok(cus));
    expect(results[2]).toEqual(ok(results[1]!["customerId"]));
    expect(results[3]).toEqual(ok(results[1]!["customerId"]));
    expect(results[4]).toEqual({ ...results[2], duplicate: true });
    const refused = (field: string, issue: unknown = expect.any(String)) => ({
      eventId: null,
      customerId: null,
      duplicate: null,
      error: { code: "VALIDATION_ERROR", message: expect.any(String), details: expect.arrayContaining([{ field, issue }]) },
    });
    expect(results[5]).toEqual(refused("currency", "must be the workspace's reporting currency USD"));
    expect(results[6]).toEqual(refused("amount"));
    expect(results[6]!["error"].details).toEqual([
      { field: "amount", issue: expect.stringMatching(/integer/) },
      { field: "colour", issue: "unknown field" },
    ]);
    expect(results[7]).toEqual(refused("workspaceId", "unknown field"));
    expect(results[8]).toEqual(refused("type", "must be one of click, lead, sale, event"));
    expect(results[9]).toEqual(refused("type"));
    expect(results[10]).toEqual(refused("type"));
    expect(results[11]).toEqual(refused("timestamp"));
    expect(results[12]).toEqual(ok(null));

    // The same answers as the single routes give, and the batch again is all replays.
    const single = await mesh.request("POST", "/track/sale", { key, body: { externalId: "u1", amount: 1999, currency: "USD", invoiceId: "i1", timestamp: "2026-03-03T10:00:00Z" } });
    expect(single.body.data).toEqual({ eventId: results[2]!["eventId"], customerId: results[2]!["customerId"], duplicate: true });
    const again = await mesh.request("POST", "/track/batch", { key, body: { events } });
    const replayed = again.body.data.results as Array<Record<string, any>>;
    for (const i of [0, 1, 2, 3, 4, 12]) expect(replayed[i]).toEqual({ ...results[i], duplicate: true });
    expect(replayed.slice(5, 12)).toEqual(results.slice(5, 12));

    // Counted once: one customer, one lead, one sale.
    const cohorts = await mesh.request("GET", "/customers/cohorts?group_by=month", { key });
    expect(cohorts.body.data).toEqual([{ cohort: "2026-03", customers: 1, leads: 1, sales: 1, revenue: 1999, conversionRate: 1 }]);
    const journey = await mesh.request("GET", "/customers/ext_u1/journey", { key });
    expect(journey.body.data.map((t: { type: string }) => t.type)).toEqual(["click", "lead", "sale", "custom"]);
  });

  it("refuses the whole request without items, over 1,000 items, without an array, or over the body limit", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const click = (i: number) => ({ type: "click", clickId: `c${i}`, linkId: "l" });
    const empty = await mesh.request("POST", "/track/batch", { key, body: { events: [] } });
    expect(empty.status).toBe(400);
    expect(empty.body.error).toMatchObject({ code: "VALIDATION_ERROR", details: [{ field: "events", issue: "must hold 1 to 1,000 items" }] });
    const tooMany = await mesh.request("POST", "/track/batch", { key, body: { events: Array.from({ length: 1001 }, (_, i) => click(i)) } });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.details).toEqual([{ field: "events", issue: "must hold 1 to 1,000 items" }]);
    const notArray = await mesh.request("POST", "/track/batch", { key, body: { events: { type: "click" } } });
    expect(notArray.status).toBe(400);
    expect(notArray.body.error.details).toEqual([expect.objectContaining({ field: "events" })]);
    const unknown = await mesh.request("POST", "/track/batch", { key, body: { events: [click(1)], dryRun: true } });
    expect(unknown.status).toBe(400);
    const padding = "x".repeat(1100);
    const huge = await mesh.request("POST", "/track/batch", { key, body: { events: Array.from({ length: 1000 }, (_, i) => ({ ...click(i), referrer: padding })) } });
    expect(huge.status).toBe(413);
    // Nothing of the refused requests was stored; a full batch of 1,000 is taken.
    const full = await mesh.request("POST", "/track/batch", { key, body: { events: Array.from({ length: 1000 }, (_, i) => click(i)) } });
    expect(full.status).toBe(200);
    expect((full.body.data.results as Array<{ duplicate: boolean }>).every((r) => r.duplicate === false)).toBe(true);
  });

  it("answers concurrent single /track/* calls, gathered into batches, each with its own outcome", async () => {
    const { key } = await mesh.workspace({ currency: "USD" });
    const post = (path: string, body: object) => mesh.request("POST", path, { key, body });
    const calls = [
      ...Array.from({ length: 10 }, (_, i) => post("/track/lead", { externalId: `u${i}`, eventId: `l${i}`, clickId: `c${i}`, timestamp: "2026-05-01T10:00:00Z" })),
      ...Array.from({ length: 10 }, (_, i) => post("/track/sale", { externalId: `u${i}`, amount: 100 + i, currency: "USD", invoiceId: `i${i}`, timestamp: "2026-05-02T10:00:00Z" })),
      // Replays of five invoices, sent at the same time as the originals.
      ...Array.from({ length: 5 }, (_, i) => post("/track/sale", { externalId: `u${i}`, amount: 100 + i, currency: "USD", invoiceId: `i${i}`, timestamp: "2026-05-02T10:00:00Z" })),
      ...Array.from({ length: 4 }, (_, i) => post("/track/click", { clickId: `c${i}`, linkId: "l", timestamp: "2026-04-30T10:00:00Z" })),
      post("/track/sale", { externalId: "u0", amount: 1, currency: "EUR", invoiceId: "eur" }),
    ];
    const answers = await Promise.all(calls);
    expect(answers.slice(0, 29).map((r) => r.status)).toEqual(new Array(29).fill(200));
    expect(answers[29]!.status).toBe(400);
    expect(answers[29]!.body.error.details).toEqual([{ field: "currency", issue: "must be the workspace's reporting currency USD" }]);
    const leads = answers.slice(0, 10).map((r) => r.body.data);
    for (let i = 0; i < 10; i++) {
      const sale = answers[10 + i]!.body.data;
      expect(sale.customerId).toBe(leads[i].customerId);
      if (i < 5) {
        const replay = answers[20 + i]!.body.data;
        expect(replay.eventId).toBe(sale.eventId);
        expect([sale.duplicate, replay.duplicate].sort()).toEqual([false, true]);
      } else expect(sale.duplicate).toBe(false);
    }
    // Each answer came once its customer's stats were pushed: the records show every sale once.
    for (let i = 0; i < 10; i++) {
      const customer = await mesh.request("GET", `/customers/ext_u${i}`, { key });
      expect(customer.body.data.stats).toMatchObject({ leads: 1, sales: 1, revenue: 100 + i });
    }
    const byMonth = await mesh.request("GET", "/customers/cohorts?group_by=campaign", { key });
    expect(byMonth.body.data).toEqual([{ cohort: null, customers: 10, leads: 10, sales: 10, revenue: 1045, conversionRate: 1 }]);
    const journey = await mesh.request("GET", "/customers/ext_u2/journey", { key });
    expect(journey.body.data.map((t: { type: string }) => t.type)).toEqual(["click", "lead", "sale"]);
  });

  it("needs events:write and revenue tracking, and spends one request of the budget", async () => {
    const { key: readOnly } = await mesh.workspace({ scopes: ["links:read"] });
    const body = { events: [{ type: "click", clickId: "c1", linkId: "l1" }] };
    expect((await mesh.request("POST", "/track/batch", { key: readOnly, body })).body.error.code).toBe("FORBIDDEN");
    const { key: starter } = await mesh.workspace({ plan: "starter" });
    expect((await mesh.request("POST", "/track/batch", { key: starter, body })).body.error.code).toBe("FEATURE_NOT_AVAILABLE");
    const { key } = await mesh.workspace({ rateLimit: 3 });
    const many = { events: Array.from({ length: 50 }, (_, i) => ({ type: "click", clickId: `c${i}`, linkId: "l" })) };
    const first = await mesh.request("POST", "/track/batch", { key, body: many });
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-remaining")).toBe("2");
    await mesh.request("POST", "/track/batch", { key, body: many });
    await mesh.request("POST", "/track/batch", { key, body: many });
    const over = await mesh.request("POST", "/track/batch", { key, body: many });
    expect(over.status).toBe(429);
  });
});
