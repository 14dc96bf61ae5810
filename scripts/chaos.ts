/**
 * `npm run chaos`: the fault-injection suite's faults, longer and repeated, with the figures
 * printed as a Markdown table (docs/failure-modes.md has a run's).
 *
 * Split mode with real processes (services/mesh/src/testing/chaos.ts): a FerretDB and a
 * redis-server of its own, mesh processes for workspaces + gateway, customers and analytics.
 * Concurrent REST clients track sales, create customers and read while, round after round, the
 * database, a peer service and Redis are stopped (SIGSTOP) or killed (SIGKILL) and brought back.
 * Then every write the API acknowledged is looked up in the database, and the rollups compared
 * with a recomputation from the stored events.
 *
 * Environment: CHAOS_ROUNDS (default 2), CHAOS_CLIENTS (16), CHAOS_HOLD_MS (how long each
 * fault lasts, 5000), FERRETDB_BIN, REDIS_SERVER_BIN. Exit 1 when an answer was dishonest (a
 * 500, or no answer), an acknowledged write is missing, or the rollups do not add up.
 */
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { byStatus, checkConsistency, figuresOf, NEEDS, startChaosCluster, startLoad, type FaultFigures, type Op, type TargetName } from "@linquid/mesh/testing/chaos";
import { intEnv } from "./bench-support.js";

const say = (msg: string): void => void process.stderr.write(`chaos: ${msg}\n`);

const rounds = intEnv("CHAOS_ROUNDS", 2);
const clients = intEnv("CHAOS_CLIENTS", 16);
const holdMs = intEnv("CHAOS_HOLD_MS", 5000);

interface Fault {
  readonly label: string;
  readonly target: TargetName;
  readonly how: "stop" | "kill";
  /** The operations that need the target. */
  readonly affected: (op: Op) => boolean;
}
const all = () => true;
const FAULTS: readonly Fault[] = [
  { label: "database stopped (SIGSTOP)", target: "database", how: "stop", affected: all },
  { label: "database killed, restarted", target: "database", how: "kill", affected: all },
  { label: "analytics stopped (SIGSTOP)", target: "analytics", how: "stop", affected: (op) => NEEDS[op].includes("analytics") },
  { label: "analytics killed, restarted", target: "analytics", how: "kill", affected: (op) => NEEDS[op].includes("analytics") },
  { label: "customers stopped (SIGSTOP)", target: "customers", how: "stop", affected: (op) => NEEDS[op].includes("customers") },
  { label: "customers killed, restarted", target: "customers", how: "kill", affected: (op) => NEEDS[op].includes("customers") },
  { label: "Redis killed, restarted empty", target: "redis", how: "kill", affected: () => false },
];

const started = Date.now();
say(`starting: FerretDB, redis-server, 3 mesh processes; ${clients} clients, ${rounds} round(s) of ${FAULTS.length} faults of ${holdMs} ms`);
const cluster = await startChaosCluster({
  ferretdbBin: resolve(process.env["FERRETDB_BIN"] ?? ".bin/ferretdb"),
  redisServerBin: process.env["REDIS_SERVER_BIN"] ?? "redis-server",
});
let failed = false;
try {
  const ws = await cluster.workspace();
  const load = startLoad(cluster.api, ws.key, clients);
  await sleep(3000);

  /** Waits until the load has seen no failure for a second (the previous fault is over). */
  const steady = async () => {
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(100)) {
      const recent = load.samples.filter((s) => s.end >= Date.now() - 1000);
      if (recent.length > 0 && recent.every((s) => s.status > 0 && s.status < 500)) return;
    }
    say("the API did not settle within 60 s; going on");
  };

  const results: Array<{ fault: Fault; figures: FaultFigures; downMs: number }> = [];
  for (let round = 1; round <= rounds; round++) {
    for (const fault of FAULTS) {
      await steady();
      const t = cluster.targets[fault.target];
      const at = Date.now();
      if (fault.how === "stop") t.pause();
      else await t.kill();
      await sleep(holdMs);
      if (fault.how === "stop") t.resume();
      else await t.restart();
      const back = Date.now();
      await sleep(4000);
      const figures = figuresOf(load.samples, at, back, fault.affected, 4000);
      results.push({ fault, figures, downMs: back - at });
      say(`round ${round}: ${fault.label}: ${JSON.stringify(figures)}`);
    }
  }
  await load.stop();
  say("load stopped; checking acknowledged writes and rollups (recovery may need a few seconds)");
  const consistency = await checkConsistency(cluster, ws.id, load, 60_000);

  const ms = (v: number | null) => (v === null ? "–" : `${v.toLocaleString("en-US")} ms`);
  const answers = (b: Record<string, number>) =>
    Object.entries(b)
      .sort(([a], [c]) => (a < c ? -1 : 1))
      .map(([k, v]) => `${k}: ${v.toLocaleString("en-US")}`)
      .join(", ");
  const out: string[] = [];
  out.push(`Split mode, ${clients} concurrent clients, ${rounds} round(s), each fault held ${holdMs / 1000} s; ${((Date.now() - started) / 1000).toFixed(0)} s in all.`);
  out.push("");
  out.push("| fault | down for | requests | answers by status and code | time to first 503 | failed requests waited (p50 / p99 / max) | time to recovery | 500s or no answer |");
  out.push("|---|---:|---:|---|---:|---|---:|---:|");
  for (const { fault, figures: f, downMs } of results) {
    out.push(
      `| ${fault.label} | ${ms(downMs)} | ${f.requests.toLocaleString("en-US")} | ${answers(f.byStatus)} | ${ms(f.firstUnavailableMs)} | ${f.failedLatency.p50} / ${f.failedLatency.p99} / ${f.failedLatency.max} ms | ${ms(f.recoveryMs)} | ${f.dishonest} |`,
    );
  }
  out.push("");
  out.push("| whole run | |");
  out.push("|---|---|");
  out.push(`| requests | ${load.samples.length.toLocaleString("en-US")} |`);
  out.push(`| answers by status and code | ${answers(byStatus(load.samples))} |`);
  out.push(`| writes acknowledged | ${load.sales.size.toLocaleString("en-US")} sales, ${load.customers.size.toLocaleString("en-US")} customers |`);
  out.push(`| acknowledged writes lost | ${consistency.salesLost + consistency.customersLost} |`);
  out.push(`| revenue: stored sales / cohorts / LTV cohorts | ${consistency.storedRevenue} / ${consistency.cohortRevenue} / ${consistency.ltvRevenue} |`);
  out.push(`| interrupted writes left unrecovered | ${consistency.pendingWrites} |`);
  process.stdout.write(out.join("\n") + "\n");

  const dishonest = results.reduce((a, r) => a + r.figures.dishonest, 0);
  const lost = consistency.salesLost + consistency.customersLost;
  const uneven = consistency.cohortRevenue !== consistency.storedRevenue || consistency.ltvRevenue !== consistency.storedRevenue || consistency.pendingWrites > 0;
  if (dishonest > 0 || lost > 0 || uneven) {
    failed = true;
    say(`FAILED: ${dishonest} dishonest answers, ${lost} acknowledged writes lost, rollups ${uneven ? "uneven" : "even"}`);
  }
} finally {
  await cluster.stop();
}
process.exit(failed ? 1 : 0);
