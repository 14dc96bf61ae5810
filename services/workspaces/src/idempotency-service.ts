/**
 * IdempotencyService: the contract's checks, then the store (idempotency-store.ts). Its caller
 * is the gateway's Idempotency-Key policy.
 */
import { create } from "@bufbuild/protobuf";
import { type ServiceImpl } from "@connectrpc/connect";
import {
  ClaimIdempotencyKeyResponseSchema,
  IdempotentAnswerSchema,
  type ClaimIdempotencyKeyRequest,
  type IdempotencyService,
  type IdempotentAnswer,
  type RecordIdempotentAnswerRequest,
  type ReleaseIdempotencyKeyRequest,
} from "@linquid/contracts";
import { Violations } from "@linquid/mesh";
import { MAX_ANSWER_BODY_BYTES, type IdempotencyStore, type StoredAnswer } from "./idempotency-store.js";

/** 1..255 printable ASCII (rest-api.md, "Developer platform"). */
const KEY_SHAPE = /^[\x20-\x7e]{1,255}$/;
const FINGERPRINT_SHAPE = /^[0-9a-f]{64}$/;
const HEADER_NAME = /^[a-z0-9-]{1,64}$/;
const HEADER_VALUE = /^[\x20-\x7e]{0,1024}$/;
const MAX_HEADERS = 16;
const MIN_LEASE_MS = 1000;
const MAX_LEASE_MS = 600_000;

function checkTarget(v: Violations, req: { workspaceId: string; key: string }): void {
  if (req.workspaceId === "" || req.workspaceId.length > 100) v.add("workspaceId", "must be 1..100 characters");
  if (!KEY_SHAPE.test(req.key)) v.add("key", "must be 1..255 printable ASCII characters");
}

function checkToken(v: Violations, token: string): void {
  if (token === "" || token.length > 100) v.add("claimToken", "must be the token of a claim");
}

function checkAnswer(v: Violations, answer: IdempotentAnswer | undefined): void {
  if (answer === undefined) {
    v.add("answer", "is required");
    return;
  }
  if (answer.status < 100 || answer.status > 499) v.add("answer.status", "must be 100..499: answers of 500 and above are not kept");
  if (Buffer.byteLength(answer.body, "utf8") > MAX_ANSWER_BODY_BYTES) v.add("answer.body", `must be at most ${MAX_ANSWER_BODY_BYTES} bytes`);
  const headers = Object.entries(answer.headers);
  if (headers.length > MAX_HEADERS) v.add("answer.headers", `must be at most ${MAX_HEADERS}`);
  for (const [name, value] of headers) {
    if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value)) v.add("answer.headers", `"${name.slice(0, 64)}": lower-case name of 1..64 characters, printable value of at most 1024`);
  }
}

export class IdempotencyHandler implements ServiceImpl<typeof IdempotencyService> {
  constructor(private readonly store: IdempotencyStore) {}

  async claimIdempotencyKey(req: ClaimIdempotencyKeyRequest) {
    const v = new Violations();
    checkTarget(v, req);
    if (!FINGERPRINT_SHAPE.test(req.fingerprint)) v.add("fingerprint", "must be a lowercase hex SHA-256");
    if (req.leaseMs < MIN_LEASE_MS || req.leaseMs > MAX_LEASE_MS) v.add("leaseMs", `must be ${MIN_LEASE_MS}..${MAX_LEASE_MS}`);
    v.throwIfAny();
    const outcome = await this.store.claim(req.workspaceId, req.key, req.fingerprint, req.leaseMs);
    switch (outcome.kind) {
      case "claimed":
        return create(ClaimIdempotencyKeyResponseSchema, { outcome: { case: "claimToken", value: outcome.token } });
      case "answered":
        return create(ClaimIdempotencyKeyResponseSchema, { outcome: { case: "answer", value: toAnswer(outcome.answer) } });
      case "in-progress":
        return create(ClaimIdempotencyKeyResponseSchema, { outcome: { case: "inProgress", value: {} } });
      case "reused":
        return create(ClaimIdempotencyKeyResponseSchema, { outcome: { case: "keyReused", value: {} } });
    }
  }

  async recordIdempotentAnswer(req: RecordIdempotentAnswerRequest) {
    const v = new Violations();
    checkTarget(v, req);
    checkToken(v, req.claimToken);
    checkAnswer(v, req.answer);
    v.throwIfAny();
    const answer = req.answer!;
    const stored: StoredAnswer = { status: answer.status, body: answer.body, headers: Object.entries(answer.headers).map(([name, value]) => ({ name, value })) };
    return { recorded: await this.store.record(req.workspaceId, req.key, req.claimToken, stored) };
  }

  async releaseIdempotencyKey(req: ReleaseIdempotencyKeyRequest) {
    const v = new Violations();
    checkTarget(v, req);
    checkToken(v, req.claimToken);
    v.throwIfAny();
    return { released: await this.store.release(req.workspaceId, req.key, req.claimToken) };
  }
}

function toAnswer(a: StoredAnswer): IdempotentAnswer {
  return create(IdempotentAnswerSchema, { status: a.status, body: a.body, headers: Object.fromEntries(a.headers.map((h) => [h.name, h.value])) });
}
