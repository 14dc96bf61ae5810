/**
 * A seeded generator of malformed and odd REST requests, and the checks every answer to one
 * must pass: never a 5xx, always the JSON envelope with X-Request-Id, never a stack trace or
 * a file path. Used against the gateway with a stand-in upstream and against the full mesh.
 */
import { request as httpRequest, Agent } from "node:http";
import fc from "fast-check";

export interface FuzzRequest {
  readonly method: string;
  /** Sent exactly as written (node:http does not normalize it). */
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

export interface FuzzKeys {
  /** A key with every scope on an unlimited pro workspace. */
  readonly good: string;
  /** A revoked key. */
  readonly revoked: string;
  /** A key of a starter workspace. */
  readonly starter: string;
  /** A key of a workspace with a tiny budget. */
  readonly limited: string;
}

const hugeBody = `{"externalId":"h","metadata":{"pad":"${"p".repeat(1024 * 1024)}"}}`;

const ids = ["cus_1", "ext_m1", "ext_", "%00", "%2e%2e", "..", "%2e", "%2F", "a%2Fb", "%zz", "%", "%E2%9C%93", "%F0%9F%98%80", "ext_%C3%A9", "%C0%AF", "ext_%22%3E%3Cscript%3E", "x".repeat(3000), "ext_%24gt", "%20", "null", "undefined", "__proto__", "constructor", "count", "cohorts"];
const paths = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("/customers", "/customers", "/customers/count", "/customers/cohorts", "/customers/ltv-cohorts", "/track/click", "/track/lead", "/track/sale", "/track/event") },
  fc.constantFrom("/customers", "/customers/count", "/customers/cohorts", "/customers/ltv-cohorts", "/track/click", "/track/lead", "/track/sale", "/track/event", "/track", "/", "", "//customers", "/customers/", "/customers//journey", "/CUSTOMERS", "/customers/../customers", "/customers/%2e%2e/%2e%2e/healthz", "/%00", "/customers;x=1", "/customers%00"),
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...ids), fc.constantFrom("", "", "/journey", "/attribution", "/recalculate-ltv", "/journey/", "/x", "/journey/extra")).map(([id, tail]) => `/customers/${id}${tail}`) },
  fc.stringMatching(/^\/[a-z%0-9./_-]{0,40}$/),
);

const someId = fc.oneof({ weight: 3, arbitrary: fc.constantFrom("cus_1", "ext_m1", "ext_m2") }, { weight: 1, arbitrary: fc.constantFrom(...ids) });
/** Method and path that fit one of the contract's routes, so most requests get past routing. */
const routed: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.constantFrom<[string, string]>(["GET", "/customers"], ["POST", "/customers"], ["GET", "/customers/count"], ["GET", "/customers/cohorts"], ["GET", "/customers/ltv-cohorts"], ["POST", "/track/click"], ["POST", "/track/lead"], ["POST", "/track/sale"], ["POST", "/track/event"]),
  fc.tuple(fc.constantFrom(["GET", ""], ["PATCH", ""], ["DELETE", ""], ["POST", "/recalculate-ltv"], ["GET", "/journey"], ["GET", "/attribution"]), someId).map(([[m, tail], id]): [string, string] => [m, `/customers/${id}${tail}`]),
);

const queryValues = fc.constantFrom("1", "0", "-1", "101", "1.5", "abc", "", "1e3", "99999999999999999999", "true", "false", "maybe", "asc", "ASC", "week", "year", "%00", "%E2%9C%93", "2026-01-01", "2026-13-45", "%5B%5D", "[$gt]", "%7B%22%24gt%22%3A%22%22%7D");
const queryNames = fc.constantFrom("page", "limit", "sortOrder", "sort_order", "search", "group_by", "groupBy", "start", "end", "months", "summary", "workspace_id", "workspaceId", "search[$regex]", "limit[$gt]", "x", "__proto__");
const query = fc.array(fc.tuple(queryNames, queryValues), { maxLength: 4 }).map((pairs) => (pairs.length === 0 ? "" : "?" + pairs.map(([k, v]) => `${encodeURIComponent(k)}=${v}`).join("&")));

const jsonish = fc.jsonValue({ maxDepth: 3 });
const fieldNames = fc.constantFrom("externalId", "external_id", "email", "name", "avatar", "country", "clickId", "metadata", "amount", "currency", "invoiceId", "eventName", "eventId", "timestamp", "linkId", "workspaceId", "workspace_id", "updateMask", "id", "$where", "__proto__", "constructor", "unknownField");
const operatorObjects = fc.constantFrom({ $gt: "" }, { $ne: null }, { $regex: ".*" }, { $where: "1" }, { "a.b": 1 }, { $set: { x: 1 } });
const bodies = fc.oneof(
  { weight: 3, arbitrary: fc.dictionary(fieldNames, fc.oneof(jsonish, operatorObjects), { maxKeys: 5 }).map((o) => JSON.stringify(o)) },
  { weight: 1, arbitrary: fc.constantFrom("{", "}", "{'a':1}", '{"a":}', "[]", "[1,2]", "null", "true", "42", '"s"', "\u0000", "{\"externalId\":\"\\ud800\"}", '{"externalId":"x",}', "\uFEFF{}", '{"a":1}{"b":2}', "[".repeat(5000) + "]".repeat(5000), '{"metadata":' + '{"a":'.repeat(200) + "1" + "}".repeat(200) + "}") },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);
