/**
 * The customers plugin: serves linquid.customers.v1.CustomersService on its own database and
 * follows writes up in the analytics service, retrying in the background (follow-ups.ts,
 * retry-sweeper.ts).
 */
import { AnalyticsService, CustomersService } from "@linquid/contracts";
import type { Plugin } from "@linquid/mesh";
import { CursorCodec, cursorKey } from "./cursor.js";
import { CustomersHandler } from "./customers-service.js";
import { MongoCustomersRepository } from "./customers-repository.js";
import { createMetadataFollowUp, createRegisterFollowUp, createScrubFollowUp } from "./follow-ups.js";
import { RetrySweeper } from "./retry-sweeper.js";

/** How often a replica looks for customers the metadata index does not cover yet. */
const BACKFILL_INTERVAL_MS = 30_000;

const plugin: Plugin = {
  name: "customers",
  needs: { mongo: true },
  async start(ctx) {
    const repo = new MongoCustomersRepository(ctx.db, { logger: ctx.logger });
    await repo.ensureIndexes();
    const cursors = new CursorCodec([await cursorKey(ctx.db, ctx.config.cursorSecret)]);
    // Analytics clients are made per call: when analytics is not configured this throws, and
    // the follow-up waits for a sweep.
    const analytics = () => ctx.client(AnalyticsService);
    const scrub = new RetrySweeper(createScrubFollowUp(repo, analytics), ctx.logger.child("scrub"));
    const register = new RetrySweeper(createRegisterFollowUp(repo, analytics), ctx.logger.child("register"));
    const metadata = new RetrySweeper(createMetadataFollowUp(repo), ctx.logger.child("metadata"));
    scrub.start();
    register.start();
    metadata.start();
    // Customers from before the metadata index get their entries in the background; the first
    // pass starts now, and metadata filters read the index once a pass finds nothing left.
    const backfillLog = ctx.logger.child("metadata-backfill");
    let backfilling: Promise<void> | undefined;
    const backfill = () =>
      (backfilling ??= repo
        .backfillMetadata()
        .then((n) => void (n > 0 && backfillLog.info("metadata index entries added", { customers: n })))
        .catch((err: unknown) => backfillLog.warn("metadata index backfill failed; will retry", { error: err instanceof Error ? err.message : String(err) }))
        .finally(() => (backfilling = undefined)));
    void backfill();
    const backfillTimer = setInterval(backfill, BACKFILL_INTERVAL_MS);
    backfillTimer.unref();
    const handler = new CustomersHandler(repo, { scrub, register }, cursors);
    return {
      services: [CustomersService],
      routes: (router) => router.service(CustomersService, handler),
      stop: async () => {
        clearInterval(backfillTimer);
        await Promise.all([scrub.stop(), register.stop(), metadata.stop(), backfilling]);
      },
    };
  },
};

export default plugin;

export { liveFilter, newCustomerDoc, type CustomerDoc } from "./customer-doc.js";
export { metadataEntries, type MetadataEntryDoc } from "./metadata-index.js";
export { canonicalFilters, metadataTerm, NO_FILTERS, type CustomerFilters } from "./filters.js";
export { CursorCodec } from "./cursor.js";
export { keysetWindow } from "./keyset.js";
export { CustomersHandler, toCustomer } from "./customers-service.js";
export { MongoCustomersRepository, type CustomersRepository } from "./customers-repository.js";
export { pageWithTotal } from "./page-total.js";
