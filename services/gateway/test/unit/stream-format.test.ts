import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CustomerSchema } from "@linquid/contracts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { csvCell, csvColumns, recordWriter, streamFormatOf } from "../../src/stream-format.js";

/** RFC 4180 parse of one line without a line break. */
function parseRow(line: string): string[] {
  const out: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') (cell += '"'), i++;
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") out.push(cell), (cell = "");
    else cell += ch;
  }
  out.push(cell);
  return out;
}

describe("CSV cells", () => {
  it.each([
    ["plain", "plain"],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ["two\nlines", '"two\nlines"'],
    ["cr\rhere", '"cr\rhere"'],
    ["=1+1", "'=1+1"],
    ["+1", "'+1"],
    ["-1", "'-1"],
    ["@SUM(A1)", "'@SUM(A1)"],
    ["\tx", "'\tx"],
    ["\rx", `"'\rx"`],
    ['=HYPERLINK("http://evil")', `"'=HYPERLINK(""http://evil"")"`],
    ["", ""],
  ])("writes text %j as %j", (value, cell) => {
    expect(csvCell(value, true)).toBe(cell);
  });

  it("leaves numbers and nulls as they are, and writes objects as JSON text", () => {
    expect(csvCell(-5, false)).toBe("-5");
    expect(csvCell(null, true)).toBe("");
    expect(csvCell(undefined, true)).toBe("");
    expect(csvCell({ a: "x,y" }, true)).toBe('"{""a"":""x,y""}"');
  });

  it("round-trips any text through an RFC 4180 parser, formulas neutralised (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "binary" }), { minLength: 1, maxLength: 5 }), (cells) => {
        const line = cells.map((c) => csvCell(c, true)).join(",");
        const parsed = parseRow(line);
        expect(parsed).toEqual(cells.map((c) => (/^[=+\-@\t\r]/.test(c) ? `'${c}` : c)));
        for (const c of parsed) expect(c).not.toMatch(/^[=+\-@\t\r]/);
      }),
    );
  }, 30_000); // a property of many runs: no wall-clock budget of a single assertion
});

describe("record writers", () => {
  const at = timestampFromDate(new Date("2026-04-01T12:00:00Z"));
  const customer = create(CustomerSchema, { id: "cus_1", externalId: "=cmd", name: "A, B", metadata: { plan: "pro", n: 2 }, createdAt: at, updatedAt: at, stats: { leads: 3n, revenue: 1999n, currency: "USD" } });

  it("derive CSV columns from the record's descriptor, nested messages flattened", () => {
    expect(csvColumns(CustomerSchema).map((c) => c.name)).toEqual([
      "id", "externalId", "email", "name", "avatar", "country", "clickId", "metadata", "createdAt", "updatedAt",
      "stats.leads", "stats.sales", "stats.revenue", "stats.currency", "stats.firstSeenAt", "stats.lastSeenAt",
    ]);
  });

  it("write CSV with a header and CRLF rows, and NDJSON in the REST JSON form", () => {
    const csv = recordWriter(CustomerSchema, "csv");
    expect(csv.contentType).toBe("text/csv; charset=utf-8");
    expect(csv.head).toBe(`${csvColumns(CustomerSchema).map((c) => c.name).join(",")}\r\n`);
    const text = csv.rows([customer, customer]);
    const lines = text.split("\r\n");
    expect(lines).toHaveLength(3);
    expect(parseRow(lines[0]!)).toEqual(["cus_1", "'=cmd", "", "A, B", "", "", "", '{"plan":"pro","n":2}', "2026-04-01T12:00:00Z", "2026-04-01T12:00:00Z", "3", "0", "1999", "USD", "", ""]);
    const nd = recordWriter(CustomerSchema, "ndjson");
    expect(nd.contentType).toBe("application/x-ndjson");
    expect(nd.head).toBe("");
    const rows = nd.rows([customer]).split("\n");
    expect(rows[1]).toBe("");
    expect(JSON.parse(rows[0]!)).toMatchObject({ id: "cus_1", externalId: "=cmd", email: null, metadata: { plan: "pro", n: 2 }, stats: { leads: 3, revenue: 1999, currency: "USD", firstSeenAt: null } });
  });

  it("pick the format from the request's value, NDJSON when unset", () => {
    expect([streamFormatOf("csv"), streamFormatOf("ndjson"), streamFormatOf(undefined)]).toEqual(["csv", "ndjson", "ndjson"]);
  });
});
