/**
 * The bare limits `npm run bench:gateway` holds the gateway against: plain node:http servers
 * doing only the backend call the gateway's route does, with the same clients (ioredis, the
 * MongoDB driver) on the same Redis and database. Started by scripts/bench-gateway.ts in a
 * process of its own, pinned to the core the mesh runs on.
 *
 * - `/redis`:  one Redis GET of BENCH_REDIS_KEY, answered as it is (what a cached read needs),
 *              with ioredis auto-pipelining as the mesh uses it (BENCH_BARE_AUTOPIPELINING=0: without);
 * - `/find`:   the findOne the customers service makes for `GET /customers/:id`, answered as JSON;
 * - `/health`: about 200 bytes of JSON, nothing else.
 *
 * Prints one JSON line with the base URL of each on stdout once all three listen.
 */
import { createServer, type RequestListener } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { MongoClient, type Document } from "mongodb";

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name}: required`);
  return v;
};

// The gateway's client settings that matter for speed (auto-pipelining: one write per turn of the event loop).
const redis = new Redis(env("REDIS_URL"), { enableOfflineQueue: true, maxRetriesPerRequest: 0, enableAutoPipelining: process.env["BENCH_BARE_AUTOPIPELINING"] !== "0" });
const mongo = new MongoClient(env("MONGODB_URI"), { maxPoolSize: 50 });
await mongo.connect();
const customers = mongo.db(env("BENCH_CUSTOMERS_DB")).collection<Document & { _id: string }>("customers");
const redisKey = env("BENCH_REDIS_KEY");
const customerId = env("BENCH_CUSTOMER_ID");

const HEADERS = { "content-type": "application/json; charset=utf-8" } as const;
const HEALTH = JSON.stringify({ status: "ok", padding: "x".repeat(170) });

const answer = (res: Parameters<RequestListener>[1], status: number, body: string) => {
  res.writeHead(status, { ...HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
};
const failed = (res: Parameters<RequestListener>[1]) => (err: unknown) => answer(res, 500, JSON.stringify({ error: String(err) }));

const handlers: Record<string, RequestListener> = {
  redis: (_req, res) => {
    redis.get(redisKey).then((v) => answer(res, v === null ? 404 : 200, v ?? "{}"), failed(res));
  },
  find: (_req, res) => {
    customers.findOne({ _id: customerId }, { maxTimeMS: 15_000 }).then((doc) => answer(res, doc === null ? 404 : 200, JSON.stringify({ success: true, data: doc })), failed(res));
  },
  health: (_req, res) => answer(res, 200, HEALTH),
};

const urls: Record<string, string> = {};
for (const [name, handler] of Object.entries(handlers)) {
  const server = createServer({ keepAliveTimeout: 5_000 }, handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  urls[name] = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${name}`;
}
process.stdout.write(`${JSON.stringify(urls)}\n`);
process.on("SIGTERM", () => {
  redis.disconnect();
  void mongo.close().finally(() => process.exit(0));
});
