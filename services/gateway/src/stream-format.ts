/**
 * How a streaming route writes its records (route-table.ts StreamSpec), driven only by the
 * record's descriptor:
 *
 * - NDJSON (`application/x-ndjson`): one record per line, in exactly the REST JSON form the
 *   other routes answer with (transcoder.ts restJson).
 * - CSV (`text/csv`, RFC 4180): a header row, then one row per record, lines ending in CRLF.
 *   Columns are the record's fields in declaration order by JSON name; a nested message (not a
 *   well-known type) becomes one column per field of its own (`stats.leads`); a Struct, a list
 *   or a map is one column holding its JSON; a timestamp its RFC 3339 text; an unset field an
 *   empty cell. A cell holding a comma, a quote, CR or LF is quoted, quotes doubled. A cell
 *   that comes from text (a string, JSON) and starts with `=`, `+`, `-`, `@`, a tab or CR gets
 *   a leading `'`, so a spreadsheet never runs it as a formula (OWASP, CSV injection).
 */
import { ScalarType, type DescField, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { recordJson } from "./record-json.js";

export type StreamFormat = "ndjson" | "csv";

export interface RecordWriter {
  readonly contentType: string;
  /** Written before the first record ("" for none). */
  readonly head: string;
  /** The text of a batch of records. */
  rows(records: readonly Message[]): string;
}

/** The format a request asks for: the value of the route's format field, NDJSON when unset. */
export function streamFormatOf(value: unknown): StreamFormat {
  return value === "csv" ? "csv" : "ndjson";
}

export function recordWriter(record: DescMessage, format: StreamFormat): RecordWriter {
  return format === "csv" ? csvWriter(record) : ndjsonWriter(record);
}

function ndjsonWriter(record: DescMessage): RecordWriter {
  const json = recordJson(record);
  return {
    contentType: "application/x-ndjson",
    head: "",
    rows: (records) => {
      let text = "";
      for (const r of records) text += `${JSON.stringify(json(r))}\n`;
      return text;
    },
  };
}

interface Column {
  readonly name: string;
  /** JSON names from the record down to the value. */
  readonly path: readonly string[];
  /** Whether the value is written as text the record's user supplied (guarded against formulas). */
  readonly text: boolean;
}

function isWellKnown(desc: DescMessage): boolean {
  return desc.typeName.startsWith("google.protobuf.");
}

/** The CSV columns of a message type, nested messages flattened. */
export function csvColumns(desc: DescMessage, prefix: readonly string[] = []): Column[] {
  const out: Column[] = [];
  for (const field of desc.fields) {
    const path = [...prefix, field.jsonName];
    if (field.fieldKind === "message" && !isWellKnown(field.message)) out.push(...csvColumns(field.message, path));
    else out.push({ name: path.join("."), path, text: isText(field) });
  }
  return out;
}

function isText(field: DescField): boolean {
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar === ScalarType.STRING;
    case "enum":
      return false;
    default:
      return true; // JSON text of a Struct, list or map; timestamps never start with a formula character
  }
}

const FORMULA_START = /^[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;

/** One CSV cell: formula-guarded when it comes from text, quoted when it must be. */
export function csvCell(value: JsonValue | undefined, text: boolean): string {
  if (value === null || value === undefined) return "";
  let s = typeof value === "object" ? JSON.stringify(value) : String(value);
  if (text && FORMULA_START.test(s)) s = `'${s}`;
  return NEEDS_QUOTES.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csvWriter(record: DescMessage): RecordWriter {
  const columns = csvColumns(record);
  const recordJsonOf = recordJson(record);
  const row = (cells: string[]) => `${cells.join(",")}\r\n`;
  return {
    contentType: "text/csv; charset=utf-8",
    head: row(columns.map((c) => csvCell(c.name, false))),
    rows: (records) =>
      records
        .map((r) => {
          const json = recordJsonOf(r);
          return row(
            columns.map((c) => {
              let v: JsonValue | undefined = json;
              for (const k of c.path) v = v !== null && typeof v === "object" && !Array.isArray(v) ? v[k] : undefined;
              return csvCell(v, c.text);
            }),
          );
        })
        .join(""),
  };
}
