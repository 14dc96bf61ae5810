/**
 * The workspace attribution report (GET /analytics/attribution) from the cells kept at write
 * time (attribution-cells.ts), taking the model's figures from each: without a range, the
 * all-time cells of the dimension (`O(keys)` documents); with one, the day cells of its days and the return cells of its days
 * whose previous day is before its start (`O(days × keys)` documents, plus one per returning
 * customer-day pattern), summed per key. Never a scan of raw events.
 */
import type { Model } from "./attribution.js";
import type { AttributionDimension } from "./attribution-cells.js";
import type { AnalyticsRepository, AttributionCellDoc } from "./repository.js";

export interface AttributionReportRow {
  key: string | null;
  revenue: number;
  sales: number;
  customers: number;
}

/** Days are "YYYY-MM-DD" (UTC); both bounds inclusive, either may be open. */
export async function workspaceAttribution(
  repo: AnalyticsRepository,
  ws: string,
  model: Model,
  dim: AttributionDimension,
  range: { startDay: string | undefined; endDay: string | undefined },
): Promise<AttributionReportRow[]> {
  const rows = new Map<string, AttributionReportRow>();
  const add = (cells: readonly AttributionCellDoc[], withAmounts: boolean) => {
    for (const c of cells) {
      const figures = c[model];
      if (figures === undefined) continue;
      const id = JSON.stringify(c.key);
      const row = rows.get(id) ?? { key: c.key, revenue: 0, sales: 0, customers: 0 };
      if (withAmounts) {
        row.revenue += figures.revenue ?? 0;
        row.sales += figures.sales ?? 0;
      }
      row.customers += figures.customers ?? 0;
      rows.set(id, row);
    }
  };
  if (range.startDay === undefined && range.endDay === undefined) add(await repo.attributionCellsOf(ws, dim, model), true);
  else {
    const from = range.startDay ?? "0000-00-00";
    const to = range.endDay ?? "9999-99-99";
    const [days, returns] = await Promise.all([repo.attributionDayCellsOf(ws, dim, from, to, model), repo.attributionReturnCellsOf(ws, dim, from, to, model)]);
    add(days, true);
    add(returns, false);
  }
  return [...rows.values()]
    .filter((r) => r.sales > 0)
    .sort((a, b) => b.revenue - a.revenue || (a.key === null ? 1 : b.key === null ? -1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