const contentTypes = fc.oneof({ weight: 6, arbitrary: fc.constant("application/json") }, { weight: 1, arbitrary: fc.constantFrom("application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "", "multipart/form-data; boundary=x", "application/vnd.api+json") });

export function fuzzRequests(keys: FuzzKeys, count: number, seed: number): FuzzRequest[] {
  const keyHeaders = fc.oneof({ weight: 3, arbitrary: fc.constantFrom<Record<string, string>>({ "x-api-key": keys.good }, { authorization: `Bearer ${keys.good}` }) }, { weight: 1, arbitrary: fc.constantFrom<Record<string, string>>(
    { "x-api-key": keys.revoked },
    { "x-api-key": keys.starter },
    { "x-api-key": keys.limited },
    {},
    { "x-api-key": "lw_live_short" },
    { "x-api-key": keys.good.slice(0, -1) + (keys.good.endsWith("A") ? "B" : "A") },
    { "x-api-key": "sk_live_" + "a".repeat(43) },
    { authorization: "Basic Zm9vOmJhcg==" },
    { authorization: "Bearer" },
    { "x-api-key": "%00" },
  ) });
  const req = fc
    .record({
      target: fc.oneof(
        { weight: 3, arbitrary: routed },
        { weight: 1, arbitrary: fc.tuple<[string, string]>(fc.constantFrom("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", "TRACE", "get"), paths) },
      ),
      base: fc.oneof({ weight: 12, arbitrary: fc.constant("/api") }, { weight: 1, arbitrary: fc.constantFrom("/API", "", "/api/v1", "/healthz/..", "/api/.", "/ap%69") }),
      query,
      keyHeaders,
      contentType: contentTypes,
      body: bodies,
      requestId: fc.constantFrom(undefined, "rid-1", "", "x".repeat(200), "tab\tchar", "ok_id-123"),
      huge: fc.integer({ min: 0, max: 99 }).map((n) => n === 0),
    })
    .map(({ target: [method, path], base, query, keyHeaders, contentType, body, requestId, huge }): FuzzRequest => {
      const headers: Record<string, string> = { ...keyHeaders };
      if (contentType !== "") headers["content-type"] = contentType;
      if (requestId !== undefined) headers["x-request-id"] = requestId;
      return { method, path: `${base}${path}${query}`, headers, body: huge ? hugeBody : body };
    });
  return fc.sample(req, { numRuns: count, seed });
}

export interface FuzzAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** Sends a request byte-for-byte as generated. */
export function sendRaw(baseUrl: string, r: FuzzRequest, agent: Agent): Promise<FuzzAnswer> {
  const url = new URL(baseUrl);
  // node:http frames bodies of GET/DELETE/HEAD/OPTIONS only with an explicit length; HEAD cannot carry one at all.
  const body = r.method.toUpperCase() === "HEAD" ? undefined : r.body;
  const headers = body === undefined ? r.headers : { ...r.headers, "content-length": String(Buffer.byteLength(body)) };
  return new Promise((resolve, reject) => {
    let req;
    try {
      req = httpRequest({ host: url.hostname, port: url.port, method: r.method, path: r.path === "" ? "/" : r.path, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      });
    } catch (err) {
      // node:http refuses some header values client-side; such a request never reaches the gateway.
      resolve({ status: -1, headers: {}, text: String(err) });
      return;
    }
    req.on("error", reject);
    req.end(body);
  });
}

/** Problems with one answer; empty when it is fine. */
export function problemsOf(r: FuzzRequest, a: FuzzAnswer): string[] {
  if (a.status === -1) return [];
  const out: string[] = [];
  if (a.status >= 500) out.push(`status ${a.status}`);
  if (typeof a.headers["x-request-id"] !== "string" || a.headers["x-request-id"] === "") out.push("no X-Request-Id");
  if (/\bat [\w.<>]+ \(|\bat (file:|node:|\/)|\/work\/|node_modules|\.ts:\d+|\.js:\d+/.test(a.text)) out.push("stack trace or file path in body");
  if (r.method === "HEAD") return out;
  let body: unknown;
  try {
    body = JSON.parse(a.text);
  } catch {
    out.push("body is not JSON");
    return out;
  }
  if (!String(a.headers["content-type"] ?? "").startsWith("application/json")) out.push("content-type is not JSON");
  const isHealth = typeof body === "object" && body !== null && "status" in body;
  if (!isHealth) {
    const b = body as { success?: unknown; error?: { code?: unknown; message?: unknown } };
    if (typeof b.success !== "boolean") out.push("no success flag");
    if (b.success === false && (typeof b.error?.code !== "string" || typeof b.error?.message !== "string")) out.push("error without code/message");
  }
  return out;
}

/** Runs requests with bounded concurrency; returns failures (request, answer, problems). */
export async function runFuzz(baseUrl: string, requests: readonly FuzzRequest[], concurrency = 8): Promise<{ statuses: Map<number, number>; failures: Array<{ r: FuzzRequest; status: number; text: string; problems: string[] }> }> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = new Map<number, number>();
  const failures: Array<{ r: FuzzRequest; status: number; text: string; problems: string[] }> = [];
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const r = requests[next++]!;
      let a: FuzzAnswer;
      try {
        a = await sendRaw(baseUrl, r, agent);
      } catch (err) {
        failures.push({ r: { ...r, body: r.body?.slice(0, 200) }, status: 0, text: String(err), problems: ["connection failed"] });
        continue;
      }
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      const problems = problemsOf(r, a);
      if (problems.length > 0) failures.push({ r: { ...r, body: r.body?.slice(0, 200) }, status: a.status, text: a.text.slice(0, 300), problems });
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return { statuses, failures };
}
