/**
 * The analytics plugin: serves linquid.analytics.v1.AnalyticsService on its own database,
 * reaching customers and workspaces only through their generated clients. A sweeper finishes
 * writes a crashed process left midway and rebuilds what they may have left inconsistent
 * (recovery.ts); such repairs reach the gateway's snapshot cache through ListSnapshotInvalidations.
 */
import { AnalyticsService, CustomersService, WorkspacesService } from "@linquid/contracts";
import { runDetached, type Plugin } from "@linquid/mesh";
import { AnalyticsHandler } from "./analytics-service.js";
import { Coalescer } from "./coalescer.js";
import { Ingestion } from "./ingestion.js";
import { migrateStoredForms } from "./migrations.js";
import { SnapshotInvalidations } from "./invalidations.js";
import { Recovery, SWEEP_EVERY_MS } from "./recovery.js";
import { AnalyticsRepository } from "./repository.js";
import { Rollups } from "./rollups.js";
import { StatsPusher } from "./stats-push.js";
import type { IncomingEvent } from "./validation.js";
import { WorkspaceCurrencies } from "./workspace-currency.js";
import { WriteOps } from "./write-ops.js";

const plugin: Plugin = {
  name: "analytics",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new AnalyticsRepository(ctx.db, ctx.config.analyticsBucketSize);
    await repo.ensureIndexes();
    const customers = () => ctx.client(CustomersService);
    const currencies = new WorkspaceCurrencies(() => ctx.client(WorkspacesService));
    const stats = new StatsPusher(customers, currencies, ctx.logger);
    const ops = new WriteOps(repo, ctx.config.recoveryAfterMs);
    await migrateStoredForms(repo, ops, ctx.logger);
    const invalidations = new SnapshotInvalidations(repo);
    const rollups = new Rollups(repo, ops, stats, invalidations);
    const ingestion = new Ingestion(repo, rollups, ops, stats, currencies, customers, ctx.logger);
    const recovery = new Recovery(repo, ops, rollups, stats, ctx.logger, invalidations);
    // Single tracking calls and registrations take the batch path; tracking callers read their
    // own customer stats.
    const tracking = new Coalescer((ws: string, events: readonly IncomingEvent[]) => ingestion.ingest(ws, events, "await"));
    const registrations = new Coalescer((ws: string, items: ReadonlyArray<{ customerId: string; createdAt: Date }>) => rollups.registerMany(ws, items));
    const handler = new AnalyticsHandler({ repo, ingestion, tracking, registrations, rollups, stats, currencies, invalidations }, customers);
    let sweeping: Promise<unknown> | undefined;
    // Sweeps run outside any RPC; one at a time per process (a rebuild may outlast the period).
    const timer = setInterval(() => {
      sweeping ??= runDetached(() => recovery.sweep())
        .catch((err: unknown) => ctx.logger.warn("recovery sweep failed", { error: (err as Error).message }))
        .finally(() => (sweeping = undefined));
    }, Math.min(SWEEP_EVERY_MS, Math.ceil(ctx.config.recoveryAfterMs / 2)));
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
