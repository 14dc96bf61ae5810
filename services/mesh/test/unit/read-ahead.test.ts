import { describe, expect, it } from "vitest";
import { readAhead } from "../../src/concurrency.js";

/** A source of 0..n-1 that records how far it was read and whether it was closed. */
function source(n: number, failAt?: number) {
  const log = { started: 0, closed: false };
  async function* gen() {
    try {
      for (let i = 0; i < n; i++) {
        log.started = i + 1;
        await new Promise((r) => setTimeout(r, 1));
        if (i === failAt) throw new Error(`failed at ${i}`);
        yield i;
      }
    } finally {
      log.closed = true;
    }
  }
  return { log, items: gen() };
}

describe("readAhead", () => {
  it("yields every item in order", async () => {
    const { items } = source(5);
    const out: number[] = [];
    for await (const x of readAhead(items)) out.push(x);
    expect(out).toEqual([0, 1, 2, 3, 4]);
  });

  it("reads one item ahead of the caller, no more", async () => {
    const { log, items } = source(10);
    const it = readAhead(items);
    expect((await it.next()).value).toBe(0);
    await new Promise((r) => setTimeout(r, 30));
    // Item 0 handed out, item 1 read ahead, nothing beyond while the caller holds item 0.
    expect(log.started).toBe(2);
    expect((await it.next()).value).toBe(1);
    await new Promise((r) => setTimeout(r, 30));
    expect(log.started).toBe(3);
    await it.return(undefined);
    expect(log.closed).toBe(true);
  });

  it("closes the source when the caller stops early", async () => {
    const { log, items } = source(100);
    for await (const x of readAhead(items)) if (x === 3) break;
    expect(log.closed).toBe(true);
    expect(log.started).toBeLessThanOrEqual(5);
  });

  it("passes a failure on in order, after the items before it", async () => {
    const { items } = source(5, 2);
    const out: number[] = [];
    await expect(
      (async () => {
        for await (const x of readAhead(items)) out.push(x);
      })(),
    ).rejects.toThrow("failed at 2");
    expect(out).toEqual([0, 1]);
  });
});
