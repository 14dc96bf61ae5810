/**
 * A page by number with its total, at the cost of one read where the total would be a scan.
 *
 * A count is cheap for most filters (the live-customer counter, or index entries only), and
 * then the page and the count run side by side. A search is not: no index holds substrings, so
 * its count reads every customer of the workspace (or of the range the other filters leave),
 * and so does its page whenever fewer than `limit + 1` customers match. A search therefore
 * reads its page first: the page asks for up to `limit + 1` matches in list order, so when it
 * comes back with no more to follow, the matches it skipped and the ones it holds are all
 * there are, and the total is their number — one scan instead of two. Otherwise (more matches
 * follow, or a page past the end, which says nothing of how many came before) the count runs
 * after it, as before. Either way the answer is the one a separate count gives.
 */
import type { CustomersRepository } from "./customers-repository.js";
import type { ListPage } from "./customer-reads.js";
import type { CustomerFilters } from "./filters.js";
import type { SortOrder } from "./validation.js";

/** Page `skip / limit + 1` of the customers matching `filters`, and how many match in all. */
export async function pageWithTotal(
  repo: Pick<CustomersRepository, "page" | "count">,
  workspaceId: string,
  filters: CustomerFilters,
  order: SortOrder,
  skip: number,
  limit: number,
): Promise<{ page: ListPage; total: number }> {
  if (filters.search === undefined) {
    const [page, total] = await Promise.all([repo.page(workspaceId, filters, order, { skip }, limit), repo.count(workspaceId, filters)]);
    return { page, total };
  }
  const page = await repo.page(workspaceId, filters, order, { skip }, limit);
  if (!page.hasMore && (skip === 0 || page.docs.length > 0)) return { page, total: skip + page.docs.length };
  return { page, total: await repo.count(workspaceId, filters) };
}
