/**
 * WorkspacesService: workspaces, plans and API keys. The operator CLI and the gateway are its callers.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  ApiKeySchema,
  WorkspaceSchema,
  type ApiKey,
  type AuthenticateApiKeyRequest,
  type CreateApiKeyRequest,
  type CreateWorkspaceRequest,
  type GetWorkspaceRequest,
  type RevokeApiKeyRequest,
  type Workspace,
  type WorkspacesService,
} from "@linquid/contracts";
import { newId, Violations, type MeshConfig } from "@linquid/mesh";
import { generateApiKey, hashApiKey, type KeyMode } from "./api-keys.js";
import { entitlementsOf, isPlan, isScope, PLANS, SCOPES } from "./plans.js";
import type { ApiKeyDoc, WorkspaceDoc, WorkspacesRepository } from "./repository.js";

const currencies = new Set(Intl.supportedValuesOf("currency"));

export class WorkspacesHandler implements ServiceImpl<typeof WorkspacesService> {
  constructor(
    private readonly repo: WorkspacesRepository,
    private readonly planRateLimits: MeshConfig["planRateLimits"],
  ) {}

  async createWorkspace(req: CreateWorkspaceRequest) {
    const v = new Violations();
    const name = req.name.trim();
    if (name === "" || name.length > 200) v.add("name", "must be 1..200 characters");
    if (!isPlan(req.plan)) v.add("plan", `must be one of ${PLANS.join(", ")}`);
    const currency = req.currency ?? "USD";
    if (!currencies.has(currency)) v.add("currency", "must be an ISO 4217 code such as USD");
    if (req.rateLimit !== undefined && (req.rateLimit < 1n || req.rateLimit > 1_000_000_000n)) v.add("rateLimit", "must be 1..1000000000 requests per hour");
    if (req.rateLimit !== undefined && req.unlimited) v.add("rateLimit", "cannot be combined with unlimited");
    v.throwIfAny();
    const doc: WorkspaceDoc = {
      _id: newId("ws"),
      name,
      plan: req.plan as WorkspaceDoc["plan"],
      currency,
      rateLimitOverride: req.rateLimit === undefined ? null : Number(req.rateLimit),
      unlimited: req.unlimited,
      createdAt: new Date(),
    };
    await this.repo.insertWorkspace(doc);
    return { workspace: this.toWorkspace(doc) };
  }

  async getWorkspace(req: GetWorkspaceRequest) {
    const doc = await this.repo.findWorkspace(req.id);
    if (doc === null) throw new ConnectError("workspace not found", Code.NotFound);
    return { workspace: this.toWorkspace(doc) };
  }

  async createApiKey(req: CreateApiKeyRequest) {
    const v = new Violations();
    if (req.scopes.length === 0) v.add("scopes", "at least one scope is required");
    for (const s of req.scopes) if (!isScope(s)) v.add("scopes", `unknown scope "${s}" (known: ${SCOPES.join(", ")})`);
    const mode = req.mode ?? "live";
    if (mode !== "live" && mode !== "test") v.add("mode", "must be live or test");
    if (req.name !== undefined && req.name.length > 200) v.add("name", "must be at most 200 characters");
    v.throwIfAny();
    if ((await this.repo.findWorkspace(req.workspaceId)) === null) throw new ConnectError("workspace not found", Code.NotFound);
    const key = generateApiKey(mode as KeyMode);
    const doc: ApiKeyDoc = {
      _id: hashApiKey(key),
      keyId: newId("key"),
      workspaceId: req.workspaceId,
      name: req.name ?? null,
      scopes: [...new Set(req.scopes)],
      createdAt: new Date(),
      revokedAt: null,
    };
    await this.repo.insertApiKey(doc);
    return { apiKey: toApiKey(doc), key };
  }

  async revokeApiKey(req: RevokeApiKeyRequest) {
    const doc = await this.repo.revokeApiKey(req.id, new Date());
    if (doc === null) throw new ConnectError("API key not found", Code.NotFound);
    return { apiKey: toApiKey(doc) };
  }

  async authenticateApiKey(req: AuthenticateApiKeyRequest) {
    if (!/^[0-9a-f]{64}$/.test(req.keyHash)) throw new ConnectError("malformed key hash", Code.InvalidArgument);
    const key = await this.repo.findApiKeyByHash(req.keyHash);
    if (key === null || key.revokedAt !== null) throw new ConnectError("unknown or revoked API key", Code.Unauthenticated);
    const ws = await this.repo.findWorkspace(key.workspaceId);
    if (ws === null) throw new ConnectError("the key's workspace no longer exists", Code.Unauthenticated);
    return { workspace: this.toWorkspace(ws), apiKey: toApiKey(key) };
  }

  private toWorkspace(doc: WorkspaceDoc): Workspace {
    const limit = doc.unlimited ? null : (doc.rateLimitOverride ?? this.planRateLimits[doc.plan]);
    return create(WorkspaceSchema, {
      id: doc._id,
      name: doc.name,
      plan: doc.plan,
      currency: doc.currency,
      ...(limit === null ? {} : { rateLimit: BigInt(limit) }),
      entitlements: [...entitlementsOf(doc.plan)],
      createdAt: timestampFromDate(doc.createdAt),
    });
  }
}

function toApiKey(doc: ApiKeyDoc): ApiKey {
  return create(ApiKeySchema, {
    id: doc.keyId,
    workspaceId: doc.workspaceId,
    ...(doc.name === null ? {} : { name: doc.name }),
    scopes: doc.scopes,
    createdAt: timestampFromDate(doc.createdAt),
    ...(doc.revokedAt === null ? {} : { revokedAt: timestampFromDate(doc.revokedAt) }),
  });
}
