/**
 * A typed client of the REST API for TypeScript callers: every path, parameter, body and answer
 * typed from the gateway's OpenAPI document (src/schema.ts, generated), calls made by
 * openapi-fetch. Example: docs/clients.md.
 */
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

/** The records of the API (`Customer`, `Cohort`, …) as the gateway sends them. */
export type Schemas = components["schemas"];
export type Customer = Schemas["Customer"];

export interface LinquidClientOptions extends Omit<ClientOptions, "baseUrl" | "headers"> {
  /** The API's URL, base path included, e.g. "http://127.0.0.1:8080/api". */
  readonly baseUrl: string;
  /** An API key (`lw_live_…` or `lw_test_…`), sent as X-API-Key on every request. */
  readonly apiKey?: string;
  /** Further headers sent on every request. */
  readonly headers?: Readonly<Record<string, string>>;
}

export type LinquidClient = Client<paths>;

/** A client of the API at `baseUrl`: `client.GET("/customers", { params: { query: { limit: 10 } } })`. */
export function createLinquidClient(options: LinquidClientOptions): LinquidClient {
  const { apiKey, headers, baseUrl, ...rest } = options;
  return createClient<paths>({
    ...rest,
    baseUrl,
    headers: { ...(apiKey === undefined ? {} : { "x-api-key": apiKey }), ...headers },
  });
}
