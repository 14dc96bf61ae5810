import { Code, ConnectError } from "@connectrpc/connect";
import { createLogger } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import type { ScrubRepository } from "../../src/repository.js";
import { ScrubSweeper } from "../../src/scrub-sweeper.js";

class FakeScrubRepo implements ScrubRepository {
  pending = new Map<string, string>();
  completed: string[] = [];
  async findScrubPending(limit: number) {
    return [...this.pending].slice(0, limit).map(([customerId, workspaceId]) => ({ customerId, workspaceId }));
  }
  async completeScrub(customerId: string) {
    this.pending.delete(customerId);
    this.completed.push(customerId);
  }
}

const quiet = createLogger("test", "error");

describe("ScrubSweeper", () => {
  it("completes a scrub when analytics answers, and leaves it pending when it does not", async () => {
    const repo = new FakeScrubRepo();
    repo.pending.set("cus_1", "ws_1");
    let up = false;
    const calls: string[] = [];
    const sweeper = new ScrubSweeper(
      repo,
      async (req) => {
        calls.push(req.customerId);
        if (!up) throw new ConnectError("analytics down", Code.Unavailable);
      },
      quiet,
    );
    expect(await sweeper.scrub("ws_1", "cus_1")).toBe(false);
    expect(repo.pending.has("cus_1")).toBe(true);
    await sweeper.sweep();
    expect(repo.completed).toEqual([]);
    up = true;
    await sweeper.sweep();
    expect(repo.completed).toEqual(["cus_1"]);
    expect(calls).toEqual(["cus_1", "cus_1", "cus_1"]);
  });

  it("does not scan again while nothing failed, until the full-scan period", async () => {
    const repo = new FakeScrubRepo();
    let scans = 0;
    const find = repo.findScrubPending.bind(repo);
    repo.findScrubPending = async (n) => {
      scans++;
      return find(n);
    };
    const sweeper = new ScrubSweeper(repo, async () => {}, quiet, { fullScanMs: 60_000 });
    await sweeper.sweep();
    await sweeper.sweep();
    expect(scans).toBe(1);
  });

  it("retries in the background and stops cleanly", async () => {
    const repo = new FakeScrubRepo();
    repo.pending.set("cus_2", "ws_1");
    let fail = 2;
    const sweeper = new ScrubSweeper(
      repo,
      async () => {
        if (fail-- > 0) throw new Error("connect ECONNREFUSED");
      },
      quiet,
      { intervalMs: 10 },
    );
    sweeper.start();
    const deadline = Date.now() + 5000;
    while (repo.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await sweeper.stop();
    expect(repo.completed).toEqual(["cus_2"]);
  });
});
