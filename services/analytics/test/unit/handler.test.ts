import { Code, ConnectError } from "@connectrpc/connect";
import { violationsOf } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { AnalyticsHandler, MAX_BATCH } from "../../src/analytics-service.js";
import type { AnalyticsParts } from "../../src/analytics-service.js";

/** Parts that must never be reached: validation fails first. */
const untouchable = new Proxy({}, { get: () => { throw new Error("storage reached"); } }) as unknown as AnalyticsParts;
const customers = () => { throw new Error("customers reached"); };
const handler = new AnalyticsHandler(untouchable, customers as never, () => Date.UTC(2026, 3, 1));

async function fields(p: Promise<unknown>): Promise<string[]> {
  const err = await p.then(() => undefined, (e: unknown) => ConnectError.from(e));
  expect(err?.code).toBe(Code.InvalidArgument);
  return violationsOf(err!).map((v) => v.field).sort();
}

describe("AnalyticsHandler validation", () => {
  it("rejects bad cohort and LTV parameters before touching storage", async () => {
    expect(await fields(handler.getCohorts({ workspaceId: "ws", groupBy: "year" } as never))).toEqual(["group_by"]);
    expect(await fields(handler.getCohorts({ workspaceId: "ws", start: "2026-04-02", end: "2026-04-01" } as never))).toEqual(["start"]);
    expect(await fields(handler.getCohorts({ workspaceId: "ws", start: "April" } as never))).toEqual(["start"]);
    expect(await fields(handler.getLtvCohorts({ workspaceId: "ws", months: 25 } as never))).toEqual(["months"]);
    expect(await fields(handler.getLtvCohorts({ workspaceId: "ws", months: 0 } as never))).toEqual(["months"]);
  });

  it("rejects bad journey paging before resolving the customer", async () => {
    expect(await fields(handler.getJourney({ workspaceId: "ws", id: "cus_1", page: 0, limit: 1001 } as never))).toEqual(["limit", "page"]);
  });

  it("rejects events and oversized batches with field names", async () => {
    expect(await fields(handler.trackClick({ workspaceId: "ws", clickId: "", linkId: "" } as never))).toEqual(["clickId", "linkId"]);
    expect(await fields(handler.trackBatch({ workspaceId: "ws", events: new Array(MAX_BATCH + 1).fill({ event: { case: undefined } }) } as never))).toEqual(["events"]);
    expect(await fields(handler.scrubCustomer({ workspaceId: "", customerId: "" } as never))).toEqual(["customerId", "workspaceId"]);
  });
});
