/** An in-memory CustomersRepository with the same observable rules, for handler tests. */
import { Code, ConnectError } from "@connectrpc/connect";
import { newId } from "@linquid/mesh";
import { changes, newCustomerDoc, type CustomerDoc, type MergeMode, type StatsDoc } from "../../src/customer-doc.js";
import type { CustomersRepository, StatsResult } from "../../src/customers-repository.js";
import { foldCase } from "../../src/search.js";
import type { CustomerPatch, ListQuery } from "../../src/validation.js";

export class FakeCustomersRepository implements CustomersRepository {
  readonly docs = new Map<string, CustomerDoc>();
  readonly calls: string[] = [];
  private clock = Date.UTC(2026, 0, 1);

  private live(workspaceId: string): CustomerDoc[] {
    return [...this.docs.values()].filter((d) => d.workspaceId === workspaceId && d.deletedAt === null);
  }

  async findLive(workspaceId: string, customerId: string) {
    this.calls.push(`findLive ${customerId}`);
    const d = this.docs.get(customerId);
    return d !== undefined && d.workspaceId === workspaceId && d.deletedAt === null ? d : null;
  }

  async findLiveByExternalId(workspaceId: string, externalId: string) {
    this.calls.push(`findLiveByExternalId ${externalId}`);
    return this.live(workspaceId).find((d) => d.externalId === externalId) ?? null;
  }

  async upsertByExternalId(workspaceId: string, externalId: string, patch: CustomerPatch, mode: MergeMode) {
    this.calls.push(`upsert ${externalId} ${mode}`);
    const cur = await this.findLiveByExternalId(workspaceId, externalId);
    if (cur !== null) {
      const set = changes(cur, patch, mode);
      const doc = set === null ? cur : { ...cur, ...set, rev: cur.rev + 1 };
      this.docs.set(doc._id, doc);
      return { doc, created: false };
    }
    const doc = newCustomerDoc(newId("cus"), workspaceId, externalId, patch, new Date((this.clock += 1000)));
    this.docs.set(doc._id, doc);
    return { doc, created: true };
  }

  async stitchMany(workspaceId: string, items: ReadonlyArray<{ externalId: string; patch: CustomerPatch }>) {
    const out = [];
    for (const it of items) out.push(await this.upsertByExternalId(workspaceId, it.externalId, it.patch, "fill"));
    return out;
  }

  async update(workspaceId: string, customerId: string, patch: CustomerPatch) {
    this.calls.push(`update ${customerId} ${JSON.stringify(patch)}`);
    const cur = await this.findLive(workspaceId, customerId);
    if (cur === null) return null;
    if (patch.externalId !== undefined && patch.externalId !== cur.externalId && this.live(workspaceId).some((d) => d.externalId === patch.externalId)) {
      throw new ConnectError("externalId already belongs to another customer", Code.AlreadyExists);
    }
    const set = changes(cur, patch, "overwrite");
    const doc = set === null ? cur : { ...cur, ...set, rev: cur.rev + 1 };
    this.docs.set(doc._id, doc);
    return doc;
  }

  async softDelete(workspaceId: string, customerId: string) {
    this.calls.push(`softDelete ${customerId}`);
    const cur = await this.findLive(workspaceId, customerId);
    if (cur === null) return null;
    this.docs.set(customerId, { ...cur, deletedAt: new Date(), externalId: null, email: null, name: null, avatar: null, metadataJson: null, search: [] });
    return cur;
  }

  async list(workspaceId: string, q: ListQuery) {
    this.calls.push(`list ${JSON.stringify(q)}`);
    const all = this.live(workspaceId).filter((d) => q.search === undefined || d.search.some((s) => s.includes(foldCase(q.search!))));
    all.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a._id < b._id ? -1 : 1));
    if (q.sortOrder === "desc") all.reverse();
    return { docs: all.slice((q.page - 1) * q.limit, q.page * q.limit), total: all.length };
  }

  async count(workspaceId: string, search: string | undefined) {
    return (await this.list(workspaceId, { page: 1, limit: 1, sortOrder: "asc", search })).total;
  }

  async setStats(workspaceId: string, customerId: string, stats: StatsDoc, version: number): Promise<StatsResult> {
    const d = this.docs.get(customerId);
    if (d === undefined || d.workspaceId !== workspaceId) return "not_found";
    if (d.statsVersion !== null && d.statsVersion >= version) return "stale";
    this.docs.set(customerId, { ...d, stats, statsVersion: version });
    return "applied";
  }
}
