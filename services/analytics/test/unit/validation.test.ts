import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { TrackClickRequestSchema, TrackEventRequestSchema, TrackLeadRequestSchema, TrackSaleRequestSchema } from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { checkClick, checkCustom, checkLead, checkSale, checkTracked, MAX_FUTURE_MS, publicEventId } from "../../src/validation.js";

const NOW = Date.UTC(2026, 3, 1, 12);
const fields = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return violationsOf(err as ConnectError).map((v) => v.field).sort();
  }
  return [];
};

describe("event validation", () => {
  it("derives deterministic ids from idempotency keys", () => {
    const a = checkSale("ws_1", create(TrackSaleRequestSchema, { externalId: "u", amount: 5n, currency: "USD", invoiceId: "inv" }), NOW);
    const b = checkSale("ws_1", create(TrackSaleRequestSchema, { externalId: "u", amount: 5n, currency: "USD", invoiceId: "inv" }), NOW);
    expect(a._id).toBe("ws_1:sale:inv");
    expect(a.eventId).toBe(b.eventId);
    expect(a.eventId).toBe(publicEventId("ws_1:sale:inv"));
    expect(checkClick("ws_1", create(TrackClickRequestSchema, { clickId: "c", linkId: "l" }), NOW)._id).toBe("ws_1:click:c");
    expect(checkLead("ws_1", create(TrackLeadRequestSchema, { externalId: "u", eventId: "e" }), NOW)._id).toBe("ws_1:lead:e");
    const r1 = checkLead("ws_1", create(TrackLeadRequestSchema, { externalId: "u" }), NOW);
    const r2 = checkLead("ws_1", create(TrackLeadRequestSchema, { externalId: "u" }), NOW);
    expect(r1._id).not.toBe(r2._id);
    expect(r1.eventName).toBe("lead");
    expect(checkCustom("ws_1", create(TrackEventRequestSchema, { externalId: "u", eventName: "x", eventId: "k" }), NOW)._id).toBe("ws_1:custom:k");
  });

  it("names every offending field", () => {
    expect(fields(() => checkClick("w", create(TrackClickRequestSchema, {}), NOW))).toEqual(["clickId", "linkId"]);
    expect(fields(() => checkSale("w", create(TrackSaleRequestSchema, { amount: -1n, currency: "usd" }), NOW))).toEqual(["amount", "currency", "externalId", "invoiceId"]);
    expect(fields(() => checkSale("w", create(TrackSaleRequestSchema, { externalId: "u", invoiceId: "i", amount: 1n, currency: "XYZ" }), NOW))).toEqual(["currency"]);
    expect(fields(() => checkCustom("w", create(TrackEventRequestSchema, { externalId: "u" }), NOW))).toEqual(["eventName"]);
    expect(fields(() => checkLead("w", create(TrackLeadRequestSchema, { externalId: "x".repeat(257) }), NOW))).toEqual(["externalId"]);
  });

  it("bounds timestamps: backfill yes, more than 5 minutes ahead no", () => {
    const at = (ms: number) => create(TrackClickRequestSchema, { clickId: "c", linkId: "l", timestamp: timestampFromDate(new Date(ms)) });
    expect(checkClick("w", at(NOW - 400 * 86_400_000), NOW).at.getTime()).toBe(NOW - 400 * 86_400_000);
    expect(checkClick("w", at(NOW + MAX_FUTURE_MS), NOW).at.getTime()).toBe(NOW + MAX_FUTURE_MS);
    expect(fields(() => checkClick("w", at(NOW + MAX_FUTURE_MS + 1), NOW))).toEqual(["timestamp"]);
    expect(fields(() => checkClick("w", at(Date.UTC(1999, 11, 31)), NOW))).toEqual(["timestamp"]);
    expect(checkClick("w", create(TrackClickRequestSchema, { clickId: "c", linkId: "l" }), NOW).at.getTime()).toBe(NOW);
  });

  it("accepts flat metadata up to 50 keys and 16 KiB only", () => {
    const lead = (metadata: Record<string, unknown>) => create(TrackLeadRequestSchema, { externalId: "u", metadata: metadata as never });
    expect(checkLead("w", lead({ plan: "pro", seats: 3, trial: true, ref: null }), NOW).metadata).toEqual({ plan: "pro", seats: 3, trial: true, ref: null });
    expect(fields(() => checkLead("w", lead({ nested: { a: 1 } }), NOW))).toEqual(["metadata"]);
    expect(fields(() => checkLead("w", lead(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i]))), NOW))).toEqual(["metadata"]);
    expect(fields(() => checkLead("w", lead({ big: "x".repeat(17_000) }), NOW))).toEqual(["metadata"]);
  });

  it("turns a bad batch event into an error message instead of throwing", () => {
    const r = checkTracked("w", { $typeName: "linquid.analytics.v1.TrackedEvent", event: { case: "click", value: create(TrackClickRequestSchema, {}) } }, NOW);
    expect("error" in r && r.error).toMatch(/clickId/);
    const empty = checkTracked("w", { $typeName: "linquid.analytics.v1.TrackedEvent", event: { case: undefined } }, NOW);
    expect("error" in empty).toBe(true);
  });
});
