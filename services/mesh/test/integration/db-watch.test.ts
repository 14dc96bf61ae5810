/**
 * The database watch (db-watch.ts) against a FerretDB of its own, stopped with SIGSTOP: found
 * down within a second, calls in flight and new ones fail with UNAVAILABLE, and the first answer
 * after SIGCONT brings it back; not while other calls of the process still get answers.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { watchDatabase, type DatabaseWatch } from "../../src/db-watch.js";
import { startFerretDb, type EmbeddedServer } from "../../src/embedded.js";

describe("database watch", () => {
  let dir: string;
  let ferret: EmbeddedServer;
  let watch: DatabaseWatch;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "linquid-watch-"));
    ferret = await startFerretDb(inject("ferretdbBin"), dir);
    watch = watchDatabase(ferret.url);
  });
  afterAll(async () => {
    await watch?.stop();
    process.kill(ferret.pid, "SIGCONT");
    await ferret?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("fails calls within a second of the database hanging, new ones at once, and lets them through at its first answer", async () => {
    await new Promise((r) => setTimeout(r, 400));
    expect(watch.down).toBe(false);
    expect(await watch.guard(async () => "answered")).toBe("answered");

    const stoppedAt = Date.now();
    process.kill(ferret.pid, "SIGSTOP");
    // A call in flight that would wait for the database for ever.
    const inFlight = watch.guard(() => new Promise<never>(() => undefined)).catch((e: unknown) => ConnectError.from(e));
    const err = await inFlight;
    const tookMs = Date.now() - stoppedAt;
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect((err as ConnectError).rawMessage).toBe("database unavailable");
    expect(tookMs).toBeLessThan(1000);
    expect(watch.down).toBe(true);
    const t = Date.now();
    expect(await watch.guard(async () => "never run").catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unavailable);
    expect(Date.now() - t).toBeLessThan(50);

    const resumedAt = Date.now();
    process.kill(ferret.pid, "SIGCONT");
    while (watch.down && Date.now() - resumedAt < 3000) await new Promise((r) => setTimeout(r, 20));
    expect(watch.down).toBe(false);
    expect(Date.now() - resumedAt).toBeLessThan(1000);
    expect(await watch.guard(async () => "answered again")).toBe("answered again");
  });

  it("keeps a database whose other calls still answer (a machine short of CPU) up, and finds it down once they stop too", async () => {
    let answering = true;
    const busy = watchDatabase(ferret.url, { answeredSince: () => answering });
    try {
      await new Promise((r) => setTimeout(r, 400));
      expect(busy.down).toBe(false);
      process.kill(ferret.pid, "SIGSTOP");
      // Three times the silence that finds a database down when nothing else answers.
      await new Promise((r) => setTimeout(r, 1500));
      expect(busy.down).toBe(false);
      answering = false;
      const t = Date.now();
      while (!busy.down && Date.now() - t < 3000) await new Promise((r) => setTimeout(r, 20));
      expect(busy.down).toBe(true);
    } finally {
      process.kill(ferret.pid, "SIGCONT");
      await busy.stop();
    }
  });
});
