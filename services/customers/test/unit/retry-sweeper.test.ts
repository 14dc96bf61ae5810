import { Code, ConnectError } from "@connectrpc/connect";
import { createLogger } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { RetrySweeper, type FollowUp, type PendingCustomer } from "../../src/retry-sweeper.js";

/** A follow-up whose remote side is `up` or not; done work leaves `pending` for `completed`. */
class FakeFollowUp implements FollowUp {
  readonly name = "test follow-up";
  pending = new Map<string, string>();
  completed: string[] = [];
  calls: string[] = [];
  scans = 0;
  up = true;
  async run(c: PendingCustomer): Promise<void> {
    this.calls.push(c.customerId);
    if (!this.up) throw new ConnectError("analytics down", Code.Unavailable);
    this.pending.delete(c.customerId);
    this.completed.push(c.customerId);
  }
  async findPending(limit: number): Promise<PendingCustomer[]> {
    this.scans++;
    return [...this.pending].slice(0, limit).map(([customerId, workspaceId]) => ({ customerId, workspaceId }));
  }
}

const quiet = createLogger("test", "error");

describe("RetrySweeper", () => {
  it("completes a follow-up when analytics answers, and leaves it pending when it does not", async () => {
    const f = new FakeFollowUp();
    f.pending.set("cus_1", "ws_1");
    f.up = false;
    const sweeper = new RetrySweeper(f, quiet);
    expect(await sweeper.attempt("ws_1", "cus_1")).toBe(false);
    expect(f.pending.has("cus_1")).toBe(true);
    await sweeper.sweep();
    expect(f.completed).toEqual([]);
    f.up = true;
    await sweeper.sweep();
    expect(f.completed).toEqual(["cus_1"]);
    expect(f.calls).toEqual(["cus_1", "cus_1", "cus_1"]);
  });

  it("does not scan again while nothing failed, until the full-scan period", async () => {
    const f = new FakeFollowUp();
    const sweeper = new RetrySweeper(f, quiet, { fullScanMs: 60_000 });
    await sweeper.sweep();
    await sweeper.sweep();
    expect(f.scans).toBe(1);
  });

  it("retries in the background and stops cleanly", async () => {
    const f = new FakeFollowUp();
    f.pending.set("cus_2", "ws_1");
    let fail = 2;
    const run = f.run.bind(f);
    f.run = async (c) => {
      if (fail-- > 0) throw new Error("connect ECONNREFUSED");
      return run(c);
    };
    const sweeper = new RetrySweeper(f, quiet, { intervalMs: 10 });
    sweeper.start();
    const deadline = Date.now() + 5000;
    while (f.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await sweeper.stop();
    expect(f.completed).toEqual(["cus_2"]);
  });
});
