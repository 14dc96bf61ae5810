/** The reporting currency of each workspace, asked of the workspaces service once per process. */
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { WorkspacesService } from "@linquid/contracts";
import { isUnavailable, unavailable } from "@linquid/mesh";

export class WorkspaceCurrencies {
  private readonly cache = new Map<string, string>();

  constructor(private readonly workspaces: () => Client<typeof WorkspacesService>) {}

  /** The workspace's reporting currency (it never changes, so it is cached for good). */
  async of(ws: string): Promise<string> {
    const hit = this.cache.get(ws);
    if (hit !== undefined) return hit;
    let currency: string;
    try {
      const res = await this.workspaces().getWorkspace({ id: ws });
      currency = res.workspace?.currency ?? "USD";
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.NotFound) throw new ConnectError("workspace not found", Code.NotFound);
      if (isUnavailable(ce)) throw unavailable("workspaces service", ce);
      throw ce;
    }
    this.cache.set(ws, currency);
    return currency;
  }
}
