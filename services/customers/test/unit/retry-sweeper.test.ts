import { Code, ConnectError } from "@connectrpc/connect";
import { createLogger } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { RetrySweeper, type DueFollowUp, type FollowUp, type FollowUpTarget } from "../../src/retry-sweeper.js";

/** Markers in memory with the store's rules (due time, conditional lease); the remote side is `up` or not. */
class FakeFollowUp implements FollowUp {
  readonly name = "test follow-up";
  markers = new Map<string, DueFollowUp>();
  completed: string[] = [];
  calls: string[] = [];
  finds = 0;
  up = true;
  mark(customerId: string, dueInMs = 0): void {
    this.markers.set(customerId, { workspaceId: "ws_1", customerId, token: `t${this.markers.size}`, due: new Date(Date.now() + dueInMs) });
  }
  async run(c: FollowUpTarget): Promise<void> {
    this.calls.push(c.customerId);
    await new Promise((r) => setTimeout(r, 1));
    if (!this.up) throw new ConnectError("analytics down", Code.Unavailable);
    this.markers.delete(c.customerId);
    this.completed.push(c.customerId);
  }
  async findDue(limit: number): Promise<DueFollowUp[]> {
    this.finds++;
    const now = Date.now();
    return [...this.markers.values()]
      .filter((m) => m.due.getTime() <= now)
      .sort((a, b) => a.due.getTime() - b.due.getTime())
      .slice(0, limit)
      .map((m) => ({ ...m }));
  }
  async lease(m: DueFollowUp, leaseMs: number): Promise<DueFollowUp | null> {
    const cur = this.markers.get(m.customerId);
    if (cur === undefined || cur.due.getTime() !== m.due.getTime()) return null;
    const leased = { ...cur, due: new Date(Date.now() + leaseMs) };
    this.markers.set(m.customerId, leased);
    return { ...leased };
  }
}

const quiet = createLogger("test", "error");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("RetrySweeper", () => {
  it("completes a follow-up when analytics answers; a failed one waits for its lease to run out", async () => {
    const f = new FakeFollowUp();
    f.mark("cus_1");
    f.up = false;
    const sweeper = new RetrySweeper(f, quiet, { leaseMs: 50 });
    expect(await sweeper.attempt("ws_1", "cus_1")).toBe(false);
    expect(await sweeper.sweep()).toBe(0);
    expect(f.calls).toEqual(["cus_1", "cus_1"]);
    f.up = true;
    expect(await sweeper.sweep()).toBe(0); // still leased after the failure
    expect(f.calls).toHaveLength(2);
    await sleep(60);
    expect(await sweeper.sweep()).toBe(1);
    expect(f.completed).toEqual(["cus_1"]);
    expect(f.markers.size).toBe(0);
  });

  it("leaves follow-ups alone until they are due (the write's own attempt comes first)", async () => {
    const f = new FakeFollowUp();
    f.mark("cus_later", 60_000);
    const sweeper = new RetrySweeper(f, quiet);
    expect(await sweeper.sweep()).toBe(0);
    expect(f.calls).toEqual([]);
  });

  it("stops a pass at the first failure: the rest would fail the same way", async () => {
    const f = new FakeFollowUp();
    for (const id of ["cus_a", "cus_b", "cus_c"]) f.mark(id);
    f.up = false;
    const sweeper = new RetrySweeper(f, quiet);
    await sweeper.sweep();
    expect(f.calls).toEqual(["cus_a"]);
  });

  it("does each due follow-up once when the sweepers of several replicas run at the same time", async () => {
    const f = new FakeFollowUp();
    const ids = Array.from({ length: 30 }, (_, i) => `cus_${i}`);
    for (const id of ids) f.mark(id);
    const sweepers = [1, 2, 3].map(() => new RetrySweeper(f, quiet, { leaseMs: 60_000 }));
    const done = await Promise.all(sweepers.map((s) => s.sweep()));
    expect(done.reduce((a, b) => a + b, 0)).toBe(ids.length);
    expect([...f.calls].sort()).toEqual([...ids].sort());
    expect(f.markers.size).toBe(0);
  });

  it("retries in the background and stops cleanly", async () => {
    const f = new FakeFollowUp();
    f.mark("cus_2");
    let fail = 2;
    const run = f.run.bind(f);
    f.run = async (c) => {
      if (fail-- > 0) throw new Error("connect ECONNREFUSED");
      return run(c);
    };
    const sweeper = new RetrySweeper(f, quiet, { intervalMs: 10, leaseMs: 10 });
    sweeper.start();
    const deadline = Date.now() + 5000;
    while (f.markers.size > 0 && Date.now() < deadline) await sleep(10);
    await sweeper.stop();
    expect(f.completed).toEqual(["cus_2"]);
  });
});
