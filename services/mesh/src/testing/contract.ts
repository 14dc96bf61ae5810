/**
 * The contract test of the REST API: every answer a test receives through `mesh.request()`
 * is checked against the OpenAPI document the mesh's gateway serves (`GET /openapi.json`), and
 * a difference fails the request, so the document cannot drift from what the gateway sends.
 *
 * For an answer to a documented path and method: its status must be one the operation lists,
 * its content type one that status lists, its body valid against that schema (JSON; each line
 * of NDJSON), and every header the answer documents as required present and valid. A path no
 * operation has must answer 404 NOT_FOUND; a documented path with another method 405
 * METHOD_NOT_ALLOWED with `Allow`, both in the error envelope.
 *
 * Schemas are compiled once per process and document (ajv, JSON Schema 2020-12, formats
 * checked), on first use of each response, so the check costs a test run little.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

// ajv-formats is CommonJS: its function is the default export's default under NodeNext.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (ajv: Ajv2020) => Ajv2020;

export interface RestAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

export interface ContractChecker {
  /** What is wrong with `answer` to `method path` (path below the base path, query included); empty when it matches the document. */
  problems(method: string, path: string, answer: RestAnswer): string[];
}

type Json = Record<string, any>;

interface Template {
  readonly path: string;
  readonly segments: ReadonlyArray<string | null>;
  /** 1 per literal segment: a literal earlier in the path outranks any number of later ones (as the gateway routes). */
  readonly rank: readonly number[];
}

const ENVELOPE_ERROR = {
  type: "object",
  required: ["success", "error"],
  additionalProperties: false,
  properties: {
    success: { const: false },
    error: {
      type: "object",
      required: ["code", "message"],
      additionalProperties: false,
      properties: { code: { type: "string" }, message: { type: "string" }, details: { type: "array" } },
    },
  },
};

const escapePointer = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function createChecker(document: Json): ContractChecker {
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
  addFormats(ajv);
  ajv.addSchema(document, "openapi.json");
  const compiled = new Map<string, ValidateFunction>();
  const validator = (pointer: string): ValidateFunction => {
    let v = compiled.get(pointer);
    if (v === undefined) {
      v = ajv.compile({ $ref: `openapi.json#${pointer}` });
      compiled.set(pointer, v);
    }
    return v;
  };
  const errorEnvelope = ajv.compile(ENVELOPE_ERROR);

  const templates: Template[] = Object.keys(document["paths"] as Json)
    .map((path) => {
      const segments = path.slice(1).split("/").map((s) => (/^\{[^}]+\}$/.test(s) ? null : s));
      return { path, segments, rank: segments.map((s) => (s === null ? 0 : 1)) };
    })
    .sort((a, b) => {
      for (let i = 0; i < Math.min(a.rank.length, b.rank.length); i++) if (a.rank[i] !== b.rank[i]) return b.rank[i]! - a.rank[i]!;
      return 0;
    });

  const match = (rawPath: string): Template | undefined => {
    const raw = rawPath.slice(1).split("/");
    return templates.find((t) => t.segments.length === raw.length && t.segments.every((s, i) => (s === null ? raw[i] !== "" : decode(raw[i]!) === s)));
  };

  const describe = (v: ValidateFunction) => (v.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"}${e.params && "additionalProperty" in e.params ? ` (${String(e.params["additionalProperty"])})` : ""}`).join("; ");

  const parseJson = (text: string): { ok: true; value: unknown } | { ok: false } => {
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch {
      return { ok: false };
    }
  };

  const envelopeProblems = (answer: RestAnswer, code: string): string[] => {
    const body = parseJson(answer.text);
    if (!body.ok) return ["body is not JSON"];
    if (!errorEnvelope(body.value)) return [`not an error envelope: ${describe(errorEnvelope)}`];
    const got = (body.value as Json)["error"]["code"];
    return got === code ? [] : [`code ${String(got)}, expected ${code}`];
  };

  return {
    problems(method, pathAndQuery, answer) {
      const q = pathAndQuery.indexOf("?");
      const rawPath = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
      const template = match(rawPath);
      if (template === undefined) {
        if (answer.status !== 404) return [`no operation has this path, yet the answer is ${answer.status}, not 404`];
        return envelopeProblems(answer, "NOT_FOUND");
      }
      const opPointer = `/paths/${escapePointer(template.path)}/${method.toLowerCase()}`;
      const operation = (document["paths"] as Json)[template.path][method.toLowerCase()] as Json | undefined;
      if (operation === undefined) {
        const problems = answer.status === 405 ? envelopeProblems(answer, "METHOD_NOT_ALLOWED") : [`${template.path} has no ${method} operation, yet the answer is ${answer.status}, not 405`];
        if (answer.status === 405 && answer.headers.get("allow") === null) problems.push("405 without Allow");
        return problems;
      }
      const response = (operation["responses"] as Json)[String(answer.status)] as Json | undefined;
      if (response === undefined) return [`status ${answer.status} is not documented for ${method} ${template.path} (documented: ${Object.keys(operation["responses"] as Json).join(", ")})`];
      const problems: string[] = [];
      const responsePointer = `${opPointer}/responses/${answer.status}`;

      for (const [name, header] of Object.entries((response["headers"] ?? {}) as Json)) {
        const value = answer.headers.get(name);
        if (value === null) {
          if (header["required"] === true) problems.push(`header ${name} missing`);
          continue;
        }
        const v = validator(`${responsePointer}/headers/${escapePointer(name)}/schema`);
        if (!v(/^-?\d+$/.test(value) ? Number(value) : value)) problems.push(`header ${name}: ${JSON.stringify(value)} ${describe(v)}`);
      }

      const content = (response["content"] ?? {}) as Json;
      const mediaType = (answer.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (content[mediaType] === undefined) {
        problems.push(`content type ${mediaType || "(none)"} is not documented for ${answer.status} (documented: ${Object.keys(content).join(", ")})`);
        return problems;
      }
      const v = validator(`${responsePointer}/content/${escapePointer(mediaType)}/schema`);
      if (mediaType === "application/json") {
        const body = parseJson(answer.text);
        if (!body.ok) problems.push("body is not JSON");
        else if (!v(body.value)) problems.push(`body: ${describe(v)}`);
      } else if (mediaType === "application/x-ndjson") {
        // Each line is one record of the documented schema.
        answer.text.split("\n").forEach((line, i) => {
          if (line === "") return;
          const record = parseJson(line);
          if (!record.ok) problems.push(`line ${i + 1} is not JSON`);
          else if (!v(record.value)) problems.push(`line ${i + 1}: ${describe(v)}`);
        });
      } else if (!v(answer.text)) {
        problems.push(`body: ${describe(v)}`);
      }
      return problems;
    },
  };
}

/**
 * One checker per document text, for the whole process: kept on globalThis, which outlives the
 * module registry vitest renews for each test file, so a worker reuses what it compiled.
 */
const checkers: Map<string, ContractChecker> = ((globalThis as Record<symbol, unknown>)[Symbol.for("linquid.contract-checkers")] ??= new Map()) as Map<string, ContractChecker>;

/** The checker of the document the gateway at `api` (its base URL) serves. */
export async function contractOf(api: string): Promise<ContractChecker> {
  const res = await fetch(`${api}/openapi.json`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${api}/openapi.json answered ${res.status}: ${text.slice(0, 200)}`);
  let checker = checkers.get(text);
  if (checker === undefined) {
    checker = createChecker(JSON.parse(text) as Json);
    checkers.set(text, checker);
  }
  return checker;
}
