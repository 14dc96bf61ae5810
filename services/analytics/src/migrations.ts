/**
 * Changes of the stored form that data written by an older build needs, run at start, each
 * idempotent and cheap when there is nothing to change.
 *
 * Attribution cells, one document per model → one per key with every model's figures: the old
 * documents (they have a `model` field) cannot be converted in place without double counting
 * against writes already landing in the new form, so each workspace that has them gets a
 * rebuild requested; the recovery sweeper runs it (it drops the workspace's rollups, old
 * documents included, and recomputes them from the raw events). Until it has run, that
 * workspace's attribution report is incomplete. The old indexes are dropped after.
 *
 * Cohort hour cells, new: data of an older build has day cells but no hour cells, and a partial
 * boundary day would then miss its whole hours. The hour cells' index is created here, not with
 * the others, and only after every workspace with day cells has its rebuild requested (durably),
 * so the index's absence is the mark: a start that stops in between finds it missing and requests
 * them again; once it exists, start-up reads nothing. Until its rebuild has run, a workspace's
 * cohort ranges with a time of day miss the customers of the whole hours of their partial days.
 *
 * Customer timelines (`timeline_buckets`): a customer's events are read through the `journey`
 * index of `events` instead, so the collection an older build kept is dropped.
 *
 * Return cells: their index `ws_dim_day_prev` replaces `ws_dim_day` (a prefix of it), which an
 * older build created; the old one is dropped, as every write would keep it up for nothing.
 */
import { dbCall, type Logger } from "@linquid/mesh";
import type { AnalyticsRepository } from "./repository.js";
import type { WriteOps } from "./write-ops.js";

const OLD_ATTRIBUTION_INDEXES = ["ws_model_dim", "ws_model_dim_day"];

export async function migrateStoredForms(repo: AnalyticsRepository, ops: WriteOps, logger: Logger): Promise<void> {
  if (await repo.dropRetired("timeline_buckets")) logger.info("customer timelines of an older build dropped (read from the events now)");
  await addHourCells(repo, ops, logger);
  await splitAttributionCells(repo, ops, logger);
  await repo.dropRetiredIndex(repo.attributionReturnCells, "ws_dim_day");
}

async function addHourCells(repo: AnalyticsRepository, ops: WriteOps, logger: Logger): Promise<void> {
  if (await repo.hasHourCellIndex()) return;
  // A fresh database has no day cells: nothing to rebuild, only the index to create.
  for (const ws of await repo.workspacesWithDayCells()) {
    await ops.requestRebuild(ws);
    logger.info("cohort cells of an older build, without hour cells: rebuild requested", { workspaceId: ws });
  }
  await repo.ensureHourCellIndex();
}

async function splitAttributionCells(repo: AnalyticsRepository, ops: WriteOps, logger: Logger): Promise<void> {
  // The old indexes mark data of an older build: without them there is nothing to look for, and
  // start-up scans nothing. Rebuilds are requested (durably) before the indexes go, so a start
  // that stops in between finds the indexes again and requests them again.
  const old: Array<{ col: (typeof repo)["attributionCells"]; name: string }> = [];
  for (const col of [repo.attributionCells, repo.attributionDayCells, repo.attributionReturnCells]) {
    const names = await repo.indexNames(col);
    for (const name of names.filter((n) => OLD_ATTRIBUTION_INDEXES.includes(n))) old.push({ col, name });
  }
  if (old.length === 0) return;
  const stale = await dbCall("attribution_cells", "aggregate", (o) =>
    repo.attributionCells.aggregate<{ _id: string }>([{ $match: { model: { $exists: true } } }, { $group: { _id: "$workspaceId" } }], o).toArray(),
  );
  for (const { _id: ws } of stale) {
    await ops.requestRebuild(ws);
    logger.info("attribution cells of an older build: rebuild requested", { workspaceId: ws });
  }
  for (const { col, name } of old) await dbCall(col.collectionName, "dropIndex", (o) => col.dropIndex(name, o));
}
