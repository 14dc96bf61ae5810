import { defineConfig } from "vitest/config";

// Two tiers, run together by `npm test`:
// - unit: handlers and policies with fakes, no I/O;
// - integration: real FerretDB (or MONGODB_URI) and a real redis-server, started once per run.
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
          globalSetup: ["services/mesh/src/testing/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
