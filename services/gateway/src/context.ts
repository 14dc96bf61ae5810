/**
 * The typed state one REST request carries through the policy chain (pipeline.ts). Each
 * policy reads what earlier ones left and adds its own result; this module is the one
 * place those keys are defined.
 */
import type { Message } from "@bufbuild/protobuf";
import type { MatchedRoute } from "./route-table.js";

/** Who is calling: resolved from the API key by the auth policy. The key itself never leaves auth. */
export interface Principal {
  readonly workspaceId: string;
  readonly keyId: string;
  /** The key's scopes, with `links:write` already expanded. */
  readonly scopes: ReadonlySet<string>;
  readonly entitlements: ReadonlySet<string>;
  /** Requests per hour; null = unlimited. */
  readonly rateLimit: number | null;
}

/** An answer: status and the JSON text of the body, or (streaming routes) a body written piece by piece. */
export interface Answer {
  readonly status: number;
  readonly body: string;
  /** Set on streaming answers, whose `body` is "": server.ts writes it with backpressure. */
  readonly stream?: StreamingBody;
  /** The envelope's error code of an error answer (for the access line and metrics). */
  readonly code?: string;
}

/** A response body produced as the client takes it. */
export interface StreamingBody {
  readonly contentType: string;
  /**
   * Pieces of the body; each is asked for once the client has taken the previous one.
   * `return()` ends the producer, whether or not a piece was asked for yet.
   */
  readonly chunks: AsyncIterator<string, void, undefined> & { return(value?: undefined): Promise<IteratorResult<string, void>> };
}

export interface GatewayRequest {
  /** Upper-case HTTP method. */
  readonly method: string;
  /** Raw path below the API base path, e.g. "/customers/cus_1", not decoded. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Request headers, names lower-case. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Every line of each header, names lower-case (`headers` keeps one Authorization only), where the server has them. */
  readonly headersDistinct?: Readonly<Record<string, string[] | undefined>>;
  /** Reads the body once, enforcing the size limit (413 PAYLOAD_TOO_LARGE). */
  readonly readBody: () => Promise<Buffer>;
  /** Headers every answer to this request carries, errors included (request id, budget, cache). */
  readonly responseHeaders: Map<string, string>;
  /** Aborted when the client goes away before the answer is complete. */
  readonly signal?: AbortSignal;

  /** Set by request-id. */
  requestId?: string;
  /** Set by routing. */
  route?: MatchedRoute;
  /** Set by the reference: the path of one of the gateway's own pages, a label like a route's. */
  ownRoute?: string;
  /** Set by auth. */
  principal?: Principal;
  /** Set by decode: the RPC request, workspace filled in from the principal. */
  rpcRequest?: Message;
  /** Set by decode: the known query parameters, normalized, for the cache key. */
  canonicalQuery?: string;
  /** Set when the connection must close after the answer (e.g. an unread oversized body). */
  closeConnection?: boolean;
}

/** One policy: may answer itself, or call `next` and adjust what comes back. Throws HttpError to refuse. */
export type Step = (req: GatewayRequest, next: () => Promise<Answer>) => Promise<Answer>;
