/**
 * The customers plugin: serves linquid.customers.v1.CustomersService on its own database and
 * finishes deletions with the analytics service in the background (scrub-sweeper.ts).
 */
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { CustomersHandler } from "./customers-service.js";
import { MongoCustomersRepository } from "./repository.js";
import { ScrubSweeper } from "./scrub-sweeper.js";

const plugin: Plugin = {
  name: "customers",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new MongoCustomersRepository(ctx.db);
    await repo.ensureIndexes();
    const sweeper = new ScrubSweeper(
      repo,
      async (req, timeoutMs) => {
        // Made per call: when analytics is not configured this throws, and the scrub waits.
        await ctx.client(AnalyticsService).scrubCustomer(req, { timeoutMs });
      },
      ctx.logger.child("scrub"),
    );
    sweeper.start();
    const handler = new CustomersHandler(repo, sweeper);
    return {
      services: [CustomersService],
      routes: (router) => router.service(CustomersService, handler),
      stop: () => sweeper.stop(),
    };
  },
};

export default plugin;

export { CustomersHandler, toCustomer } from "./customers-service.js";
export { liveFilter, MongoCustomersRepository, newCustomerDoc, type CustomerDoc, type CustomersRepository } from "./repository.js";
