/**
 * Writes a crashed process left midway (write-ops.ts, recovery.ts), on the real database: the
 * recovery sweepers of two replicas finish each op once, a half-applied op is reported for a
 * rebuild instead of being folded twice, and a rebuild waits for live writers, discards dead
 * ones' markers and refuses writes while it runs.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AnalyticsService, CustomersService, WorkspacesService } from "@linquid/contracts";
import { createLogger, newId } from "@linquid/mesh";
import { pluginDatabase, startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Recovery } from "../../src/recovery.js";
import { AnalyticsRepository, type EventDoc, type OpDoc, type TotalsDoc } from "../../src/repository.js";
import { Rollups } from "../../src/rollups.js";
import { StatsPusher } from "../../src/stats-push.js";
import { publicEventId } from "../../src/validation.js";
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
    const rollups = new Rollups(repo, ops, stats);
    return { recovery: new Recovery(repo, ops, rollups, stats, logger), ops };
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
    expect(done.reduce((a, b) => a + b, 0)).toBe(1);
    expect(await repo.ops.findOne({ _id: op._id })).toBeNull();
    const t = await totalsOf(ws, customerId);
    expect(t).toMatchObject({ leads: 1, sales: 1, revenue: 700 });
    expect(t.recentOps).toContain(op._id);
    const cohorts = await mesh.host.client(AnalyticsService).getCohorts({ workspaceId: ws, groupBy: "month" });
    expect(cohorts.cohorts.map((c) => [c.cohort, c.customers, c.sales, c.revenue])).toEqual([["2026-03", 1n, 1n, 700n]]);
  });

  it("reports an op whose totals were written but whose cells may not be, and never folds it twice", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const customerId = await customerWithLead(ws);
    const op = await crashedSale(ws, customerId, 300);
    // The crash came after the totals write: the op is in recentOps already.
    await repo.totals.updateOne({ _id: `${ws}:${customerId}` }, { $set: { sales: 1, revenue: 300 }, $push: { recentOps: op._id } });
    logged.length = 0;
    await replica().recovery.sweep();
    expect(await repo.ops.findOne({ _id: op._id })).toBeNull();
    expect(await totalsOf(ws, customerId)).toMatchObject({ sales: 1, revenue: 300 });
    expect(logged.some((l) => l.includes("run RebuildWorkspace") && l.includes(op._id))).toBe(true);
  });

  it("lets a rebuild wait for a live writer, discard a dead one's marker, and refuse writes meanwhile", async () => {
    const { id: ws } = await mesh.workspace({ currency: "USD" });
    const customerId = await customerWithLead(ws);
    const dead = await crashedSale(ws, customerId, 500);
    const live: OpDoc = { _id: newId("op"), workspaceId: ws, kind: "register", eventIds: [], customerId, startedAt: new Date(), due: new Date(Date.now() + 60_000) };
    await repo.ops.insertOne(live);
    const a = mesh.host.client(AnalyticsService);
    const started = Date.now();
    const rebuild = a.rebuildWorkspace({ workspaceId: ws });
    // While the rebuild holds its lease, a write of the workspace is refused with UNAVAILABLE.
    for (let i = 0; i < 100 && (await db.collection("workspace_rebuilds").countDocuments({ _id: ws as never })) === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const refused = await a.trackLead({ workspaceId: ws, externalId: "u2", eventId: "l2" }).catch((e: unknown) => ConnectError.from(e));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.Unavailable);
    // The live writer finishes after 300 ms; only then does the rebuild go on.
    await new Promise((r) => setTimeout(r, 300));
    await repo.ops.deleteOne({ _id: live._id });
    const rebuilt = await rebuild;
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    // The dead writer's marker is gone and its stored sale counted (the rebuild folds every stored event).
    expect(rebuilt).toMatchObject({ customers: 1n, events: 2n });
    expect(await repo.ops.findOne({ _id: dead._id })).toBeNull();
    expect(await repo.ops.countDocuments({ workspaceId: ws })).toBe(0);
    expect(await totalsOf(ws, customerId)).toMatchObject({ leads: 1, sales: 1, revenue: 500 });
    // And writes go through again.
    expect((await a.trackLead({ workspaceId: ws, externalId: "u2", eventId: "l2" })).duplicate).toBe(false);
  });
});
