/**
 * What the follow-ups of a customer write do, one customer at a time: in the analytics service
 * (scrub, register) and in the metadata index (metadata). All are idempotent, and all look at
 * the customer first: the marker is written before the customer write (follow-up-markers.ts),
 * so it may belong to a write that has not happened — still in flight, or lost with a crashed
 * process. A sweeper removes such a marker only after fencing that write off for good, so the
 * write can never land without its marker:
 *
 * - scrub: the customer is deleted → ScrubCustomer in analytics, then every identity key still
 *   pointing at it (their `_id`s hold its external ids; a crash may leave one) and its metadata
 *   index entries, then the marker.
 *   Still live → the delete has not happened: bump the customer's rev (the delete's update is
 *   conditional on the rev it read, so a late one fails and its writer re-reads, re-marking
 *   with a new token) and remove the marker if its token is the one leased.
 * - register: the customer exists → RegisterCustomer with its creation time, then the marker.
 *   A tombstone → the create's id was poisoned and it retried under another: remove the marker.
 *   Missing → the insert has not happened: poison the id (a late insert then fails and its
 *   writer retries under a new id, with a new marker) and remove the marker.
 * - metadata: a write of new metadata added index entries before writing the customer and
 *   syncs them after. A sweeper's marker may belong to a write still in flight: fence it off
 *   (bump a live customer's rev, poison a missing id), then sync the entries with what is
 *   stored and remove the marker.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { AnalyticsService } from "@linquid/contracts";
import type { MongoCustomersRepository } from "./customers-repository.js";
import type { FollowUpKind } from "./follow-up-markers.js";
import type { DueFollowUp, FollowUp, FollowUpTarget } from "./retry-sweeper.js";

type Analytics = () => Client<typeof AnalyticsService>;

/** The marker side of a follow-up of `kind`: finding, leasing and removing its markers. */
function markersOf(repo: MongoCustomersRepository, kind: FollowUpKind): Pick<FollowUp, "findDue" | "lease"> & { remove(target: FollowUpTarget | DueFollowUp): Promise<boolean> } {
  const markers = repo.followUps;
  return {
    findDue: (limit) => markers.findDue(kind, limit),
    lease: (marker, leaseMs) => markers.lease({ ...marker, _id: `${kind}:${marker.customerId}`, kind }, leaseMs),
    remove: (target) => markers.remove(kind, target.customerId, "token" in target ? target.token : undefined),
  };
}

/** Removes a deleted customer's PII from analytics and its stale identity keys. */
export function createScrubFollowUp(repo: MongoCustomersRepository, analytics: Analytics): FollowUp {
  const markers = markersOf(repo, "scrub");
  return {
    name: "customer scrub",
    findDue: markers.findDue,
    lease: markers.lease,
    async run(target, timeoutMs) {
      const { workspaceId, customerId } = target;
      const customer = await repo.findById(customerId);
      if (customer !== null && customer.deletedAt === null) {
        // Only a sweeper's leased marker can get here (the write's own attempt follows its delete).
        if ("token" in target && (await repo.fence(customer))) await markers.remove(target);
        return;
      }
      if (customer !== null) {
        await analytics().scrubCustomer({ workspaceId, customerId }, { timeoutMs });
        await repo.identity.removeAllOf(customerId);
        await repo.metadata.sync(customerId, null);
      }
      await markers.remove({ workspaceId, customerId });
    },
  };
}

/** Records a customer's creation time in analytics (its first touch while it has no touchpoint). */
export function createRegisterFollowUp(repo: MongoCustomersRepository, analytics: Analytics): FollowUp {
  const markers = markersOf(repo, "register");
  return {
    name: "customer registration",
    findDue: markers.findDue,
    lease: markers.lease,
    async run(target, timeoutMs) {
      const { workspaceId, customerId } = target;
      const customer = await repo.findById(customerId);
      if (customer === null) {
        // Only a sweeper's leased marker can get here (the write's own attempt follows its insert).
        if ("token" in target && (await repo.identity.poison(customerId, workspaceId))) await markers.remove(target);
        return;
      }
      if (customer.tombstone !== true) {
        await analytics().registerCustomer({ workspaceId, customerId, createdAt: timestampFromDate(customer.createdAt) }, { timeoutMs });
      }
      await markers.remove({ workspaceId, customerId });
    },
  };
}

/** Brings a customer's metadata index entries in line with its stored metadata. */
export function createMetadataFollowUp(repo: MongoCustomersRepository): FollowUp {
  const markers = markersOf(repo, "metadata");
  return {
    name: "metadata index sync",
    findDue: markers.findDue,
    lease: markers.lease,
    async run(target) {
      const { customerId, workspaceId } = target;
      if ("token" in target) {
        // The write this marker belongs to may still land: fence it off first.
        const customer = await repo.findById(customerId);
        if (customer === null) {
          if (!(await repo.identity.poison(customerId, workspaceId))) return; // inserted meanwhile: next time
        } else if (customer.deletedAt === null && !(await repo.fence(customer))) {
          return; // written meanwhile: next time
        }
      }
      await repo.metadata.sync(customerId, await repo.findById(customerId));
      await markers.remove(target);
    },
  };
}
