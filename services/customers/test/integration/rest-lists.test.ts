/**
 * Lists at scale through the REST gateway (rest-api.md, "Developer platform"): cursors, the
 * filters on list, count and export, and the export itself, with their bad values.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { newId } from "@linquid/mesh";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";
import type { Db } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newCustomerDoc, type CustomerDoc } from "../../src/customer-doc.js";
import { CustomerReads } from "../../src/customer-reads.js";
import { customersDb } from "./helpers.js";

type Rec = { id: string; externalId: string; createdAt: string; country: string | null; metadata: Record<string, unknown> | null };

describe("customer lists: cursors, filters, export", () => {
  let mesh: TestMesh;
  let db: Db;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces,customers,gateway", ANALYTICS_ADDR: "http://127.0.0.1:1" });
    ({ db, close: closeDb } = await customersDb(mesh));
  });
  afterAll(async () => {
    await closeDb?.();
    await mesh?.stop();
  });

  const get = (key: string, path: string) => mesh.request("GET", path, { key });
  const post = (key: string, body: unknown) => mesh.request("POST", "/customers", { key, body });
  const ids = (r: { body: { data: Rec[] } }) => r.body.data.map((c) => c.id);
  const q = (params: Record<string, string>) => new URLSearchParams(params).toString();

  /** Creates `n` customers through the API, in order; returns their records. */
  async function seed(key: string, n: number, make: (i: number) => Record<string, unknown> = () => ({})): Promise<Rec[]> {
    const out: Rec[] = [];
    for (let i = 0; i < n; i++) out.push((await post(key, { externalId: `c-${String(i).padStart(3, "0")}`, ...make(i) })).body.data);
    return out;
  }

  /** Follows nextCursor from `first` to the end; returns every id seen, in order. */
  async function walk(key: string, first: string, cursorParams: Record<string, string>): Promise<string[]> {
    const seen: string[] = [];
    let r = await get(key, first);
    expect(r.status).toBe(200);
    seen.push(...ids(r));
    while (r.body.pagination.nextCursor !== null) {
      r = await get(key, `/customers?${q({ ...cursorParams, cursor: r.body.pagination.nextCursor })}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(Object.keys(r.body.pagination).sort()).toEqual(["hasMore", "limit", "nextCursor"]);
      expect(r.body.pagination.hasMore).toBe(r.body.pagination.nextCursor !== null);
      seen.push(...ids(r));
    }
    return seen;
  }

  describe("cursors", () => {
    let key: string;
    let all: Rec[];
    beforeAll(async () => {
      key = (await mesh.workspace()).key;
      all = await seed(key, 11, (i) => ({ country: i % 2 ? "DE" : "FR" }));
    });

    it("walk every customer once in either order, starting from a page or a cursor page", async () => {
      const desc = await walk(key, "/customers?limit=3", { limit: "3" });
      expect(desc).toEqual(all.map((c) => c.id).reverse());
      const asc = await walk(key, "/customers?limit=4&sortOrder=asc", { limit: "4", sortOrder: "asc" });
      expect(asc).toEqual(all.map((c) => c.id));
      // A page answers a nextCursor too, and the cursor page after it goes on where it stopped.
      const p1 = await get(key, "/customers?limit=5");
      expect(p1.body.pagination).toEqual({ page: 1, limit: 5, total: 11, totalPages: 3, hasMore: true, nextCursor: expect.any(String) });
      const next = await get(key, `/customers?${q({ limit: "5", cursor: p1.body.pagination.nextCursor })}`);
      expect(ids(next)).toEqual(all.map((c) => c.id).reverse().slice(5, 10));
      expect(next.body.pagination).toEqual({ limit: 5, hasMore: true, nextCursor: expect.any(String) });
      // The page size may change between pages.
      const rest = await get(key, `/customers?${q({ limit: "100", cursor: next.body.pagination.nextCursor })}`);
      expect(ids(rest)).toEqual([all[0]!.id]);
      expect(rest.body.pagination).toEqual({ limit: 100, hasMore: false, nextCursor: null });
    });

    it("walk a filtered list, and the last page of a list answers nextCursor null", async () => {
      const de = all.filter((c) => c.country === "DE").map((c) => c.id);
      expect(await walk(key, "/customers?limit=2&country=de&sortOrder=asc", { limit: "2", country: "de", sortOrder: "asc" })).toEqual(de);
      const last = await get(key, "/customers?limit=20");
      expect(last.body.pagination).toMatchObject({ hasMore: false, nextCursor: null });
    });

    it("refuse page with cursor, and malformed, altered, foreign or mismatched cursors (400, never data)", async () => {
      const cursor = (await get(key, "/customers?limit=2")).body.pagination.nextCursor as string;
      const [payload, mac] = cursor.split(".") as [string, string];
      const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
      const forged = Buffer.from(JSON.stringify([Date.now(), all[3]!.id, 0])).toString("base64url");
      const other = await mesh.workspace();
      await seed(other.key, 3);
      const foreign = (await get(other.key, "/customers?limit=1")).body.pagination.nextCursor as string;
      const cases: Array<[string, string, string]> = [
        ["page with cursor", key, `/customers?${q({ page: "1", cursor })}`],
        ["empty", key, "/customers?cursor="],
        ["garbage", key, "/customers?cursor=not-a-cursor"],
        ["altered payload", key, `/customers?${q({ cursor: `${flip(payload, 5)}.${mac}` })}`],
        ["altered mac", key, `/customers?${q({ cursor: `${payload}.${flip(mac, 3)}` })}`],
        ["forged payload", key, `/customers?${q({ cursor: `${forged}.${mac}` })}`],
        ["other sort order", key, `/customers?${q({ cursor, sortOrder: "asc" })}`],
        ["other filters", key, `/customers?${q({ cursor, country: "DE" })}`],
        ["another workspace's", key, `/customers?${q({ cursor: foreign })}`],
        ["mine in another workspace", other.key, `/customers?${q({ cursor })}`],
        ["huge", key, `/customers?${q({ cursor: "A".repeat(5000) })}`],
      ];
      for (const [what, k, path] of cases) {
        const r = await get(k, path);
        expect(r.status, what).toBe(400);
        expect(r.body.error.code, what).toBe("VALIDATION_ERROR");
        expect(r.body.error.details.map((d: { field: string }) => d.field), what).toContain(what === "page with cursor" ? "page" : "cursor");
        expect(r.body.data, what).toBeUndefined();
      }
    });
  });

  describe("filters", () => {
    let key: string;
    let all: Rec[];
    beforeAll(async () => {
      key = (await mesh.workspace()).key;
      const metas: Array<Record<string, unknown> | undefined> = [
        { plan: "pro", age: 30, vip: true, note: null },
        { plan: "free", age: "30", $where: "1", "a.b": "dotted" },
        JSON.parse('{"plan": "pro", "__proto__": "proto", "constructor": "ctor"}') as Record<string, unknown>,
        undefined,
        { plan: "pro", vip: false },
      ];
      all = await seed(key, 5, (i) => ({ country: ["US", "GB", "US", "GB", "US"][i], name: i === 2 ? "Ada Lovelace" : `Person ${i}`, ...(metas[i] ? { metadata: metas[i] } : {}) }));
    });
    const pick = (...i: number[]) => i.map((n) => all[n]!.id);

    it("createdAfter and createdBefore are exclusive bounds, on list, count and export", async () => {
      const t1 = all[1]!.createdAt;
      const t3 = all[3]!.createdAt;
      const list = await get(key, `/customers?${q({ createdAfter: t1, createdBefore: t3, sortOrder: "asc" })}`);
      expect(ids(list)).toEqual(pick(2));
      expect(list.body.pagination.total).toBe(1);
      expect((await get(key, `/customers/count?${q({ createdAfter: t1 })}`)).body.data.count).toBe(3);
      expect(ids(await get(key, `/customers?${q({ createdBefore: t1 })}`))).toEqual(pick(0));
      // Other offsets name the same instant.
      const shifted = new Date(new Date(t1).getTime()).toISOString().replace("Z", "+00:00");
      expect((await get(key, `/customers/count?${q({ createdAfter: shifted })}`)).body.data.count).toBe(3);
      const exported = await get(key, `/customers/export?${q({ createdAfter: t1, createdBefore: t3 })}`);
      expect(exported.text.trim().split("\n").map((l) => JSON.parse(l).id)).toEqual(pick(2));
    });

    it("country, metadata values of every type, and keys that look like operators, paths or prototype keys", async () => {
      const count = async (params: Record<string, string>) => (await get(key, `/customers/count?${q(params)}`)).body.data.count;
      const list = async (params: Record<string, string>) => ids(await get(key, `/customers?${q({ sortOrder: "asc", ...params })}`));
      expect(await list({ country: "us" })).toEqual(pick(0, 2, 4));
      expect(await list({ "metadata[plan]": "pro" })).toEqual(pick(0, 2, 4));
      expect(await count({ "metadata[plan]": "pro" })).toBe(3);
      expect(await list({ "metadata[age]": "30" })).toEqual(pick(0, 1));
      expect(await list({ "metadata[vip]": "true" })).toEqual(pick(0));
      expect(await list({ "metadata[vip]": "false" })).toEqual(pick(4));
      expect(await list({ "metadata[note]": "null" })).toEqual(pick(0));
      expect(await list({ "metadata[$where]": "1" })).toEqual(pick(1));
      expect(await list({ "metadata[a.b]": "dotted" })).toEqual(pick(1));
      expect(await list({ "metadata[a]": "dotted" })).toEqual([]);
      expect(await list({ "metadata[__proto__]": "proto" })).toEqual(pick(2));
      expect(await list({ "metadata[constructor]": "ctor" })).toEqual(pick(2));
      expect(await count({ "metadata[constructor]": "ctor" })).toBe(1);
      expect(await list({ "metadata[constructor]": "function Object() { [native code] }" })).toEqual([]);
      expect(await list({ "metadata[toString]": "x" })).toEqual([]);
      expect(await list({ "metadata[plan]": "Pro" })).toEqual([]);
      // Combined with each other and with search.
      expect(await list({ "metadata[plan]": "pro", country: "US", "metadata[vip]": "true" })).toEqual(pick(0));
      expect(await count({ "metadata[plan]": "pro", country: "US" })).toBe(3);
      expect(await list({ "metadata[plan]": "pro", search: "lovelace" })).toEqual(pick(2));
      expect(await count({ "metadata[plan]": "pro", search: "LOVELACE", createdAfter: all[0]!.createdAt })).toBe(1);
      expect(await list({ country: "GB", search: "person" })).toEqual(pick(1, 3));
    });

    it("follow updates and deletes: a changed value stops matching, a deleted customer is gone", async () => {
      const k = (await mesh.workspace()).key;
      const [a, b] = await seed(k, 2, () => ({ metadata: { tier: "gold" } }));
      expect((await get(k, "/customers/count?metadata[tier]=gold")).body.data.count).toBe(2);
      await mesh.request("PATCH", `/customers/${a!.id}`, { key: k, body: { metadata: { tier: "silver" } } });
      expect(ids(await get(k, "/customers?metadata[tier]=gold"))).toEqual([b!.id]);
      expect(ids(await get(k, "/customers?metadata[tier]=silver"))).toEqual([a!.id]);
      expect((await get(k, "/customers/count?metadata[tier]=gold")).body.data.count).toBe(1);
      await mesh.request("DELETE", `/customers/${b!.id}`, { key: k });
      expect((await get(k, "/customers?metadata[tier]=gold")).body.data).toEqual([]);
      expect((await get(k, "/customers/count?metadata[tier]=gold")).body.data.count).toBe(0);
      // POST of an existing externalId replaces metadata too.
      await post(k, { externalId: "c-000", metadata: { tier: "bronze" } });
      expect(ids(await get(k, "/customers?metadata[tier]=bronze"))).toEqual([a!.id]);
      expect((await get(k, "/customers/count?metadata[tier]=silver")).body.data.count).toBe(0);
    });

    it("refuse bad values on list, count and export alike", async () => {
      const bad: Array<[Record<string, string>, string]> = [
        [{ createdAfter: "2026-04-01" }, "createdAfter"],
        [{ createdAfter: "yesterday" }, "createdAfter"],
        [{ createdBefore: "2026-02-30T00:00:00Z" }, "createdBefore"],
        [{ createdBefore: "2026-04-01T25:00:00Z" }, "createdBefore"],
        [{ createdAfter: "2026-04-02T00:00:00Z", createdBefore: "2026-04-01T00:00:00Z" }, "createdAfter"],
        [{ createdAfter: "2026-04-01T00:00:00Z", createdBefore: "2026-04-01T00:00:00Z" }, "createdAfter"],
        [{ country: "XX" }, "country"],
        [{ country: "USA" }, "country"],
        [{ metadata: "plan" }, "metadata"],
        [{ "metadata[]": "x" }, "metadata[]"],
        [Object.fromEntries(["a", "b", "c", "d", "e", "f"].map((k) => [`metadata[${k}]`, "1"])), "metadata"],
        [{ search: "a\u0001b" }, "search"],
      ];
      for (const path of ["/customers", "/customers/count", "/customers/export"]) {
        for (const [params, field] of bad) {
          const r = await get(key, `${path}?${q(params)}`);
          expect(r.status, `${path} ${JSON.stringify(params)}`).toBe(400);
          expect(r.body.error.code).toBe("VALIDATION_ERROR");
          expect(r.body.error.details.map((d: { field: string }) => d.field), `${path} ${JSON.stringify(params)}`).toContain(field);
        }
      }
      const twice = await get(key, "/customers?metadata[plan]=a&metadata[plan]=b");
      expect(twice.status).toBe(400);
      expect(twice.body.error.details).toContainEqual({ field: "metadata[plan]", issue: "must be given once" });
    });
  });

  describe("export", () => {
    it("streams NDJSON by default: every live customer, oldest first, as the list shows it", async () => {
      const { key } = await mesh.workspace();
      const made = await seed(key, 4, (i) => ({ email: `p${i}@x.io`, metadata: { i } }));
      await mesh.request("DELETE", `/customers/${made[1]!.id}`, { key });
      const r = await get(key, "/customers/export");
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/x-ndjson");
      expect(r.headers.get("x-request-id")).toBeTruthy();
      expect(r.headers.get("x-ratelimit-limit")).toBe("unlimited");
      expect(r.text.endsWith("\n")).toBe(true);
      const lines = r.text.trimEnd().split("\n").map((l) => JSON.parse(l));
      const listed = (await get(key, "/customers?sortOrder=asc")).body.data;
      expect(lines).toEqual(listed);
      expect(lines.map((c: Rec) => c.id)).toEqual([made[0]!.id, made[2]!.id, made[3]!.id]);
      expect(Object.keys(lines[0]).sort()).toEqual(["avatar", "clickId", "country", "createdAt", "email", "externalId", "id", "metadata", "name", "stats", "updatedAt"]);
    });

    it("streams CSV: header row, RFC 4180 quoting, metadata as JSON, formula cells neutralised", async () => {
      const { key } = await mesh.workspace();
      // Names cannot hold control characters; metadata can (its cell is JSON, where they are escaped).
      const nasty = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", 'say "hi", bye', "a,b", "plain"];
      const made: Rec[] = [];
      for (const [i, name] of nasty.entries()) made.push((await post(key, { externalId: `n${i}`, name, metadata: { note: `${name}\n\t\r` } })).body.data);
      const r = await get(key, "/customers/export?format=csv");
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("text/csv; charset=utf-8");
      const rows = parseCsv(r.text);
      expect(rows[0]).toEqual([
        "id", "externalId", "email", "name", "avatar", "country", "clickId", "metadata", "createdAt", "updatedAt",
        "stats.leads", "stats.sales", "stats.revenue", "stats.currency", "stats.firstSeenAt", "stats.lastSeenAt",
      ]);
      expect(rows).toHaveLength(nasty.length + 1);
      const expected = (s: string) => (/^[=+\-@\t\r]/.test(s) ? `'${s}` : s);
      nasty.forEach((name, i) => {
        const row = rows[i + 1]!;
        expect(row[0]).toBe(made[i].id);
        expect(row[3]).toBe(expected(name));
        expect(JSON.parse(row[7]!)).toEqual({ note: `${name}\n\t\r` });
        expect(row[8]).toBe(made[i].createdAt);
        expect(row[10]).toBe("0");
        expect(row[13]).toBe("");
      });
      expect(r.text.split("\r\n")[0]).toBe(rows[0]!.join(","));
      // An empty export is the header alone.
      const none = await get(key, "/customers/export?format=csv&country=JP");
      expect(none.text).toBe(`${rows[0]!.join(",")}\r\n`);
      expect((await get(key, "/customers/export?country=JP")).text).toBe("");
    });

    it("is one request against the rate budget, needs links:read and the plan, refuses unknown formats", async () => {
      const limited = await mesh.workspace({ rateLimit: 10 });
      await seed(limited.key, 3);
      const before = Number((await get(limited.key, "/customers/count")).headers.get("x-ratelimit-remaining"));
      const r = await get(limited.key, "/customers/export");
      expect(r.text.trim().split("\n")).toHaveLength(3);
      expect(Number(r.headers.get("x-ratelimit-remaining"))).toBe(before - 1);
      expect((await get(limited.key, "/customers/export?format=xml")).body.error).toMatchObject({ code: "VALIDATION_ERROR", details: [{ field: "format", issue: "must be ndjson or csv" }] });
      expect((await mesh.request("GET", "/customers/export")).status).toBe(401);
      expect((await get((await mesh.workspace({ scopes: ["links:create"] })).key, "/customers/export")).body.error.code).toBe("FORBIDDEN");
      expect((await get((await mesh.workspace({ plan: "starter" })).key, "/customers/export")).body.error.code).toBe("FEATURE_NOT_AVAILABLE");
      expect((await mesh.request("POST", "/customers/export", { key: limited.key })).status).toBe(405);
    });

    describe("a large workspace read slowly", () => {
      // 40 batches of 500, about 9 MB of NDJSON: more than socket buffers hold.
      const N = 20_000;
      let ws: string;
      let key: string;
      let order: CustomerDoc[];
      beforeAll(async () => {
        ({ id: ws, key } = await mesh.workspace());
        const base = Date.now() - N * 10;
        order = Array.from({ length: N }, (_, i) => newCustomerDoc(newId("cus"), ws, `bulk-${i}`, { name: `Bulk ${i}`, email: `bulk${i}@example.com` }, new Date(base + i * 10)));
        for (let i = 0; i < N; i += 2000) await db.collection<CustomerDoc>("customers").insertMany(order.slice(i, i + 2000));
      });

      it("reads batches only as the client takes them, leaves out customers deleted meanwhile, and stops when the client goes away", async () => {
        // Count the batches the walk reads, and see it end.
        const original = CustomerReads.prototype.walk;
        let batches = 0;
        let ended = false;
        CustomerReads.prototype.walk = function (...args: Parameters<typeof original>) {
          const inner = original.apply(this, args);
          return (async function* () {
            try {
              for await (const b of inner) {
                batches++;
                yield b;
              }
            } finally {
              ended = true;
            }
          })();
        };
        try {
          const { res, read, close } = await openStream(`${mesh.api}/customers/export`, key);
          expect(res.statusCode).toBe(200);
          const head = await read(64 * 1024);
          expect(JSON.parse(head.split("\n")[0]!).id).toBe(order[0]!._id);
          // Paused: the walk waits for the client (once socket buffers are full) instead of
          // reading the workspace into memory.
          let pausedAt = -1;
          for (let i = 0; i < 20 && batches !== pausedAt; i++) {
            pausedAt = batches;
            await sleep(700);
          }
          expect(batches).toBe(pausedAt);
          expect(pausedAt).toBeLessThan((N / 500) * 0.7);
          // Deleted while the export runs, after their place in it has been read: not exported.
          const doomed = order.slice(N - 50).map((d) => d._id);
          for (const id of doomed) expect((await mesh.request("DELETE", `/customers/${id}`, { key })).status).toBe(200);
          const rest = await read(Infinity);
          const seen = (head + rest).trim().split("\n").map((l) => JSON.parse(l).id as string);
          expect(seen).toHaveLength(N - 50);
          expect(new Set(seen).size).toBe(N - 50);
          for (const id of doomed) expect(seen).not.toContain(id);
          expect(ended).toBe(true);

          // A client that goes away mid-export: the walk stops.
          batches = 0;
          ended = false;
          const second = await openStream(`${mesh.api}/customers/export?format=csv`, key);
          await second.read(16 * 1024);
          second.close();
          await waitFor(() => ended, 5000);
          expect(batches).toBeLessThan((N / 500) * 0.7);
          void close;
        } finally {
          CustomerReads.prototype.walk = original;
        }
      });
    });
  });

  it("a cursor walk visits every customer that lived throughout exactly once while others are created and deleted", async () => {
    const { key } = await mesh.workspace();
    const initial = await seed(key, 60);
    const doomed = new Set(initial.filter((_, i) => i % 4 === 1).map((c) => c.id));
    const survivors = initial.filter((c) => !doomed.has(c.id)).map((c) => c.id);
    for (const sortOrder of ["desc", "asc"] as const) {
      let churn = 0;
      const seen: string[] = [];
      let cursor: string | null = null;
      let first = true;
      const deleteQueue = [...doomed];
      while (first || cursor !== null) {
        const r: { status: number; body: { data: Rec[]; pagination: { nextCursor: string | null } } } = await get(
          key,
          `/customers?${q({ limit: "4", sortOrder, ...(cursor === null ? {} : { cursor }) })}`,
        );
        expect(r.status).toBe(200);
        seen.push(...ids(r));
        cursor = r.body.pagination.nextCursor;
        first = false;
        // Between pages: two new customers and (in the first walk) one delete.
        for (let j = 0; j < 2; j++) await post(key, { externalId: `churn-${sortOrder}-${churn++}` });
        const id = deleteQueue.shift();
        if (id !== undefined && sortOrder === "desc") await mesh.request("DELETE", `/customers/${id}`, { key });
      }
      expect(new Set(seen).size, "no customer twice").toBe(seen.length);
      for (const id of survivors) expect(seen.filter((x) => x === id), id).toHaveLength(1);
    }
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await sleep(20);
  }
}

/** A GET whose body is read only when asked for (backpressure reaches the server). */
function openStream(url: string, key: string): Promise<{ res: IncomingMessage; read: (bytes: number) => Promise<string>; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { "x-api-key": key } }, (res) => {
      res.pause();
      res.setEncoding("utf8");
      const read = (bytes: number) =>
        new Promise<string>((done, fail) => {
          let got = "";
          const onData = (chunk: string) => {
            got += chunk;
            if (got.length >= bytes) finish();
          };
          const finish = () => {
            res.off("data", onData);
            res.off("end", finish);
            res.off("error", fail);
            res.pause();
            done(got);
          };
          res.on("data", onData);
          res.once("end", finish);
          res.once("error", fail);
          res.resume();
        });
      resolve({ res, read, close: () => req.destroy() });
    });
    req.once("error", reject);
    req.end();
  });
}

/** RFC 4180 rows (CRLF line ends, quoted fields with doubled quotes). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(cell);
      cell = "";
    } else if (ch === "\r" && text[i + 1] === "\n") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
      i++;
    } else cell += ch;
  }
  return rows;
}
