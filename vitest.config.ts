import { defineConfig } from "vitest/config";

// Three tiers, run by `npm test` (scripts/test.sh):
// - unit: handlers and policies with fakes, no I/O;
// - integration: real FerretDB (or MONGODB_URI) and a real redis-server, started once per run;
// - faults: fault injection against real processes with a FerretDB and a redis-server of its
//   own; run after the others, alone, so its timings measure the mesh and not a neighbour's load.
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["services/*/test/unit/**/*.test.ts"] },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["services/*/test/integration/**/*.test.ts", "test/**/*.test.ts"],
          exclude: ["test/faults/**", "**/node_modules/**"],
          globalSetup: ["services/mesh/src/testing/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: "faults",
          include: ["test/faults/**/*.test.ts"],
          testTimeout: 90_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
