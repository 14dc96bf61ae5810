/** An in-memory CustomersRepository with the same observable rules, for handler tests. */
import { Code, ConnectError } from "@connectrpc/connect";
import { newId } from "@linquid/mesh";
import { changes, newCustomerDoc, type CustomerDoc, type MergeMode, type StatsDoc } from "../../src/customer-doc.js";
import type { PageStart } from "../../src/customer-reads.js";
import type { CustomersRepository, StatsResult } from "../../src/customers-repository.js";
import { matchesFilters, type CustomerFilters } from "../../src/filters.js";
import type { CustomerPatch, SortOrder } from "../../src/validation.js";

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

  /** The matching customers in (createdAt, id) order. */
  private matching(workspaceId: string, f: CustomerFilters): CustomerDoc[] {
    const all = [...this.docs.values()].filter((d) => matchesFilters(d, workspaceId, f));
    return all.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a._id < b._id ? -1 : 1));
  }

  async page(workspaceId: string, f: CustomerFilters, order: SortOrder, start: PageStart, limit: number) {
    this.calls.push(`page ${JSON.stringify(start)} ${limit}`);
    const all = this.matching(workspaceId, f);
    if (order === "desc") all.reverse();
    const dir = order === "asc" ? 1 : -1;
    const after = (d: CustomerDoc, p: { t: number; id: string }) => dir * (d.createdAt.getTime() - p.t || (d._id < p.id ? -1 : d._id > p.id ? 1 : 0)) > 0;
    const rest = "from" in start ? all.filter((d) => after(d, start.from)) : all.slice(start.skip);
    const docs = rest.slice(0, limit);
    const spanMs = docs.length === 0 ? 0 : Math.abs(docs[docs.length - 1]!.createdAt.getTime() - ("from" in start ? start.from.t : docs[0]!.createdAt.getTime()));
    return { docs, hasMore: rest.length > limit, spanMs };
  }

  async count(workspaceId: string, f: CustomerFilters) {
    this.calls.push("count");
    return this.matching(workspaceId, f).length;
  }

  async *walk(workspaceId: string, f: CustomerFilters) {
    const all = this.matching(workspaceId, f);
    for (let i = 0; i < all.length; i += 2) {
      this.calls.push(`walk ${i}`);
      yield all.slice(i, i + 2);
    }
  }

  async setStats(workspaceId: string, customerId: string, stats: StatsDoc, version: number): Promise<StatsResult> {
    const d = this.docs.get(customerId);
    if (d === undefined || d.workspaceId !== workspaceId) return "not_found";
    if (d.statsVersion !== null && d.statsVersion >= version) return "stale";
    this.docs.set(customerId, { ...d, stats, statsVersion: version });
    return "applied";
  }

  async setStatsMany(workspaceId: string, items: ReadonlyArray<{ customerId: string; stats: StatsDoc; version: number }>): Promise<number> {
    let applied = 0;
    for (const i of items) if ((await this.setStats(workspaceId, i.customerId, i.stats, i.version)) === "applied") applied++;
    return applied;
  }
}
