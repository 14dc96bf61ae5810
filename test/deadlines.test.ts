/**
 * Deadlines reach the database: every query and command the services send carries the RPC's
 * remaining deadline as `maxTimeMS` (15 s without one), and a command the database stops at its
 * `maxTimeMS` answers DEADLINE_EXCEEDED (the gateway's table turns that into 503).
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import analytics from "@linquid/analytics";
import { AnalyticsService, CustomersService, WorkspacesService } from "@linquid/contracts";
import customers, { MongoCustomersRepository, newCustomerDoc, NO_FILTERS } from "@linquid/customers";
import { createLogger, DEFAULT_TIMEOUT_MS, loadConfig, newId, runWithDeadline, startHost, type Host, type Plugin } from "@linquid/mesh";
import workspaces from "@linquid/workspaces";
import { MongoClient, MongoServerError, type CommandStartedEvent } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

/** The commands that read or write data or indexes: each must carry maxTimeMS. */
const DATA_COMMANDS = new Set(["find", "aggregate", "count", "distinct", "insert", "update", "delete", "findAndModify", "createIndexes"]);

describe("deadlines at the database", () => {
  let host: Host;
  let mongo: MongoClient;
  let prefix: string;
  const commands: CommandStartedEvent[] = [];

  // The plugins as the host runs them, on a client of the test's own that reports every command.
  const monitored = (p: Plugin): Plugin => ({ ...p, start: (ctx) => p.start({ ...ctx, db: mongo.db(ctx.db.databaseName) }) });

  beforeAll(async () => {
    mongo = new MongoClient(inject("mongodbUri"), { monitorCommands: true });
    mongo.on("commandStarted", (e) => commands.push(e));
    await mongo.connect();
    prefix = `t${newId("", 8).slice(1).toLowerCase()}`;
    const config = loadConfig({ MONGODB_URI: inject("mongodbUri"), REDIS_URL: "none", MONGODB_DB_PREFIX: prefix, GRPC_PORT: "0", PORT: "0", METRICS_PORT: "off", MESH_PLUGINS: "workspaces,customers,analytics" });
    host = await startHost(config, { plugins: [workspaces, customers, analytics].map(monitored), logger: createLogger("test", "error") });
  });
  afterAll(async () => {
    await host?.stop();
    await mongo?.close();
  });

  const mine = (from: number) => commands.slice(from).filter((c) => DATA_COMMANDS.has(c.commandName) && c.databaseName.startsWith(`${prefix}_`));

  it("sends every query and command with maxTimeMS: the caller's remaining deadline, or 15 s without one", async () => {
    const start = commands.length;
    const grpc = createGrpcTransport({ baseUrl: host.grpcUrl! });
    const c = createClient(CustomersService, grpc);
    const a = createClient(AnalyticsService, grpc);
    const ws = (await host.client(WorkspacesService).createWorkspace({ name: "deadlines", plan: "pro", currency: "USD", unlimited: true })).workspace!.id;
    const ts = (iso: string) => timestampFromDate(new Date(iso));

    // Without a deadline: the default cap.
    const cus = (await c.createCustomer({ workspaceId: ws, externalId: "d1", email: "d1@example.com" })).customer!;
    await a.trackLead({ workspaceId: ws, externalId: "d1", eventId: "l1", clickId: "k1", timestamp: ts("2026-02-01T00:00:00Z") });
    const withoutDeadline = mine(start);
    for (const cmd of withoutDeadline) {
      const max = cmd.command["maxTimeMS"] as number;
      expect(max, `${cmd.commandName} ${cmd.databaseName}`).toBeGreaterThan(0);
      expect(max, `${cmd.commandName} ${cmd.databaseName}`).toBeLessThanOrEqual(DEFAULT_TIMEOUT_MS);
    }
    // The customers service got no deadline: the cap. (Its registration follow-up calls
    // analytics with a 3 s timeout of its own, which analytics' commands then carry.)
    const ownCustomers = withoutDeadline.filter((cmd) => cmd.databaseName === `${prefix}_customers`);
    expect(ownCustomers.length).toBeGreaterThan(0);
    for (const cmd of ownCustomers) expect(cmd.command["maxTimeMS"], cmd.commandName).toBe(DEFAULT_TIMEOUT_MS);
    expect(withoutDeadline.some((cmd) => cmd.databaseName === `${prefix}_analytics` && (cmd.command["maxTimeMS"] as number) <= 3000)).toBe(true);

    // With one: what is left of it, on every command of every service the call reaches.
    const bounded = commands.length;
    const o = { timeoutMs: 8000 };
    await a.trackBatch(
      {
        workspaceId: ws,
        events: [
          { event: { case: "click", value: { workspaceId: ws, clickId: "k1", linkId: "lnk", campaignId: "spring", timestamp: ts("2026-01-30T00:00:00Z") } } },
          { event: { case: "sale", value: { workspaceId: ws, externalId: "d2", amount: 500n, currency: "USD", invoiceId: "i1", timestamp: ts("2026-02-02T00:00:00Z") } } },
        ] as never,
      },
      o,
    );
    await c.updateCustomer({ workspaceId: ws, id: cus.id, externalId: "d1-renamed", updateMask: { paths: ["externalId"] } }, o);
    await c.listCustomers({ workspaceId: ws, search: "d1" }, o);
    await c.countCustomers({ workspaceId: ws }, o);
    await c.stitchCustomers({ workspaceId: ws, items: [{ externalId: "d3" }, { externalId: "d4" }] }, o);
    await a.getCohorts({ workspaceId: ws, groupBy: "month" }, o);
    await a.getCohorts({ workspaceId: ws, start: "2026-01-30T12:00:00Z", end: "2026-02-03" }, o);
    await a.getLtvCohorts({ workspaceId: ws }, o);
    await a.getJourney({ workspaceId: ws, id: cus.id }, o);
    await a.getAttribution({ workspaceId: ws, id: cus.id }, o);
    await a.recalculateLtv({ workspaceId: ws, id: cus.id }, o);
    await a.rebuildWorkspace({ workspaceId: ws }, o);
    await a.scrubCustomer({ workspaceId: ws, customerId: cus.id }, o);
    await c.deleteCustomer({ workspaceId: ws, id: cus.id }, o);
    const withDeadline = mine(bounded);
    for (const cmd of withDeadline) {
      const max = cmd.command["maxTimeMS"];
      expect(typeof max, `${cmd.commandName} ${cmd.databaseName}`).toBe("number");
      expect(max).toBeGreaterThan(0);
      // Background work (a stats push, a sweeper) runs outside any call: the default cap. An
      // analytics write past its marker runs to its end under its own budget, at most that cap
      // (WriteOps.run: a caller giving up must not leave it half-applied).
      if (max === DEFAULT_TIMEOUT_MS) continue;
      if (cmd.databaseName === `${prefix}_analytics`) expect(max, `${cmd.commandName} ${cmd.databaseName}`).toBeLessThanOrEqual(DEFAULT_TIMEOUT_MS);
      else expect(max, `${cmd.commandName} ${cmd.databaseName}`).toBeLessThanOrEqual(8000);
    }
    // Every kind of command was seen (reads, writes, conditional writes, counts), and the bounded
    // calls really ran under their deadline.
    const kinds = new Set(mine(start).map((cmd) => cmd.commandName));
    for (const k of ["find", "aggregate", "insert", "update", "delete", "findAndModify"]) expect(kinds.has(k), k).toBe(true);
    expect(withDeadline.filter((cmd) => (cmd.command["maxTimeMS"] as number) <= 8000).length).toBeGreaterThan(20);
    // Indexes created at start carried it too.
    const indexCommands = commands.filter((cmd) => cmd.commandName === "createIndexes" && cmd.databaseName.startsWith(`${prefix}_`));
    expect(indexCommands.length).toBeGreaterThan(0);
    for (const cmd of indexCommands) expect(cmd.command["maxTimeMS"]).toBe(DEFAULT_TIMEOUT_MS);
  });

  it("answers DEADLINE_EXCEEDED when the database stops a query at its maxTimeMS", async () => {
    const db = mongo.db(`${prefix}_customers`);
    const repo = new MongoCustomersRepository(db);
    const ws = newId("ws");
    const now = Date.now();
    await db.collection("customers").insertMany(Array.from({ length: 8000 }, (_, i) => newCustomerDoc(newId("cus"), ws, `bulk-${i}`, { name: `Person ${i}` }, new Date(now + i))) as never[]);
    const search = { ...NO_FILTERS, search: "person 1" };
    const err = await runWithDeadline(5, () => repo.count(ws, search)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
    // The database itself stopped it (MaxTimeMSExpired), not a check before the call.
    expect((err as ConnectError).cause).toBeInstanceOf(MongoServerError);
    expect(((err as ConnectError).cause as MongoServerError).code).toBe(50);
    // With time enough, the same query answers.
    expect(await repo.count(ws, search)).toBe(1111);
  });
});
