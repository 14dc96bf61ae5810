/**
 * The customers plugin: serves linquid.customers.v1.CustomersService on its own database and
 * follows writes up in the analytics service in the background (retry-sweeper.ts).
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { CustomersHandler } from "./customers-service.js";
import { MongoCustomersRepository } from "./repository.js";
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
    const scrub = new RetrySweeper(
      {
        name: "customer scrub",
        findPending: (limit) => repo.findScrubPending(limit),
        async run({ workspaceId, customerId }, timeoutMs) {
          await analytics().scrubCustomer({ workspaceId, customerId }, { timeoutMs });
          await repo.completeScrub(customerId);
        },
      },
      ctx.logger.child("scrub"),
    );
    const register = new RetrySweeper(
      {
        name: "customer registration",
        findPending: (limit) => repo.findRegisterPending(limit),
        async run({ workspaceId, customerId }, timeoutMs) {
          const createdAt = await repo.createdAtOf(customerId);
          if (createdAt !== null) await analytics().registerCustomer({ workspaceId, customerId, createdAt: timestampFromDate(createdAt) }, { timeoutMs });
          await repo.completeRegistration(customerId);
        },
      },
      ctx.logger.child("register"),
    );
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

export { CustomersHandler, toCustomer } from "./customers-service.js";
export { liveFilter, MongoCustomersRepository, newCustomerDoc, type CustomerDoc, type CustomersRepository } from "./repository.js";
