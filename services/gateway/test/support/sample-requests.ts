import { REST_SERVICES } from "../../src/index.js";
import { buildRoutes } from "../../src/route-table.js";

/** One request per route of the contract, with a body it would accept. */
export const SAMPLE_REQUESTS = buildRoutes(REST_SERVICES).map((r) => {
  // Query parameters a route requires.
  const queries: Record<string, string> = { GetWorkspaceAttribution: "model=linear&group_by=link" };
  const query = r.policy.whenQuery ? `${r.policy.whenQuery.name}=${r.policy.whenQuery.value}` : queries[r.method.name];
  const path = r.template.replace("{id}", "ext_m1") + (query === undefined ? "" : `?${query}`);
  const bodies: Record<string, unknown> = {
    CreateCustomer: { externalId: "m1" },
    UpdateCustomer: { email: "m1@example.com" },
    TrackClick: { clickId: "c1", linkId: "l1" },
    TrackLead: { externalId: "m1" },
    TrackSale: { externalId: "m1", amount: 100, currency: "USD", invoiceId: "inv1" },
    TrackEvent: { externalId: "m1", eventName: "signup" },
    IngestEvents: { events: [{ type: "click", clickId: "c2", linkId: "l1" }] },
  };
  return { rpc: r.method.name, method: r.httpMethod, path, scope: r.policy.scope, body: bodies[r.method.name], streaming: r.stream !== undefined };
});
