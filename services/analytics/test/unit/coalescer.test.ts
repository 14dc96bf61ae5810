import { Code, ConnectError } from "@connectrpc/connect";
import { inheritedTimeoutMs, runWithDeadline } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { Coalescer } from "../../src/coalescer.js";
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

describe("Coalescer", () => {
  it("gathers concurrent calls of a workspace into one batch and answers each with its own outcome", async () => {
    const { batches, ingest } = recorder();
    const c = new Coalescer(ingest, 20);
    const [a, b, bad, other] = await Promise.all([c.submit("ws1", event("a")), c.submit("ws1", event("b")), c.submit("ws1", event("bad")), c.submit("ws2", event("x"))]);
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
    const c = new Coalescer(ingest, 60_000, 2);
    await Promise.all([c.submit("ws", event("1")), c.submit("ws", event("2"))]);
    const third = c.submit("ws", event("3"));
    const fourth = c.submit("ws", event("4"));
    await Promise.all([third, fourth]);
    expect(batches.map((x) => x.ids)).toEqual([
      ["1", "2"],
      ["3", "4"],
    ]);
  });

  it("runs at most `inFlight` batches of a workspace; the calls that arrive meanwhile go together in the next", async () => {
    const started: string[][] = [];
    const gates: Array<() => void> = [];
    const ingest = async (_ws: string, events: readonly IncomingEvent[]): Promise<TrackOutcome[]> => {
      started.push(events.map((e) => e._id));
      await new Promise<void>((r) => gates.push(r));
      return events.map((e) => ({ eventId: e.eventId, customerId: null, duplicate: false }));
    };
    const c = new Coalescer(ingest, 1, 500, 2);
    const settle = () => new Promise((r) => setTimeout(r, 10));
    const calls = [c.submit("ws", event("a"))];
    await settle();
    calls.push(c.submit("ws", event("b")));
    await settle();
    // Two batches run; everything after waits, gathered, whatever its window said.
    for (const id of ["c", "d", "e"]) calls.push(c.submit("ws", event(id)));
    await settle();
    calls.push(c.submit("ws", event("f")));
    await settle();
    expect(started).toEqual([["a"], ["b"]]);
    // Another workspace is not held up.
    const other = c.submit("ws2", event("x"));
    await settle();
    expect(started).toEqual([["a"], ["b"], ["x"]]);
    gates.shift()!();
    await settle();
    expect(started).toEqual([["a"], ["b"], ["x"], ["c", "d", "e", "f"]]);
    while (gates.length > 0) {
      gates.shift()!();
      await settle();
    }
    expect((await Promise.all([...calls, other])).map((o) => o.eventId)).toEqual(["evt_a", "evt_b", "evt_c", "evt_d", "evt_e", "evt_f", "evt_x"]);
  });

  it("fails every call of a batch whose ingestion fails", async () => {
    const { ingest } = recorder((events) => events.length > 1);
    const c = new Coalescer(ingest, 20);
    const outcomes = await Promise.allSettled([c.submit("ws", event("a")), c.submit("ws", event("b"))]);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(ConnectError.from((outcomes[0] as PromiseRejectedResult).reason).code).toBe(Code.Unavailable);
  });

  it("batches only calls with deadlines of the same order, under the shortest of them", async () => {
    const { batches, ingest } = recorder();
    const c = new Coalescer(ingest, 20);
    await Promise.all([
      runWithDeadline(15_000, () => c.submit("ws", event("a"))),
      runWithDeadline(14_000, () => c.submit("ws", event("b"))),
      runWithDeadline(1_200, () => c.submit("ws", event("short"))),
      c.submit("ws", event("none")),
    ]);
    const byIds = new Map(batches.map((b) => [b.ids.join(","), b.timeoutMs]));
    expect([...byIds.keys()].sort()).toEqual(["a,b", "none", "short"]);
    expect(byIds.get("a,b")).toBeLessThanOrEqual(14_000);
    expect(byIds.get("a,b")).toBeGreaterThan(12_000);
    expect(byIds.get("short")).toBeLessThanOrEqual(1_200);
    expect(byIds.get("none")).toBeUndefined();
  });
});
