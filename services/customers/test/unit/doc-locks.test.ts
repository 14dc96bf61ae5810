import { describe, expect, it } from "vitest";
import { lockedKeyCount, withDocLock } from "../../src/doc-locks.js";

const tick = () => new Promise((r) => setTimeout(r, 1));

describe("withDocLock", () => {
  it("runs calls on one key one at a time, in arrival order, and read-modify-write loses nothing", async () => {
    let value = 0;
    let inside = 0;
    let maxInside = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        withDocLock("k", async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          const read = value;
          await tick();
          value = read + 1;
          order.push(i);
          inside--;
        }),
      ),
    );
    expect(value).toBe(50);
    expect(maxInside).toBe(1);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(lockedKeyCount()).toBe(0);
  });

  it("lets different keys run together and releases on failure", async () => {
    let together = false;
    let aRunning = false;
    await Promise.all([
      withDocLock("a", async () => {
        aRunning = true;
        await tick();
        await tick();
        aRunning = false;
      }),
      withDocLock("b", async () => {
        await tick();
        together = aRunning;
      }),
    ]);
    expect(together).toBe(true);
    await expect(withDocLock("c", async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await withDocLock("c", async () => 7)).toBe(7);
    expect(lockedKeyCount()).toBe(0);
  });
});
