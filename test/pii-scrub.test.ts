/**
 * Deleting a customer scrubs its PII from every store the product writes: every collection of
 * every service's database and everything in Redis.
 */
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

async function allDocuments(mongo: MongoClient, prefix: string): Promise<string> {
  const dbs = await mongo.db("admin").admin().listDatabases({ nameOnly: true });
  let dump = "";
  for (const { name } of dbs.databases.filter((d) => d.name.startsWith(`${prefix}_`))) {
    for (const c of await mongo.db(name).listCollections({}, { nameOnly: true }).toArray()) {
      dump += JSON.stringify(await mongo.db(name).collection(c.name).find({}).toArray());
    }
  }
  return dump;
}

async function allRedis(redis: Redis): Promise<string> {
  let dump = "";
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", "1000");
    cursor = next;
    for (const key of keys) {
      dump += key;
      const type = await redis.type(key);
      if (type === "string") dump += (await redis.get(key)) ?? "";
      else if (type === "hash") dump += JSON.stringify(await redis.hgetall(key));
      else if (type === "list") dump += JSON.stringify(await redis.lrange(key, 0, -1));
      else if (type === "set") dump += JSON.stringify(await redis.smembers(key));
      else if (type === "zset") dump += JSON.stringify(await redis.zrange(key, "0", "-1"));
    }
  } while (cursor !== "0");
  return dump;
}

describe("PII scrub on delete", () => {
  let mesh: TestMesh;
  let mongo: MongoClient;
  let redis: Redis;
  beforeAll(async () => {
    mesh = await startTestMesh();
    mongo = await new MongoClient(inject("mongodbUri")).connect();
    redis = new Redis(inject("redisUrl"));
  });
  afterAll(async () => {
    await mesh?.stop();
    await mongo?.close();
    redis?.disconnect();
  });

  it("leaves none of the customer's PII in any collection or in Redis", async () => {
    const { key } = await mesh.workspace();
    const tag = Math.random().toString(36).slice(2, 10);
    const pii = {
      externalId: `ext-${tag}-person`,
      email: `grace.${tag}@example.com`,
      name: `Grace ${tag} Hopper`,
      avatar: `https://img.example.com/${tag}.png`,
      metaValue: `secret-${tag}-value`,
    };
    const ok = (r: { status: number; text: string }) => expect(r.status, r.text).toBeLessThan(300);
    ok(await mesh.request("POST", "/track/click", { key, body: { clickId: `clk-${tag}`, linkId: "lnk_1", campaignId: "spring", source: "mail" } }));
    ok(await mesh.request("POST", "/track/lead", { key, body: { externalId: pii.externalId, email: pii.email, name: pii.name, clickId: `clk-${tag}`, metadata: { note: pii.metaValue } } }));
    ok(await mesh.request("POST", "/track/sale", { key, body: { externalId: pii.externalId, amount: 1200, currency: "USD", invoiceId: `inv-${tag}` } }));
    ok(await mesh.request("POST", "/track/event", { key, body: { externalId: pii.externalId, eventName: "upgraded", metadata: { who: pii.metaValue } } }));
    ok(await mesh.request("PATCH", `/customers/ext_${pii.externalId}`, { key, body: { avatar: pii.avatar, metadata: { note: pii.metaValue } } }));
    // Fill the snapshot cache, including routes addressed by external id.
    for (const path of ["/customers/cohorts", "/customers/ltv-cohorts", `/customers/ext_${pii.externalId}/journey`, `/customers/ext_${pii.externalId}/attribution`]) {
      ok(await mesh.request("GET", path, { key }));
      ok(await mesh.request("GET", path, { key }));
    }
    const prefix = mesh.config.mongodbDbPrefix;
    const before = await allDocuments(mongo, prefix);
    expect(before).toContain(pii.email); // the scan sees what it looks for

    const del = await mesh.request("DELETE", `/customers/ext_${pii.externalId}`, { key });
    expect(del.status).toBe(200);
    expect((await mesh.request("GET", `/customers/ext_${pii.externalId}`, { key })).status).toBe(404);
    expect((await mesh.request("GET", `/customers/${del.body.data.id}/journey`, { key })).status).toBe(404);

    const after = await allDocuments(mongo, prefix);
    const cache = await allRedis(redis);
    for (const value of Object.values(pii)) {
      expect(after, `database still holds ${value}`).not.toContain(value);
      expect(cache, `Redis still holds ${value}`).not.toContain(value);
    }
    // Analytics totals stay: the deleted customer still counts in cohorts.
    const cohorts = await mesh.request("GET", "/customers/cohorts?group_by=campaign", { key });
    expect(cohorts.body.data).toEqual(expect.arrayContaining([expect.objectContaining({ cohort: "spring", customers: 1, sales: 1, revenue: 1200 })]));
    // The external id is free again.
    expect((await mesh.request("POST", "/customers", { key, body: { externalId: pii.externalId } })).status).toBe(201);
  });
});
