import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  AuthenticateApiKeyRequestSchema,
  CreateApiKeyRequestSchema,
  CreateWorkspaceRequestSchema,
  RevokeApiKeyRequestSchema,
} from "@linquid/contracts";
import { violationsOf } from "@linquid/mesh";
import { describe, expect, it } from "vitest";
import { hashApiKey } from "../../src/api-keys.js";
import type { ApiKeyDoc, WorkspaceDoc, WorkspacesRepository } from "../../src/repository.js";
import { WorkspacesHandler } from "../../src/workspaces-service.js";

class FakeRepository implements WorkspacesRepository {
  workspaces = new Map<string, WorkspaceDoc>();
  keys = new Map<string, ApiKeyDoc>();
  async insertWorkspace(doc: WorkspaceDoc) {
    this.workspaces.set(doc._id, doc);
  }
  async findWorkspace(id: string) {
    return this.workspaces.get(id) ?? null;
  }
  async insertApiKey(doc: ApiKeyDoc) {
    this.keys.set(doc._id, doc);
  }
  async findApiKeyByHash(hash: string) {
    return this.keys.get(hash) ?? null;
  }
  async revokeApiKey(keyId: string, at: Date) {
    const doc = [...this.keys.values()].find((k) => k.keyId === keyId);
    if (doc === undefined) return null;
    doc.revokedAt ??= at;
    return doc;
  }
}

const limits = { starter: 100, pro: 1000, enterprise: 10_000 };

async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected a rejection");
}

describe("WorkspacesHandler", () => {
  it("applies plan defaults, overrides and unlimited budgets", async () => {
    const h = new WorkspacesHandler(new FakeRepository(), limits);
    const def = await h.createWorkspace(create(CreateWorkspaceRequestSchema, { name: "a", plan: "starter" }));
    expect(def.workspace).toMatchObject({ plan: "starter", currency: "USD", rateLimit: 100n, entitlements: [] });
    const over = await h.createWorkspace(create(CreateWorkspaceRequestSchema, { name: "b", plan: "pro", rateLimit: 5n, currency: "EUR" }));
    expect(over.workspace).toMatchObject({ rateLimit: 5n, currency: "EUR", entitlements: ["revenue-tracking"] });
    const unl = await h.createWorkspace(create(CreateWorkspaceRequestSchema, { name: "c", plan: "enterprise", unlimited: true }));
    expect(unl.workspace?.rateLimit).toBeUndefined();
  });

  it("rejects bad workspace fields, naming each", async () => {
    const h = new WorkspacesHandler(new FakeRepository(), limits);
    const err = await rejection(h.createWorkspace(create(CreateWorkspaceRequestSchema, { name: "", plan: "gold", currency: "usd" })));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violationsOf(err).map((v) => v.field).sort()).toEqual(["currency", "name", "plan"]);
  });

  it("stores only the hash of a key and authenticates by it until revoked", async () => {
    const repo = new FakeRepository();
    const h = new WorkspacesHandler(repo, limits);
    const ws = (await h.createWorkspace(create(CreateWorkspaceRequestSchema, { name: "a", plan: "pro" }))).workspace!;
    const made = await h.createApiKey(create(CreateApiKeyRequestSchema, { workspaceId: ws.id, scopes: ["links:read", "links:read"] }));
    expect(made.key).toMatch(/^lw_live_[A-Za-z0-9_-]{43}$/);
    expect(made.apiKey?.scopes).toEqual(["links:read"]);
    expect(JSON.stringify([...repo.keys.values()])).not.toContain(made.key);

    const auth = await h.authenticateApiKey(create(AuthenticateApiKeyRequestSchema, { keyHash: hashApiKey(made.key) }));
    expect(auth.workspace?.id).toBe(ws.id);

    await h.revokeApiKey(create(RevokeApiKeyRequestSchema, { id: made.apiKey!.id }));
    const err = await rejection(h.authenticateApiKey(create(AuthenticateApiKeyRequestSchema, { keyHash: hashApiKey(made.key) })));
    expect(err.code).toBe(Code.Unauthenticated);
  });

  it("rejects unknown scopes and unknown workspaces", async () => {
    const h = new WorkspacesHandler(new FakeRepository(), limits);
    const bad = await rejection(h.createApiKey(create(CreateApiKeyRequestSchema, { workspaceId: "ws_x", scopes: ["links:everything"] })));
    expect(bad.code).toBe(Code.InvalidArgument);
    const missing = await rejection(h.createApiKey(create(CreateApiKeyRequestSchema, { workspaceId: "ws_x", scopes: ["links:read"] })));
    expect(missing.code).toBe(Code.NotFound);
  });

  it("makes test keys on request", async () => {
    const h = new WorkspacesHandler(new FakeRepository(), limits);
    const ws = (await h.createWorkspace(create(CreateWorkspaceRequestSchema, { name: "a", plan: "pro" }))).workspace!;
    const made = await h.createApiKey(create(CreateApiKeyRequestSchema, { workspaceId: ws.id, scopes: ["events:write"], mode: "test" }));
    expect(made.key.startsWith("lw_test_")).toBe(true);
  });
});
