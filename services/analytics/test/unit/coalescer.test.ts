import { Code, ConnectError } from "@connectrpc/connect";
import { inheritedTimeoutMs, runWithDeadline } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { TrackCoalescer } from "../../src/coalescer.js";
import type { TrackOutcome } from "../../src/ingestion.js";
import type { IncomingEvent } from "../../src/validation.js";

const event = (id: string) => ({ _id: id, eventId: `evt_${id}`, type: "lead", at: new Date(0), keyed: true }) as IncomingEvent;

/** A fake ingestion recording its batches and the deadline each ran under. */
function recorder(fail?: (batch: readonly IncomingEvent[]) => boolean) {
  const batches: Array<{ ws: string; ids: string[]; timeoutMs: number | undefined }> = [];
  const ingest = async (ws: string, events: readonly IncomingEvent[]): Promise<TrackOutcome[]> => {
    batches.push({ ws, ids: events.map((e) => e._id), timeoutMs: inheritedTimeoutMs() });
    await Promise.resolve();
    if (fail?.(events)) throw new ConnectError("customers service unavailable", Code.Unavailable);
    return events.map((e) => (e._id === "bad" ? { eventId: "", customerId: null, duplicate: false, failure: new ConnectError("bad", Code.InvalidArgument) } : { eventId: e.eventId, customerId: `cus_${e._id}`, duplicate: false }));
  };
  return { batches, ingest };
}

describe("TrackCoalescer", () => {
  it("gathers concurrent calls of a workspace into one batch and answers each with its own outcome", async () => {
    const { batches, ingest } = recorder();
    const c = new TrackCoalescer(ingest, 20);
    const [a, b, bad, other] = await Promise.all([c.track("ws1", event("a")), c.track("ws1", event("b")), c.track("ws1", event("bad")), c.track("ws2", event("x"))]);
    expect(batches.map((x) => [x.ws, x.ids])).toEqual([
      ["ws1", ["a", "b", "bad"]],
      ["ws2", ["x"]],
    ]);
    expect(a).toEqual({ eventId: "evt_a", customerId: "cus_a", duplicate: false });
    expect(b.customerId).toBe("cus_b");
    expect(bad.failure?.code).toBe(Code.InvalidArgument);
    expect(other.customerId).toBe("cus_x");
  });

  it("sends a full batch at once and starts the next one", async () => {
    const { batches, ingest } = recorder();
    const c = new TrackCoalescer(ingest, 60_000, 2);
    await Promise.all([c.track("ws", event("1")), c.track("ws", event("2"))]);
    const third = c.track("ws", event("3"));
    const fourth = c.track("ws", event("4"));
    await Promise.all([third, fourth]);
    expect(batches.map((x) => x.ids)).toEqual([
      ["1", "2"],
      ["3", "4"],
    ]);
  });

  it("fails every call of a batch whose ingestion fails", async () => {
    const { ingest } = recorder((events) => events.length > 1);
    const c = new TrackCoalescer(ingest, 20);
    const outcomes = await Promise.allSettled([c.track("ws", event("a")), c.track("ws", event("b"))]);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(ConnectError.from((outcomes[0] as PromiseRejectedResult).reason).code).toBe(Code.Unavailable);
  });

  it("batches only calls with deadlines of the same order, under the shortest of them", async () => {
    const { batches, ingest } = recorder();
    const c = new TrackCoalescer(ingest, 20);
    await Promise.all([
      runWithDeadline(15_000, () => c.track("ws", event("a"))),
      runWithDeadline(14_000, () => c.track("ws", event("b"))),
      runWithDeadline(1_200, () => c.track("ws", event("short"))),
      c.track("ws", event("none")),
    ]);
    const byIds = new Map(batches.map((b) => [b.ids.join(","), b.timeoutMs]));
    expect([...byIds.keys()].sort()).toEqual(["a,b", "none", "short"]);
    expect(byIds.get("a,b")).toBeLessThanOrEqual(14_000);
    expect(byIds.get("a,b")).toBeGreaterThan(12_000);
    expect(byIds.get("short")).toBeLessThanOrEqual(1_200);
    expect(byIds.get("none")).toBeUndefined();
  });
});
