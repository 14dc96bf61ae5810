/**
 * The workspaces plugin: serves linquid.workspaces.v1.WorkspacesService and IdempotencyService
 * (the gateway's Idempotency-Key records; why they live here: idempotency.proto) on its own
 * database.
 */
import { IdempotencyService, WorkspacesService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { IdempotencyHandler } from "./idempotency-service.js";
import { MongoIdempotencyStore } from "./idempotency-store.js";
import { IdempotencySweeper } from "./idempotency-sweeper.js";
import { MongoWorkspacesRepository } from "./repository.js";
import { WorkspacesHandler } from "./workspaces-service.js";

const plugin: Plugin = {
  name: "workspaces",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new MongoWorkspacesRepository(ctx.db);
    await repo.ensureIndexes();
    const handler = new WorkspacesHandler(repo, ctx.config.planRateLimits);
    const idempotency = new MongoIdempotencyStore(ctx.db);
    await idempotency.ensureIndexes();
    const sweeper = new IdempotencySweeper(idempotency, ctx.logger.child("idempotency-sweeper"));
    sweeper.start();
    return {
      services: [WorkspacesService, IdempotencyService],
      routes: (router) => {
        router.service(WorkspacesService, handler);
        router.service(IdempotencyService, new IdempotencyHandler(idempotency));
      },
      stop: () => sweeper.stop(),
    };
  },
};

export default plugin;
