import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CreateCustomerRequestSchema,
  ListCustomersRequestSchema,
  UpdateCustomerRequestSchema,
  type CreateCustomerRequest,
  type UpdateCustomerRequest,
} from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { beforeEach, describe, expect, it } from "vitest";
import { CursorCodec } from "../../src/cursor.js";
import { CustomersHandler } from "../../src/customers-service.js";
import type { Retrier } from "../../src/retry-sweeper.js";
import { FakeCustomersRepository } from "./fake-repository.js";

const WS = "ws_test";

/** Records the customers a follow-up was attempted for; `ok` says whether it went through. */
class FakeRetrier implements Retrier {
  readonly attempted: string[] = [];
  ok = true;
  async attempt(_ws: string, customerId: string) {
    this.attempted.push(customerId);
    return this.ok;
  }
}

async function rpcError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

async function violationsFrom(p: Promise<unknown>): Promise<Array<{ field: string; issue: string }>> {
  const err = await rpcError(p);
  expect(err.code).toBe(Code.InvalidArgument);
  return violationsOf(err);
}

describe("CustomersHandler", () => {
  let repo: FakeCustomersRepository;
  let scrubber: FakeRetrier;
  let registrar: FakeRetrier;
  let h: CustomersHandler;
  const createReq = (init: Partial<CreateCustomerRequest>) => create(CreateCustomerRequestSchema, { workspaceId: WS, externalId: "u1", ...init });
  const updateReq = (id: string, paths: string[], init: Partial<UpdateCustomerRequest> = {}) =>
    create(UpdateCustomerRequestSchema, { workspaceId: WS, id, updateMask: create(FieldMaskSchema, { paths }), ...init });

  beforeEach(() => {
    repo = new FakeCustomersRepository();
    scrubber = new FakeRetrier();
    registrar = new FakeRetrier();
    h = new CustomersHandler(repo, { scrub: scrubber, register: registrar }, new CursorCodec([Buffer.alloc(32, 7)]));
  });

  describe("create validation", () => {
    const bad: Array<[string, Partial<CreateCustomerRequest>, string]> = [
      ["externalId", { externalId: "" }, "is required"],
      ["externalId", { externalId: "x".repeat(256) }, "at most 255"],
      ["externalId", { externalId: "a\nb" }, "control"],
      ["externalId", { externalId: "a\u0000b" }, "control"],
      ["email", { email: "not-an-email" }, "email"],
      ["email", { email: "a@b" }, "email"],
      ["email", { email: "a b@c.de" }, "email"],
      ["email", { email: `${"a".repeat(250)}@b.co` }, "at most 254"],
      ["email", { email: "" }, "email"],
      ["name", { name: "n".repeat(256) }, "at most 255"],
      ["avatar", { avatar: "ftp://x.com/a.png" }, "http"],
      ["avatar", { avatar: "javascript:alert(1)" }, "http"],
      ["avatar", { avatar: "not a url" }, "http"],
      ["avatar", { avatar: `https://x.com/${"a".repeat(2040)}` }, "at most 2048"],
      ["country", { country: "USA" }, "ISO 3166-1"],
      ["country", { country: "XX" }, "ISO 3166-1"],
      ["country", { country: "ß" }, "ISO 3166-1"],
      ["clickId", { clickId: "" }, "1..255"],
      ["clickId", { clickId: "c".repeat(256) }, "1..255"],
      ["metadata.nested", { metadata: { nested: { a: 1 } } }, "no nested"],
      ["metadata.list", { metadata: { list: [1, 2] } }, "no nested"],
      ["metadata", { metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])) }, "at most 50 keys"],
      ["metadata", { metadata: { big: "x".repeat(16 * 1024) } }, "16384 bytes"],
      ["workspaceId", { workspaceId: "" }, "required"],
    ];
    it.each(bad)("rejects a bad %s (%j)", async (field, init, issue) => {
      const v = await violationsFrom(h.createCustomer(createReq(init)));
      expect(v).toContainEqual({ field, issue: expect.stringContaining(issue) });
      expect(repo.docs.size).toBe(0);
    });

    it("reports every bad field at once", async () => {
      const v = await violationsFrom(h.createCustomer(createReq({ externalId: "", email: "x", country: "zz", avatar: "nope" })));
      expect(v.map((x) => x.field).sort()).toEqual(["avatar", "country", "email", "externalId"]);
    });

    it("accepts edge values and normalizes the country", async () => {
      const res = await h.createCustomer(
        createReq({
          externalId: "x".repeat(255),
          email: "first.last+tag@sub.example.co.uk",
          name: "n".repeat(255),
          avatar: "https://cdn.example.com/a.png",
          country: "de",
          clickId: "c".repeat(255),
          metadata: { "$where": "1", "a.b": true, n: 1.5, z: null, ...Object.fromEntries(Array.from({ length: 46 }, (_, i) => [`k${i}`, "v"])) },
        }),
      );
      expect(res.created).toBe(true);
      expect(res.customer?.country).toBe("DE");
      expect(res.customer?.metadata?.["$where"]).toBe("1");
      expect(res.customer?.metadata?.["a.b"]).toBe(true);
      expect(Object.keys(res.customer?.metadata ?? {})).toHaveLength(50);
      expect(res.customer?.stats).toMatchObject({ leads: 0n, sales: 0n, revenue: 0n });
      expect(res.customer?.stats?.currency).toBeUndefined();
    });

    it("creates, then updates the given fields of the same externalId", async () => {
      const a = await h.createCustomer(createReq({ email: "a@x.io", name: "A" }));
      const b = await h.createCustomer(createReq({ name: "B" }));
      expect([a.created, b.created]).toEqual([true, false]);
      expect(b.customer).toMatchObject({ id: a.customer!.id, email: "a@x.io", name: "B" });
    });
  });

  describe("list parameters", () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ["page", { page: 0 }],
      ["page", { page: -3 }],
      ["limit", { limit: 0 }],
      ["limit", { limit: 101 }],
      ["limit", { limit: -1 }],
      ["sortOrder", { sortOrder: "up" }],
      ["sortOrder", { sortOrder: "DESC" }],
      ["search", { search: "s".repeat(256) }],
      ["search", { search: "a\tb" }],
    ];
    it.each(bad)("rejects a bad %s (%j), never clamping", async (field, init) => {
      const v = await violationsFrom(h.listCustomers(create(ListCustomersRequestSchema, { workspaceId: WS, ...init })));
      expect(v.map((x) => x.field)).toEqual([field]);
      expect(repo.calls.filter((c) => c.startsWith("page") || c.startsWith("count"))).toEqual([]);
    });

    it("fills in page 1, limit 20, desc and reports the envelope", async () => {
      for (let i = 0; i < 45; i++) await h.createCustomer(createReq({ externalId: `u${i}` }));
      const res = await h.listCustomers(create(ListCustomersRequestSchema, { workspaceId: WS }));
      expect(res.customers).toHaveLength(20);
      expect(res.customers[0]!.externalId).toBe("u44");
      expect(res.pagination.case).toBe("page");
      expect(res.pagination.value).toMatchObject({ page: 1, limit: 20, total: 45n, totalPages: 3, hasMore: true });
      expect(res.pagination.value!.nextCursor).toMatch(/^[\w-]+\.[\w-]{22}$/);
      const last = await h.listCustomers(create(ListCustomersRequestSchema, { workspaceId: WS, page: 3, limit: 20, sortOrder: "asc" }));
      expect(last.customers.map((c) => c.externalId)).toEqual(["u40", "u41", "u42", "u43", "u44"]);
      expect(last.pagination.value).toMatchObject({ page: 3, totalPages: 3, hasMore: false });
      expect(last.pagination.value!.nextCursor).toBeUndefined();
      const beyond = await h.listCustomers(create(ListCustomersRequestSchema, { workspaceId: WS, page: 9 }));
      expect(beyond.customers).toEqual([]);
      expect(beyond.pagination.value).toMatchObject({ page: 9, total: 45n, hasMore: false });
    });

    it("counts a search only when its page does not show every match (page-total.ts)", async () => {
      for (let i = 0; i < 25; i++) await h.createCustomer(createReq({ externalId: `u${i}`, name: i % 5 === 0 ? "Ada Lovelace" : "Grace Hopper" }));
      const list = async (init: Record<string, unknown>) => {
        repo.calls.length = 0;
        const res = await h.listCustomers(create(ListCustomersRequestSchema, { workspaceId: WS, ...init }));
        return { ids: res.customers.map((c) => c.externalId), p: res.pagination.value, counted: repo.calls.includes("count") };
      };
      // Every match on the page: its total, no count.
      expect(await list({ search: "LOVE", limit: 20 })).toMatchObject({ ids: ["u20", "u15", "u10", "u5", "u0"], p: { total: 5n, totalPages: 1, hasMore: false }, counted: false });
      // The last of several pages: the skipped matches and the page's.
      expect(await list({ search: "hopper", limit: 8, page: 3 })).toMatchObject({ p: { total: 20n, totalPages: 3, hasMore: false }, counted: false });
      // More follow: counted.
      expect(await list({ search: "hopper", limit: 8 })).toMatchObject({ p: { total: 20n, hasMore: true }, counted: true });
      // Past the end: an empty page says nothing of how many came before, so counted.
      expect(await list({ search: "hopper", limit: 8, page: 9 })).toMatchObject({ ids: [], p: { total: 20n, hasMore: false }, counted: true });
      // No match at all on page 1: zero, no count.
      expect(await list({ search: "turing" })).toMatchObject({ ids: [], p: { total: 0n }, counted: false });
    });
  });

  describe("id arguments", () => {
    it("accepts cus_ ids and ext_ external ids (everything after the first ext_)", async () => {
      const a = await h.createCustomer(createReq({ externalId: "ext_1" }));
      const b = await h.createCustomer(createReq({ externalId: "with:colon/and space" }));
      expect((await h.getCustomer({ workspaceId: WS, id: "ext_ext_1" } as never)).customer?.id).toBe(a.customer!.id);
      expect((await h.getCustomer({ workspaceId: WS, id: "ext_with:colon/and space" } as never)).customer?.id).toBe(b.customer!.id);
      expect((await h.getCustomer({ workspaceId: WS, id: a.customer!.id } as never)).customer?.externalId).toBe("ext_1");
    });

    it.each(["", "ext_", "cus_", "foo", "ext_1", "cus_unknown", "CUS_x", "ext_a\nb", `ext_${"x".repeat(256)}`, "cus_$where", "cus_a.b"])(
      "answers NOT_FOUND for %j",
      async (id) => {
        await h.createCustomer(createReq({ externalId: "u1" }));
        expect((await rpcError(h.getCustomer({ workspaceId: WS, id } as never))).code).toBe(Code.NotFound);
        expect((await rpcError(h.deleteCustomer({ workspaceId: WS, id } as never))).code).toBe(Code.NotFound);
      },
    );

    it("answers NOT_FOUND for another workspace's customer", async () => {
      const a = await h.createCustomer(createReq({ externalId: "u1" }));
      for (const id of [a.customer!.id, "ext_u1"]) {
        expect((await rpcError(h.getCustomer({ workspaceId: "ws_other", id } as never))).code).toBe(Code.NotFound);
        expect((await rpcError(h.updateCustomer(updateReq(id, ["name"], { workspaceId: "ws_other", name: "x" })))).code).toBe(Code.NotFound);
      }
    });
  });

  describe("update mask", () => {
    let id: string;
    beforeEach(async () => {
      id = (await h.createCustomer(createReq({ externalId: "u1", email: "a@x.io", name: "A", country: "FR", metadata: { k: "v" } }))).customer!.id;
    });

    it("changes only the masked fields, clearing masked fields left unset", async () => {
      const res = await h.updateCustomer(updateReq(id, ["name", "email", "metadata"], { name: "B", country: "US", clickId: "c1" }));
      expect(res.customer).toMatchObject({ id, externalId: "u1", name: "B", country: "FR" });
      expect(res.customer?.email).toBeUndefined();
      expect(res.customer?.metadata).toBeUndefined();
      expect(res.customer?.clickId).toBeUndefined();
    });

    it("accepts proto names in the mask", async () => {
      const res = await h.updateCustomer(updateReq(id, ["external_id", "click_id"], { externalId: "u2", clickId: "c9" }));
      expect(res.customer).toMatchObject({ externalId: "u2", clickId: "c9" });
    });

    it("refuses to clear externalId", async () => {
      expect(await violationsFrom(h.updateCustomer(updateReq(id, ["externalId"])))).toEqual([{ field: "externalId", issue: "cannot be cleared" }]);
    });

    it("refuses unknown and read-only paths", async () => {
      const v = await violationsFrom(h.updateCustomer(updateReq(id, ["id", "createdAt", "stats", "workspaceId", "foo"])));
      expect(v.map((x) => x.field)).toEqual(["id", "createdAt", "stats", "workspaceId", "foo"]);
    });

    it("validates masked values", async () => {
      const v = await violationsFrom(h.updateCustomer(updateReq(id, ["email", "country", "metadata"], { email: "bad", country: "QQ", metadata: { a: { b: 1 } } })));
      expect(v.map((x) => x.field).sort()).toEqual(["country", "email", "metadata.a"]);
    });

    it("with an empty mask returns the customer without writing", async () => {
      const before = repo.calls.length;
      const res = await h.updateCustomer(updateReq(id, [], { name: "ignored" }));
      expect(res.customer).toMatchObject({ id, name: "A" });
      expect(repo.calls.slice(before).some((c) => c.startsWith("update"))).toBe(false);
    });

    it("maps a taken externalId to ALREADY_EXISTS", async () => {
      await h.createCustomer(createReq({ externalId: "u2" }));
      expect((await rpcError(h.updateCustomer(updateReq(id, ["externalId"], { externalId: "u2" })))).code).toBe(Code.AlreadyExists);
    });

    it("addresses the customer by ext_ too", async () => {
      const res = await h.updateCustomer(updateReq("ext_u1", ["name"], { name: "Z" }));
      expect(res.customer).toMatchObject({ id, name: "Z" });
    });
  });

  describe("delete", () => {
    it("soft-deletes, asks for the scrub and answers NOT_FOUND afterwards", async () => {
      const id = (await h.createCustomer(createReq({ externalId: "u1" }))).customer!.id;
      expect(await h.deleteCustomer({ workspaceId: WS, id: "ext_u1" } as never)).toEqual({ id, deleted: true });
      expect(scrubber.attempted).toEqual([id]);
      expect((await rpcError(h.getCustomer({ workspaceId: WS, id } as never))).code).toBe(Code.NotFound);
      expect((await rpcError(h.deleteCustomer({ workspaceId: WS, id } as never))).code).toBe(Code.NotFound);
    });

    it("still succeeds when the scrub has to wait", async () => {
      scrubber.ok = false;
      const id = (await h.createCustomer(createReq({ externalId: "u1" }))).customer!.id;
      expect(await h.deleteCustomer({ workspaceId: WS, id } as never)).toEqual({ id, deleted: true });
      expect(repo.docs.get(id)).toMatchObject({ email: null, externalId: null });
      expect(repo.docs.get(id)?.deletedAt).toBeInstanceOf(Date);
    });
  });

  describe("registration with analytics", () => {
    it("is asked for customers created through the API, once, and never for stitched ones", async () => {
      const id = (await h.createCustomer(createReq({ externalId: "u1" }))).customer!.id;
      await h.createCustomer(createReq({ externalId: "u1", name: "again" }));
      await h.stitchCustomer({ workspaceId: WS, externalId: "s1" } as never);
      expect(registrar.attempted).toEqual([id]);
    });

    it("does not hold up a create when analytics cannot be reached", async () => {
      registrar.ok = false;
      expect((await h.createCustomer(createReq({ externalId: "u2" }))).created).toBe(true);
    });
  });

  describe("stitch", () => {
    it("fills only fields the customer does not have yet", async () => {
      await h.createCustomer(createReq({ externalId: "u1", email: "keep@x.io" }));
      const res = await h.stitchCustomer({ workspaceId: WS, externalId: "u1", email: "new@x.io", name: "N", clickId: "c1" } as never);
      expect(res.created).toBe(false);
      expect(res.customer).toMatchObject({ email: "keep@x.io", name: "N", clickId: "c1" });
      const fresh = await h.stitchCustomer({ workspaceId: WS, externalId: "u2", name: "M" } as never);
      expect(fresh.created).toBe(true);
    });

    it("validates its input", async () => {
      const v = await violationsFrom(h.stitchCustomer({ workspaceId: WS, externalId: "", email: "nope" } as never));
      expect(v.map((x) => x.field).sort()).toEqual(["email", "externalId"]);
    });
  });

  describe("stats", () => {
    it("applies newer versions only, and NOT_FOUND for unknown customers", async () => {
      const id = (await h.createCustomer(createReq({}))).customer!.id;
      const stats = { leads: 2n, sales: 1n, revenue: 500n, currency: "EUR", firstSeenAt: timestampFromDate(new Date(0)) };
      expect(await h.setCustomerStats({ workspaceId: WS, customerId: id, stats, version: 2n } as never)).toEqual({ applied: true });
      expect(await h.setCustomerStats({ workspaceId: WS, customerId: id, stats: { ...stats, leads: 9n }, version: 1n } as never)).toEqual({ applied: false });
      expect((await h.getCustomer({ workspaceId: WS, id } as never)).customer?.stats).toMatchObject({ leads: 2n, sales: 1n, revenue: 500n, currency: "EUR" });
      expect((await rpcError(h.setCustomerStats({ workspaceId: WS, customerId: "cus_nope", stats, version: 3n } as never))).code).toBe(Code.NotFound);
      expect((await rpcError(h.setCustomerStats({ workspaceId: "ws_other", customerId: id, stats, version: 3n } as never))).code).toBe(Code.NotFound);
    });

    it("rejects negative counts and bad currencies", async () => {
      const v = await violationsFrom(h.setCustomerStats({ workspaceId: WS, customerId: "cus_x", stats: { leads: -1n, sales: 0n, revenue: 0n, currency: "eur" }, version: -1n } as never));
      expect(v.map((x) => x.field).sort()).toEqual(["stats.currency", "stats.leads", "version"]);
    });
  });
});
