import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ClaimIdempotencyKeyRequestSchema, RecordIdempotentAnswerRequestSchema, ReleaseIdempotencyKeyRequestSchema } from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { IdempotencyHandler } from "../../src/idempotency-service.js";
import type { ClaimOutcome, IdempotencyStore, StoredAnswer } from "../../src/idempotency-store.js";

class FakeStore implements IdempotencyStore {
  next: ClaimOutcome = { kind: "claimed", token: "claim_1" };
  recorded: StoredAnswer[] = [];
  async claim() {
    return this.next;
  }
  async record(_w: string, _k: string, _t: string, answer: StoredAnswer) {
    this.recorded.push(answer);
    return true;
  }
  async release() {
    return true;
  }
}

const FP = "a".repeat(64);

async function fields(p: Promise<unknown>): Promise<string[]> {
  const err = await p.then(
    () => expect.fail("expected a rejection"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  expect((err as ConnectError).code).toBe(Code.InvalidArgument);
  return violationsOf(err as ConnectError).map((v) => v.field);
}

describe("IdempotencyService", () => {
  it("answers each outcome of a claim as its oneof case", async () => {
    const store = new FakeStore();
    const h = new IdempotencyHandler(store);
    const req = create(ClaimIdempotencyKeyRequestSchema, { workspaceId: "ws_1", key: "k", fingerprint: FP, leaseMs: 20_000 });
    expect((await h.claimIdempotencyKey(req)).outcome).toEqual({ case: "claimToken", value: "claim_1" });
    store.next = { kind: "answered", answer: { status: 201, body: "{}", headers: [{ name: "x-cache", value: "MISS" }] } };
    expect((await h.claimIdempotencyKey(req)).outcome).toMatchObject({ case: "answer", value: { status: 201, body: "{}", headers: { "x-cache": "MISS" } } });
    store.next = { kind: "in-progress" };
    expect((await h.claimIdempotencyKey(req)).outcome.case).toBe("inProgress");
    store.next = { kind: "reused" };
    expect((await h.claimIdempotencyKey(req)).outcome.case).toBe("keyReused");
  });

  it("refuses malformed claims: key shape, fingerprint, lease bounds", async () => {
    const h = new IdempotencyHandler(new FakeStore());
    const claim = (over: object) => h.claimIdempotencyKey(create(ClaimIdempotencyKeyRequestSchema, { workspaceId: "ws_1", key: "k", fingerprint: FP, leaseMs: 20_000, ...over }));
    expect(await fields(claim({ key: "" }))).toEqual(["key"]);
    expect(await fields(claim({ key: "x".repeat(256) }))).toEqual(["key"]);
    expect(await fields(claim({ key: "tab\there" }))).toEqual(["key"]);
    expect(await fields(claim({ key: "é" }))).toEqual(["key"]);
    expect(await fields(claim({ workspaceId: "", fingerprint: "ABC", leaseMs: 999 }))).toEqual(["workspaceId", "fingerprint", "leaseMs"]);
    expect(await fields(claim({ leaseMs: 600_001 }))).toEqual(["leaseMs"]);
    await expect(claim({ key: "x".repeat(255) })).resolves.toBeDefined();
    await expect(claim({ key: " !~" })).resolves.toBeDefined();
  });

  it("keeps answers below 500 of at most 1 MiB and 16 headers; refuses the rest", async () => {
    const store = new FakeStore();
    const h = new IdempotencyHandler(store);
    const record = (answer: object | undefined, over: object = {}) =>
      h.recordIdempotentAnswer(create(RecordIdempotentAnswerRequestSchema, { workspaceId: "ws_1", key: "k", claimToken: "claim_1", ...(answer === undefined ? {} : { answer }), ...over }));
    expect(await record({ status: 201, body: "{}", headers: { "x-cache": "MISS" } })).toMatchObject({ recorded: true });
    expect(store.recorded).toEqual([{ status: 201, body: "{}", headers: [{ name: "x-cache", value: "MISS" }] }]);
    expect(await fields(record({ status: 500, body: "{}" }))).toEqual(["answer.status"]);
    expect(await fields(record({ status: 200, body: "é".repeat(512 * 1024 + 1) }))).toEqual(["answer.body"]);
    expect(await fields(record({ status: 200, body: "{}", headers: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`h${i}`, "v"])) }))).toEqual(["answer.headers"]);
    expect(await fields(record({ status: 200, body: "{}", headers: { "Bad Name": "v" } }))).toEqual(["answer.headers"]);
    expect(await fields(record(undefined, { claimToken: "" }))).toEqual(["claimToken", "answer"]);
    expect(await fields(h.releaseIdempotencyKey(create(ReleaseIdempotencyKeyRequestSchema, { workspaceId: "ws_1", key: "k" })))).toEqual(["claimToken"]);
  });
});
