/**
 * Fills a workspace with realistic synthetic traffic through AnalyticsService.TrackBatch:
 * anonymous and converting clicks over several links, campaigns and sources, leads stitched to
 * their clicks, repeat sales over the following months, custom events, a few late (backfilled)
 * events and replays of idempotency keys. Seeded: the same --seed gives the same traffic.
 *
 *   npm run generate:data -- --customers 1000 --seed 7 [--workspace ws_...] [--batch 1000]
 *
 * Talks to a running mesh (`npm start`): ANALYTICS_ADDR and WORKSPACES_ADDR default to
 * http://127.0.0.1:$GRPC_PORT (8090). Without --workspace it creates a "pro" workspace and prints its id.
 * Against a mesh that takes mutual TLS: an operator certificate in TLS_CERT, TLS_KEY, TLS_CA.
 * Progress goes to stderr; the summary (one JSON object) to stdout.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { AnalyticsService, TrackedEventSchema, WorkspacesService, type TrackedEvent } from "@linquid/contracts";
import { ConfigError, createToolTransport, seededRandom } from "@linquid/mesh";
import { pathToFileURL } from "node:url";

export interface GenerateOptions {
  customers: number;
  seed: number;
  batch: number;
  /** Events are dated in the `months` months before `now`. */
  months: number;
  now: number;
  /** Stop once this many events were sent (for benchmarks). */
  maxEvents?: number;
  /** Stop at this time (ms since epoch). */
  deadline?: number;
  /** Prefix of external ids, click ids and keys, so several runs can share a workspace. */
  prefix: string;
  /** The workspace's reporting currency. */
  currency: string;
  progress?: (sent: number, total: number) => void;
}

export interface GenerateResult {
  events: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  customers: number;
  ms: number;
}


const LINKS = Array.from({ length: 8 }, (_, i) => `lnk_${i}`);
const CAMPAIGNS = ["spring_sale", "summer_launch", "black_friday", "newsletter_q2", "brand", undefined];
const SOURCES = ["google", "facebook", "newsletter", "twitter", "partner", undefined];
const DAY = 86_400_000;

type Gen = { at: number; ev: TrackedEvent };

/** The events of one customer (plus some anonymous clicks), in no particular order. */
function customerEvents(i: number, o: GenerateOptions, rnd: () => number): Gen[] {
  const pick = <T>(list: readonly T[]) => list[Math.floor(rnd() * list.length)]!;
  const span = o.months * 30 * DAY;
  const start = o.now - span + rnd() * (span - 2 * DAY);
  const ext = `${o.prefix}u${i}`;
  const out: Gen[] = [];
  const ts = (at: number) => timestampFromDate(new Date(Math.min(at, o.now - 1000)));
  const click = (k: number, at: number) => {
    const clickId = `${o.prefix}c${i}_${k}`;
    const campaignId = pick(CAMPAIGNS);
    const source = pick(SOURCES);
    out.push({
      at,
      ev: create(TrackedEventSchema, {
        event: { case: "click", value: { workspaceId: "", clickId, linkId: pick(LINKS), ...(campaignId ? { campaignId } : {}), ...(source ? { source } : {}), country: pick(["US", "DE", "FR", "GB"]), device: pick(["mobile", "desktop"]), timestamp: ts(at) } },
      }),
    });
    return clickId;
  };
  // Anonymous clicks that never convert.
  const anon = Math.floor(rnd() * 3);
  for (let k = 0; k < anon; k++) click(100 + k, start + rnd() * span * 0.5);
  const clicks = 1 + Math.floor(rnd() * 3);
  let at = start;
  let lastClick = "";
  for (let k = 0; k < clicks; k++) {
    at += rnd() * 3 * DAY;
    lastClick = click(k, at);
  }
  at += rnd() * DAY;
  out.push({
    at,
    ev: create(TrackedEventSchema, {
      event: { case: "lead", value: { workspaceId: "", externalId: ext, email: `${ext}@example.com`, name: `Customer ${i}`, eventId: `${ext}_lead`, ...(rnd() < 0.8 ? { clickId: lastClick } : {}), timestamp: ts(at), metadata: { plan: pick(["free", "pro"]) } } },
    }),
  });
  if (rnd() < 0.5) {
    const sales = 1 + Math.floor(rnd() * 6);
    let t = at;
    for (let k = 0; k < sales; k++) {
      t += rnd() * 45 * DAY;
      if (t > o.now) break;
      out.push({
        at: t,
        ev: create(TrackedEventSchema, {
          event: { case: "sale", value: { workspaceId: "", externalId: ext, amount: BigInt(500 + Math.floor(rnd() * 20_000)), currency: o.currency, invoiceId: `${ext}_inv${k}`, timestamp: ts(t) } },
        }),
      });
    }
  }
  if (rnd() < 0.5) {
    const t = at + rnd() * 10 * DAY;
    out.push({ at: t, ev: create(TrackedEventSchema, { event: { case: "custom", value: { workspaceId: "", externalId: ext, eventName: "onboarding_done", eventId: `${ext}_onb`, timestamp: ts(t) } } }) });
  }
  return out;
}

