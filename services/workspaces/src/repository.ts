/**
 * The workspaces plugin's collections:
 * - `workspaces`: `_id` = workspace id;
 * - `api_keys`: `_id` = SHA-256 of the key (lookups by hash are `_id` equality, the fast path
 *   on MongoDB and FerretDB alike), `keyId` unique for revocation by id.
 */
import type { Collection, Db } from "mongodb";
import { dbCall } from "@linquid/mesh";
import type { Plan } from "@linquid/mesh";

export interface WorkspaceDoc {
  _id: string;
  name: string;
  plan: Plan;
  currency: string;
  /** Requests per hour for this workspace; null = the plan's default. */
  rateLimitOverride: number | null;
  unlimited: boolean;
  createdAt: Date;
}

export interface ApiKeyDoc {
  _id: string;
  keyId: string;
  workspaceId: string;
  name: string | null;
  scopes: string[];
  createdAt: Date;
  revokedAt: Date | null;
}

export interface WorkspacesRepository {
  insertWorkspace(doc: WorkspaceDoc): Promise<void>;
  findWorkspace(id: string): Promise<WorkspaceDoc | null>;
  insertApiKey(doc: ApiKeyDoc): Promise<void>;
  findApiKeyByHash(hash: string): Promise<ApiKeyDoc | null>;
  /** Sets revokedAt if not yet set; returns the key as stored after, or null if unknown. */
  revokeApiKey(keyId: string, at: Date): Promise<ApiKeyDoc | null>;
}

export class MongoWorkspacesRepository implements WorkspacesRepository {
  private readonly workspaces: Collection<WorkspaceDoc>;
  private readonly keys: Collection<ApiKeyDoc>;

  constructor(db: Db) {
    this.workspaces = db.collection<WorkspaceDoc>("workspaces");
    this.keys = db.collection<ApiKeyDoc>("api_keys");
  }

  async ensureIndexes(): Promise<void> {
    await dbCall("api_keys", "createIndexes", (o) => this.keys.createIndex({ keyId: 1 }, { unique: true, name: "keyId_unique", ...o }));
  }

  async insertWorkspace(doc: WorkspaceDoc): Promise<void> {
    await dbCall("workspaces", "insertOne", (o) => this.workspaces.insertOne(doc, o));
  }

  findWorkspace(id: string): Promise<WorkspaceDoc | null> {
    return dbCall("workspaces", "findOne", (o) => this.workspaces.findOne({ _id: id }, o));
  }

  async insertApiKey(doc: ApiKeyDoc): Promise<void> {
    await dbCall("api_keys", "insertOne", (o) => this.keys.insertOne(doc, o));
  }

  findApiKeyByHash(hash: string): Promise<ApiKeyDoc | null> {
    return dbCall("api_keys", "findOne", (o) => this.keys.findOne({ _id: hash }, o));
  }

  async revokeApiKey(keyId: string, at: Date): Promise<ApiKeyDoc | null> {
    await dbCall("api_keys", "updateOne", (o) => this.keys.updateOne({ keyId, revokedAt: null }, { $set: { revokedAt: at } }, o));
    return dbCall("api_keys", "findOne", (o) => this.keys.findOne({ keyId }, o));
  }
}
