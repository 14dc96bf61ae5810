import { createLinquidClient, type Customer } from "@linquid/client";

/** Creates a customer, records a sale for it (safe to retry), and reads it back from the list. */
export async function restClientExample(baseUrl: string, apiKey: string): Promise<{ customer: Customer; revenue: number; listed: number }> {
  // baseUrl includes the base path, e.g. "http://127.0.0.1:8080/api".
  const api = createLinquidClient({ baseUrl, apiKey });

  const created = await api.POST("/customers", { body: { externalId: "user-42", email: "ada@example.com", name: "Ada" } });
  if (created.error !== undefined) throw new Error(`${created.error.error.code}: ${created.error.error.message}`);
  const customer = created.data.data; // a Customer: every field typed, unset ones null

  // The Idempotency-Key makes the retry of a POST safe: a second send changes nothing.
  const sale = await api.POST("/track/sale", {
    params: { header: { "Idempotency-Key": "sale-inv-1001" } },
    body: { externalId: "user-42", amount: 4900, currency: "USD", invoiceId: "inv-1001" },
  });
  if (sale.error !== undefined) throw new Error(sale.error.error.message);

  const read = await api.GET("/customers/{id}", { params: { path: { id: customer.id } } });
  if (read.error !== undefined) throw new Error(read.error.error.message);

  const page = await api.GET("/customers", { params: { query: { limit: 10, sortOrder: "desc" } } });
  if (page.error !== undefined) throw new Error(page.error.error.message);
  return { customer, revenue: read.data.data.stats?.revenue ?? 0, listed: page.data.data.length };
}
