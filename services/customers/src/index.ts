/**
 * The customers plugin: serves linquid.customers.v1.CustomersService on its own database and
 * follows writes up in the analytics service, retrying in the background (follow-ups.ts,
 * retry-sweeper.ts).
 */
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { CustomersHandler } from "./customers-service.js";
import { MongoCustomersRepository } from "./customers-repository.js";
import { createRegisterFollowUp, createScrubFollowUp } from "./follow-ups.js";
import { RetrySweeper } from "./retry-sweeper.js";

const plugin: Plugin = {
  name: "customers",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new MongoCustomersRepository(ctx.db);
    await repo.ensureIndexes();
    // Analytics clients are made per call: when analytics is not configured this throws, and
    // the follow-up waits for a sweep.
    const analytics = () => ctx.client(AnalyticsService);
    const scrub = new RetrySweeper(createScrubFollowUp(repo, analytics), ctx.logger.child("scrub"));
    const register = new RetrySweeper(createRegisterFollowUp(repo, analytics), ctx.logger.child("register"));
    scrub.start();
    register.start();
    const handler = new CustomersHandler(repo, { scrub, register });
    return {
      services: [CustomersService],
      routes: (router) => router.service(CustomersService, handler),
      stop: async () => {
        await Promise.all([scrub.stop(), register.stop()]);
      },
    };
  },
};

export default plugin;

export { liveFilter, newCustomerDoc, type CustomerDoc } from "./customer-doc.js";
export { CustomersHandler, toCustomer } from "./customers-service.js";
export { MongoCustomersRepository, type CustomersRepository } from "./customers-repository.js";