/** Sends the traffic; events go out roughly in time order per group of customers, with late ones and replays. */
export async function generate(analytics: Client<typeof AnalyticsService>, workspaceId: string, o: GenerateOptions): Promise<GenerateResult> {
  const rnd = seededRandom(o.seed);
  const started = Date.now();
  const result: GenerateResult = { events: 0, accepted: 0, duplicates: 0, rejected: 0, customers: 0, ms: 0 };
  let late: TrackedEvent[] = [];
  const send = async (events: TrackedEvent[]) => {
    for (let i = 0; i < events.length; i += o.batch) {
      const part = events.slice(i, i + o.batch);
      const res = await analytics.trackBatch({ workspaceId, events: part });
      for (const r of res.results) {
        if (r.error !== undefined) result.rejected++;
        else if (r.duplicate) result.duplicates++;
        else result.accepted++;
      }
      result.events += part.length;
      o.progress?.(result.events, result.customers);
    }
  };
  const GROUP = Math.max(1, Math.floor(o.batch / 6));
  for (let c = 0; c < o.customers; c += GROUP) {
    if ((o.maxEvents !== undefined && result.events >= o.maxEvents) || (o.deadline !== undefined && Date.now() > o.deadline)) break;
    const group: Gen[] = [];
    for (let i = c; i < Math.min(o.customers, c + GROUP); i++) {
      group.push(...customerEvents(i, o, rnd));
      result.customers++;
    }
    group.sort((a, b) => a.at - b.at);
    const now: TrackedEvent[] = [];
    const later: TrackedEvent[] = [];
    for (const g of group) {
      const r = rnd();
      if (r < 0.03) later.push(g.ev); // arrives with the next group: late and out of order
      else now.push(g.ev);
      if (r > 0.995) now.push(g.ev); // a replay of the same idempotency key
    }
    await send([...late, ...now]);
    late = later;
  }
  await send(late);
  result.ms = Date.now() - started;
  return result;
}

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? undefined : args[i + 1];
}

function intArg(args: string[], name: string, fallback: number | undefined): number {
  const raw = arg(args, name);
  if (raw === undefined) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  if (!/^-?\d+$/.test(raw)) throw new Error(`--${name}: expected an integer, got "${raw}"`);
  return Number(raw);
}

/** A progress bar on stderr. */
export function progressBar(label: string, total: number): (done: number) => void {
  let last = 0;
  return (done: number) => {
    const now = Date.now();
    if (now - last < 200 && done < total) return;
    last = now;
    const share = Math.min(1, done / total);
    const width = 30;
    process.stderr.write(`\r${label} [${"#".repeat(Math.round(share * width)).padEnd(width, ".")}] ${done}/${total}`);
    if (done >= total) process.stderr.write("\n");
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let customers: number;
  let seed: number;
  let batch: number;
  try {
    customers = intArg(args, "customers", undefined);
    seed = intArg(args, "seed", 1);
    batch = intArg(args, "batch", 1000);
    if (customers < 1) throw new Error("--customers: must be >= 1");
    if (batch < 1 || batch > 10_000) throw new Error("--batch: must be 1..10000");
  } catch (err) {
    process.stderr.write(`generate-data: ${(err as Error).message}\n`);
    process.exit(2);
  }
  let transports: Record<"ANALYTICS" | "WORKSPACES", ReturnType<typeof createToolTransport>>;
  try {
    transports = { ANALYTICS: createToolTransport("ANALYTICS"), WORKSPACES: createToolTransport("WORKSPACES") };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`generate-data: ${err.message}\n`);
    process.exit(2);
  }
  const analytics = createClient(AnalyticsService, transports.ANALYTICS.transport);
  let workspaceId = arg(args, "workspace");
  const ws: Client<typeof WorkspacesService> = createClient(WorkspacesService, transports.WORKSPACES.transport);
  if (workspaceId === undefined) {
    workspaceId = (await ws.createWorkspace({ name: `synthetic ${seed}`, plan: "pro", unlimited: true })).workspace!.id;
    process.stderr.write(`generate-data: created workspace ${workspaceId}\n`);
  }
  const currency = (await ws.getWorkspace({ id: workspaceId })).workspace!.currency;
  const bar = progressBar("customers", customers);
  const res = await generate(analytics, workspaceId, { customers, seed, batch, months: 12, now: Date.now(), prefix: `s${seed}_`, currency, progress: (_sent, done) => bar(done) });
  bar(customers);
  process.stdout.write(JSON.stringify({ workspaceId, ...res, eventsPerSecond: Math.round((res.events / res.ms) * 1000) }) + "\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: unknown) => {
    process.stderr.write(`generate-data: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
