/**
 * Preloaded into a process under benchmark (`node --import tsx --import ./scripts/cpu-profile-window.ts`):
 * the first SIGUSR2 starts V8's CPU profiler (1 ms sampling, as `node --cpu-prof`), the second
 * stops it and writes the profile to BENCH_PROFILE_FILE, then touches `<file>.done`. So a
 * profile covers the measured load only, not start-up, seeding and warm-up.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";

const file = process.env["BENCH_PROFILE_FILE"];
if (file === undefined || file === "") throw new Error("BENCH_PROFILE_FILE: required");

let session: Session | undefined;
process.on("SIGUSR2", () => {
  void (async () => {
    if (session === undefined) {
      session = new Session();
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.setSamplingInterval", { interval: 1000 });
      await session.post("Profiler.start");
      return;
    }
    const { profile } = await session.post("Profiler.stop");
    session.disconnect();
    session = undefined;
    writeFileSync(file, JSON.stringify(profile));
    writeFileSync(`${file}.done`, "");
  })();
});
