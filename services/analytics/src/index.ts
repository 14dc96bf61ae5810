/**
 * The analytics plugin: serves linquid.analytics.v1.AnalyticsService on its own database,
 * reaching customers and workspaces only through their generated clients. A sweeper finishes
 * writes a crashed process left midway (recovery.ts).
 */
import { AnalyticsService, CustomersService, WorkspacesService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { AnalyticsHandler } from "./analytics-service.js";
import { Ingestion } from "./ingestion.js";
import { Recovery, SWEEP_EVERY_MS } from "./recovery.js";
import { AnalyticsRepository } from "./repository.js";
import { Rollups } from "./rollups.js";
import { StatsPusher } from "./stats-push.js";
import { WorkspaceCurrencies } from "./workspace-currency.js";
import { WriteOps } from "./write-ops.js";

const plugin: Plugin = {
  name: "analytics",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new AnalyticsRepository(ctx.db);
    await repo.ensureIndexes();
    const customers = () => ctx.client(CustomersService);
    const currencies = new WorkspaceCurrencies(() => ctx.client(WorkspacesService));
    const stats = new StatsPusher(customers, currencies, ctx.logger);
    const ops = new WriteOps(repo);
    const rollups = new Rollups(repo, ops, stats);
    const ingestion = new Ingestion(repo, rollups, ops, stats, currencies, customers, ctx.logger);
    const recovery = new Recovery(repo, ops, rollups, stats, ctx.logger);
    const handler = new AnalyticsHandler({ repo, ingestion, rollups, stats, currencies }, customers);
    let sweeping: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      sweeping = recovery.sweep().catch((err: unknown) => ctx.logger.warn("recovery sweep failed", { error: (err as Error).message }));
    }, SWEEP_EVERY_MS);
    timer.unref();
    return {
      services: [AnalyticsService],
      routes: (router) => router.service(AnalyticsService, handler),
      stop: async () => {
        clearInterval(timer);
        await sweeping;
        await stats.flush();
      },
    };
  },
};

export default plugin;

export { AnalyticsHandler } from "./analytics-service.js";
export { AnalyticsRepository } from "./repository.js";
