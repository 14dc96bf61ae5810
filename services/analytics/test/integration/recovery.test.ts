/**
 * Writes a crashed process left midway (write-ops.ts, recovery.ts), on the real database: the
 * recovery sweepers of several replicas finish each op once; a half-applied op is never folded
 * twice and its workspace is rebuilt by the sweeper, with no operator; a rebuild that died
 * midway is run again; each repair is announced on the snapshot invalidation channel; and a
 * rebuild waits for live writers, discards dead ones' markers and refuses writes while it runs.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { AnalyticsService, CustomersService, TrackLeadRequestSchema, WorkspacesService } from "@linquid/contracts";
import { createLogger, newId, runWithDeadline } from "@linquid/mesh";
import { pluginDatabase, startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KEEP_MS, SnapshotInvalidations } from "../../src/invalidations.js";
import { migrateStoredForms } from "../../src/migrations.js";
import { Recovery } from "../../src/recovery.js";
import { AnalyticsRepository, type EventDoc, type OpDoc, type TotalsDoc } from "../../src/repository.js";
import { Rollups } from "../../src/rollups.js";
import { StatsPusher } from "../../src/stats-push.js";
import { Ingestion } from "../../src/ingestion.js";
import { checkLead, publicEventId } from "../../src/validation.js";
import { WorkspaceCurrencies } from "../../src/workspace-currency.js";
import { WriteOps } from "../../src/write-ops.js";

describe("recovery of interrupted writes", () => {
  let mesh: TestMesh;
  let db: Db;
  let close: () => Promise<void>;
  let repo: AnalyticsRepository;
  const logged: string[] = [];

  /** The analytics parts of one replica, on the mesh's analytics database. */
  function replica() {
    const logger = createLogger("test", "warn", (line) => void logged.push(line));
    const currencies = new WorkspaceCurrencies(() => mesh.host.client(WorkspacesService));
    const stats = new StatsPusher(() => mesh.host.client(CustomersService), currencies, logger);
    const ops = new WriteOps(repo);
    const invalidations = new SnapshotInvalidations(repo);
    const rollups = new Rollups(repo, ops, stats, invalidations);
    return { recovery: new Recovery(repo, ops, rollups, stats, logger, invalidations), ops, invalidations };
  }

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,analytics" });
    ({ db, close } = await pluginDatabase(mesh, "analytics"));
    repo = new AnalyticsRepository(db);
  });
  afterAll(async () => {
    await close?.();
    await mesh?.stop();
  });

  /** A workspace with one customer who has one lead; returns its id. */
  async function customerWithLead(ws: string): Promise<string> {
    const a = mesh.host.client(AnalyticsService);
    const lead = await a.trackLead({ workspaceId: ws, externalId: "u1", eventId: "l1", timestamp: timestampFromDate(new Date("2026-03-01T10:00:00Z")) });
    return lead.customerId!;
  }

  /** A sale stored by an ingestion whose process died before it folded it: the event and the marker. */
  async function crashedSale(ws: string, customerId: string, amount: number): Promise<OpDoc> {
    const opId = newId("op");
    const _id = `${ws}:sale:${newId("inv")}`;
    const sale: EventDoc = { _id, eventId: publicEventId(_id), type: "sale", at: new Date("2026-03-05T00:00:00Z"), amount, currency: "USD", workspaceId: ws, customerId, opId, receivedAt: new Date() };
    await repo.events.insertOne(sale);
    const past = new Date(Date.now() - 120_000);
    const op: OpDoc = { _id: opId, workspaceId: ws, kind: "ingest", eventIds: [_id], startedAt: past, due: past };
    await repo.ops.insertOne(op);
    return op;
  }

  const totalsOf = async (ws: string, customerId: string): Promise<TotalsDoc> => (await repo.totals.findOne({ _id: `${ws}:${customerId}` }))!;

  it("finishes an interrupted ingestion once, whichever replica's sweeper takes it", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const customerId = await customerWithLead(ws);
    const op = await crashedSale(ws, customerId, 700);
    const done = await Promise.all([replica(), replica(), replica()].map((r) => r.recovery.sweep()));
    expect(done.reduce((a, b) => a + b.recovered, 0)).toBe(1);
    expect(await repo.ops.findOne({ _id: op._id })).toBeNull();
    const t = await totalsOf(ws, customerId);
    expect(t).toMatchObject({ leads: 1, sales: 1, revenue: 700 });
    expect(t.recentOps).toContain(op._id);
    const cohorts = await mesh.host.client(AnalyticsService).getCohorts({ workspaceId: ws, groupBy: "month" });
    expect(cohorts.cohorts.map((c) => [c.cohort, c.customers, c.sales, c.revenue])).toEqual([["2026-03", 1n, 1n, 700n]]);
  });

  /** The workspace's figures as the API answers them: month cohorts and LTV cohorts. */
  async function figures(ws: string) {
    const a = mesh.host.client(AnalyticsService);
    const cohorts = await a.getCohorts({ workspaceId: ws, groupBy: "month" });
    const ltv = await a.getLtvCohorts({ workspaceId: ws, months: 24 });
    return {
      cohorts: cohorts.cohorts.map((c) => [c.cohort, c.customers, c.sales, c.revenue]),
      ltv: ltv.cohorts.filter((c) => c.customers > 0n).map((c) => [c.cohort, c.customers, c.cumulativeRevenue.at(-1)]),
    };
  }
  const entriesFor = async (ws: string) => (await replica().invalidations.since("")).entries.filter((e) => e.workspaceId === ws);

  it("repairs an op whose totals were written but whose cells may not be: never folded twice, the workspace rebuilt by the sweeper, the repair announced", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const customerId = await customerWithLead(ws);
    const op = await crashedSale(ws, customerId, 300);
    // The crash came after the totals write and before the cells': the op is in recentOps, the cells lack the sale.
    await repo.totals.updateOne({ _id: `${ws}:${customerId}` }, { $set: { sales: 1, revenue: 300, revenueByMonth: [{ month: "2026-03", revenue: 300 }] }, $push: { recentOps: op._id } });
    expect((await figures(ws)).cohorts).toEqual([["2026-03", 1n, 0n, 0n]]);
    logged.length = 0;
    const result = await replica().recovery.sweep();
    expect(result).toMatchObject({ recovered: 1, rebuilt: 1 });
    expect(await repo.ops.findOne({ _id: op._id })).toBeNull();
    expect(await db.collection("workspace_rebuilds").findOne({ _id: ws as never })).toBeNull();
    expect(await totalsOf(ws, customerId)).toMatchObject({ leads: 1, sales: 1, revenue: 300 });
    // Cohorts and LTV end right, as a rebuild from the raw events computes them.
    expect(await figures(ws)).toEqual({ cohorts: [["2026-03", 1n, 1n, 300n]], ltv: [["2026-03", 1n, 300n]] });
    expect(logged.some((l) => l.includes("rebuilding the workspace") && l.includes(op._id))).toBe(true);
    expect(await entriesFor(ws)).not.toHaveLength(0);
  });

  it("runs again a rebuild that died midway (its lease expired, its rollups dropped), and a requested one left by a crash", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const customerId = await customerWithLead(ws);
    await mesh.host.client(AnalyticsService).trackSale({ workspaceId: ws, externalId: "u1", amount: 450n, currency: "USD", invoiceId: "i1", timestamp: timestampFromDate(new Date("2026-04-02T00:00:00Z")) });
    const before = await figures(ws);
    expect(before.cohorts).toEqual([["2026-03", 1n, 1n, 450n]]);
    // A rebuild that dropped the rollups and died: its lease was never released and has expired.
    await repo.dropWorkspaceRollups(ws);
    await db.collection("workspace_rebuilds").insertOne({ _id: ws as never, token: "rb_dead", until: new Date(Date.now() - 1000) });
    expect((await figures(ws)).cohorts).toEqual([]);
    // Any replica's sweep finds it by its lease and runs it, once.
    const results = await Promise.all([replica(), replica()].map((r) => r.recovery.sweep()));
    expect(results.reduce((a, b) => a + b.rebuilt, 0)).toBe(1);
    expect(await figures(ws)).toEqual(before);
    expect(await totalsOf(ws, customerId)).toMatchObject({ leads: 1, sales: 1, revenue: 450 });
    expect(await db.collection("workspace_rebuilds").countDocuments({ _id: ws as never })).toBe(0);

    // A rebuild requested by recovery whose process died before running it.
    const r = replica();
    await r.ops.requestRebuild(ws);
    await repo.dropWorkspaceRollups(ws);
    expect(await r.recovery.sweep()).toMatchObject({ rebuilt: 1 });
    expect(await figures(ws)).toEqual(before);
  });

  it("migrates an older build's data: attribution cells one per model rebuilt (their indexes dropped), customer timelines dropped", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    await a.trackClick({ workspaceId: ws, clickId: "c1", linkId: "lnk_a", campaignId: "spring", timestamp: timestampFromDate(new Date("2026-03-01T09:00:00Z")) });
    await a.trackLead({ workspaceId: ws, externalId: "u1", clickId: "c1", eventId: "l1", timestamp: timestampFromDate(new Date("2026-03-01T10:00:00Z")) });
    await a.trackSale({ workspaceId: ws, externalId: "u1", amount: 300n, currency: "USD", invoiceId: "i1", timestamp: timestampFromDate(new Date("2026-03-02T00:00:00Z")) });
    const report = async () => (await a.getWorkspaceAttribution({ workspaceId: ws, model: "linear", groupBy: "link" })).rows.map((r) => [r.key, r.revenue, r.sales, r.customers]);
    const before = await report();
    expect(before).toEqual([["lnk_a", 300n, 1n, 1n]]);
    // What the older build stored: a document per model, and its index.
    await repo.attributionCells.insertOne({ _id: `${ws}|linear|link|k:lnk_a`, workspaceId: ws, model: "linear", dim: "link", key: "lnk_a", revenue: 300, sales: 1, customers: 1 } as never);
    await repo.attributionCells.createIndex({ workspaceId: 1, model: 1, dim: 1 }, { name: "ws_model_dim" });
    await db.collection("timeline_buckets").insertOne({ _id: `${ws}:x#000000` as never, workspaceId: ws, owner: `${ws}:x`, seq: 0, count: 1, entries: ["2026-03-01T10:00:00.000Z|x"] });
    const r = replica();
    await migrateStoredForms(repo, r.ops, createLogger("test", "error"));
    expect(await db.listCollections({ name: "timeline_buckets" }).toArray()).toEqual([]);
    expect((await repo.attributionCells.listIndexes().toArray()).map((i) => i["name"])).not.toContain("ws_model_dim");
    expect(await r.ops.dueRebuilds(100)).toContain(ws);
    expect(await r.recovery.sweep()).toMatchObject({ rebuilt: 1 });
    expect(await repo.attributionCells.countDocuments({ workspaceId: ws, model: { $exists: true } } as never)).toBe(0);
    expect(await report()).toEqual(before);
    // Nothing left to migrate: a second start requests nothing.
    await migrateStoredForms(repo, r.ops, createLogger("test", "error"));
    expect(await r.ops.dueRebuilds(100)).not.toContain(ws);
  });

  it("rebuilds the workspaces an older build left without hour cells, again after a start that stopped before creating their index", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    await a.trackClick({ workspaceId: ws, clickId: "c1", linkId: "lnk_a", timestamp: timestampFromDate(new Date("2026-03-01T10:20:00Z")) });
    await a.trackLead({ workspaceId: ws, externalId: "u1", clickId: "c1", eventId: "l1", timestamp: timestampFromDate(new Date("2026-03-01T11:00:00Z")) });
    // 10:00–11:59 are whole hours of this partial day: they come from the hour cells.
    const partialDay = async () => (await a.getCohorts({ workspaceId: ws, groupBy: "month", start: "2026-03-01T09:30:00Z", end: "2026-03-01T12:00:00Z" })).cohorts.map((c) => [c.cohort, c.customers]);
    expect(await partialDay()).toEqual([["2026-03", 1n]]);
    // What an older build stored: day cells, but neither hour cells nor their index.
    await repo.hourCells.dropIndex("ws_hour");
    await repo.hourCells.deleteMany({ workspaceId: ws });
    expect(await partialDay()).toEqual([]);
    const indexed = async () => (await repo.hourCells.listIndexes().toArray()).map((i) => i["name"]).includes("ws_hour");
    const r = replica();
    /** Sweeps until the workspace's rebuild has run (the mesh's own sweeper may be the one to run it). */
    const rebuilt = async () => {
      for (const until = Date.now() + 30_000; (await repo.findRebuildLease(ws)) !== null && Date.now() < until; ) {
        if ((await r.ops.dueRebuilds(100)).includes(ws)) await r.recovery.sweep();
        else await new Promise((done) => setTimeout(done, 100));
      }
      expect(await repo.findRebuildLease(ws)).toBeNull();
    };
    // A start that stops after requesting the rebuilds, before creating the index.
    const stopping = Object.create(repo) as AnalyticsRepository;
    stopping.ensureHourCellIndex = () => Promise.reject(new Error("stopped"));
    await expect(migrateStoredForms(stopping, r.ops, createLogger("test", "error"))).rejects.toThrow("stopped");
    expect(await r.ops.dueRebuilds(100)).toContain(ws);
    expect(await indexed()).toBe(false);
    await rebuilt();
    expect(await partialDay()).toEqual([["2026-03", 1n]]);
    // The next start finds the index still missing: it requests the rebuilds again, then creates it.
    await migrateStoredForms(repo, r.ops, createLogger("test", "error"));
    expect(await r.ops.dueRebuilds(100)).toContain(ws);
    expect(await indexed()).toBe(true);
    await rebuilt();
    expect(await partialDay()).toEqual([["2026-03", 1n]]);
    // Once the index is there, a start requests nothing.
    await migrateStoredForms(repo, r.ops, createLogger("test", "error"));
    expect(await r.ops.dueRebuilds(100)).not.toContain(ws);
  });

  it("finishes a write past its marker when its caller's deadline passes meanwhile: no marker left to recovery, nothing to rebuild", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const r = replica();
    // The events' insert is slow: the caller's deadline passes before it is done.
    const slowRepo = Object.create(repo) as AnalyticsRepository;
    slowRepo.insertEvents = async (docs) => {
      await new Promise((done) => setTimeout(done, 400));
      return repo.insertEvents(docs);
    };
    const logger = createLogger("test", "error");
    const currencies = new WorkspaceCurrencies(() => mesh.host.client(WorkspacesService));
    const stats = new StatsPusher(() => mesh.host.client(CustomersService), currencies, logger);
    const rollups = new Rollups(slowRepo, r.ops, stats, r.invalidations);
    const ingestion = new Ingestion(slowRepo, rollups, r.ops, stats, currencies, () => mesh.host.client(CustomersService), logger);
    const lead = checkLead(ws, create(TrackLeadRequestSchema, { workspaceId: ws, externalId: "late", eventId: "l1", timestamp: timestampFromDate(new Date("2026-03-01T10:00:00Z")) }), Date.now());
    const [outcome] = await runWithDeadline(300, () => ingestion.ingest(ws, [lead], "background"));
    expect(outcome!.failure).toBeUndefined();
    expect(await repo.ops.countDocuments({ workspaceId: ws })).toBe(0);
    expect(await totalsOf(ws, outcome!.customerId!)).toMatchObject({ leads: 1 });
    expect(await r.ops.dueRebuilds(100)).not.toContain(ws);
  });

  it("answers the invalidation channel by cursor: every entry once past the overlap, repeats told by id, an expired cursor marked incomplete", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const a = mesh.host.client(AnalyticsService);
    const first = await a.listSnapshotInvalidations({ cursor: "" });
    expect(first.complete).toBe(true);
    await mesh.host.client(AnalyticsService).rebuildWorkspace({ workspaceId: ws }); // the operator's rebuild announces itself too
    const second = await a.listSnapshotInvalidations({ cursor: first.cursor });
    const mine = second.invalidations.filter((i) => i.workspaceId === ws);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.id).toMatch(/^inv_/);
    // The next cursor reaches back by the overlap: the entry may come again, with the same id.
    const third = await a.listSnapshotInvalidations({ cursor: second.cursor });
    expect(third.invalidations.filter((i) => i.workspaceId === ws).every((i) => i.id === mine[0]!.id)).toBe(true);
    expect((await a.listSnapshotInvalidations({ cursor: String(Date.now() - KEEP_MS - 60_000) })).complete).toBe(false);
    const bad = await a.listSnapshotInvalidations({ cursor: "yesterday" }).catch((e: unknown) => ConnectError.from(e));
    expect((bad as ConnectError).code).toBe(Code.InvalidArgument);
  });

  it("lets a rebuild wait for a live writer and discard a dead one's marker; writes meanwhile wait for it, or are refused when they cannot wait", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const customerId = await customerWithLead(ws);
    const dead = await crashedSale(ws, customerId, 500);
    const live: OpDoc = { _id: newId("op"), workspaceId: ws, kind: "register", eventIds: [], customerId, startedAt: new Date(), due: new Date(Date.now() + 60_000) };
    await repo.ops.insertOne(live);
    const a = mesh.host.client(AnalyticsService);
    const started = Date.now();
    const rebuild = a.rebuildWorkspace({ workspaceId: ws });
    // While the rebuild holds its lease, a write of the workspace waits for it...
    for (let i = 0; i < 100 && (await db.collection("workspace_rebuilds").countDocuments({ _id: ws as never })) === 0; i++) await new Promise((r) => setTimeout(r, 20));
    let waitedUntil = 0;
    const waiting = a.trackLead({ workspaceId: ws, externalId: "u2", eventId: "l2" }).then((r) => ((waitedUntil = Date.now()), r));
    // ...and one whose deadline leaves no time to wait is refused with UNAVAILABLE, nothing written.
    const refused = await a.trackLead({ workspaceId: ws, externalId: "u3", eventId: "l3" }, { timeoutMs: 1200 }).catch((e: unknown) => ConnectError.from(e));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.Unavailable);
    // The live writer finishes after 300 ms; only then does the rebuild go on.
    await new Promise((r) => setTimeout(r, 300));
    await repo.ops.deleteOne({ _id: live._id });
    const rebuilt = await rebuild;
    const rebuiltAt = Date.now();
    expect(rebuiltAt - started).toBeGreaterThanOrEqual(300);
    // The dead writer's marker is gone and its stored sale counted (the rebuild folds every stored event).
    expect(rebuilt).toMatchObject({ customers: 1n, events: 2n });
    expect(await repo.ops.findOne({ _id: dead._id })).toBeNull();
    expect(await repo.ops.countDocuments({ workspaceId: ws })).toBe(0);
    expect(await totalsOf(ws, customerId)).toMatchObject({ leads: 1, sales: 1, revenue: 500 });
    // The waiting write went through once the rebuild was done, and writes go through again.
    expect((await waiting).duplicate).toBe(false);
    expect(waitedUntil).toBeGreaterThanOrEqual(rebuiltAt - 50);
    expect(await repo.events.countDocuments({ workspaceId: ws, externalId: "u3" })).toBe(0);
    expect((await a.trackLead({ workspaceId: ws, externalId: "u4", eventId: "l4" })).duplicate).toBe(false);
  });
});
