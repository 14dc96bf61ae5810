/**
 * The workspaces plugin: serves linquid.workspaces.v1.WorkspacesService on its own database.
 */
import { WorkspacesService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { MongoWorkspacesRepository } from "./repository.js";
import { WorkspacesHandler } from "./workspaces-service.js";

const plugin: Plugin = {
  name: "workspaces",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new MongoWorkspacesRepository(ctx.db);
    await repo.ensureIndexes();
    const handler = new WorkspacesHandler(repo, ctx.config.planRateLimits);
    return {
      services: [WorkspacesService],
      routes: (router) => router.service(WorkspacesService, handler),
      stop: async () => {},
    };
  },
};

export default plugin;
