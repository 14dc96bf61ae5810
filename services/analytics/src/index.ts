/**
 * The analytics plugin: serves linquid.analytics.v1.AnalyticsService on its own database,
 * reaching customers and workspaces only through their generated clients. A sweeper finishes
 * ingestions a crashed process left midway (engine.ts).
 */
import { AnalyticsService, CustomersService, WorkspacesService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { AnalyticsHandler } from "./analytics-service.js";
import { AnalyticsEngine } from "./engine.js";
import { AnalyticsRepository } from "./repository.js";

const SWEEP_EVERY_MS = 30_000;

const plugin: Plugin = {
  name: "analytics",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new AnalyticsRepository(ctx.db);
    await repo.ensureIndexes();
    const customers = () => ctx.client(CustomersService);
    const engine = new AnalyticsEngine(repo, customers, () => ctx.client(WorkspacesService), ctx.logger);
    const handler = new AnalyticsHandler(engine, customers);
    let sweeping: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      sweeping = engine.recover().catch((err: unknown) => ctx.logger.warn("recovery sweep failed", { error: (err as Error).message }));
    }, SWEEP_EVERY_MS);
    timer.unref();
    return {
      services: [AnalyticsService],
      routes: (router) => router.service(AnalyticsService, handler),
      stop: async () => {
        clearInterval(timer);
        await sweeping;
        await engine.flushStats();
      },
    };
  },
};

export default plugin;

export { AnalyticsHandler } from "./analytics-service.js";
export { AnalyticsEngine } from "./engine.js";
export { AnalyticsRepository } from "./repository.js";
