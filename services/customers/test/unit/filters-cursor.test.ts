import { Violations } from "@linquid/mesh";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CursorCodec, type CursorScope } from "../../src/cursor.js";
import { newCustomerDoc } from "../../src/customer-doc.js";
import { canonicalFilters, checkFilters, matchesFilters, metadataTerm, metadataTerms, metadataText, parseDateTime, type FilterFields } from "../../src/filters.js";

function check(fields: FilterFields) {
  const v = new Violations();
  const f = checkFilters(v, fields);
  return { f, fields: v.all.map((x) => x.field) };
}

describe("filter validation", () => {
  it.each([
    ["2026-04-01T10:00:00Z", Date.UTC(2026, 3, 1, 10)],
    ["2026-04-01T10:00:00.123Z", Date.UTC(2026, 3, 1, 10, 0, 0, 123)],
    ["2026-04-01T12:30:00+02:30", Date.UTC(2026, 3, 1, 10)],
    ["2026-04-01T00:00:00-05:00", Date.UTC(2026, 3, 1, 5)],
    ["2024-02-29T23:59:59Z", Date.UTC(2024, 1, 29, 23, 59, 59)],
  ])("parses %s", (text, ms) => {
    expect(parseDateTime(text, "floor")).toBe(ms);
    expect(parseDateTime(text, "ceil")).toBe(ms);
  });

  it.each(["2026-04-01", "2026-04-01T10:00Z", "2026-04-01 10:00:00Z", "2026-04-01T10:00:00", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-04-01T24:00:00Z", "2026-04-01T10:60:00Z", "2026-04-01T10:00:00+24:00", "x", ""])(
    "refuses %j",
    (text) => {
      expect(parseDateTime(text, "floor")).toBeUndefined();
    },
  );

  it("keeps sub-millisecond bounds exact: after rounds down, before rounds up", () => {
    const t = Date.UTC(2026, 3, 1, 10, 0, 0, 5);
    expect(parseDateTime("2026-04-01T10:00:00.0051Z", "floor")).toBe(t);
    expect(parseDateTime("2026-04-01T10:00:00.0051Z", "ceil")).toBe(t + 1);
    expect(parseDateTime("2026-04-01T10:00:00.005000000Z", "ceil")).toBe(t);
  });

  it("reports every bad filter by its REST name, never clamping", () => {
    expect(check({ createdAfter: "2026-04-02T00:00:00Z", createdBefore: "2026-04-01T00:00:00Z" }).fields).toEqual(["createdAfter"]);
    expect(check({ createdAfter: "soon", createdBefore: "later", country: "ZZ" }).fields).toEqual(["createdAfter", "createdBefore", "country"]);
    expect(check({ metadata: { a: "1", b: "1", c: "1", d: "1", e: "1", f: "1" } }).fields).toEqual(["metadata"]);
    expect(check({ metadata: { "": "x" } }).fields).toEqual(["metadata[]"]);
    expect(check({ search: "a\u0000" }).fields).toEqual(["search"]);
    const ok = check({ country: "gb", search: "", metadata: { b: "2", a: "1" } });
    expect(ok.fields).toEqual([]);
    expect(ok.f).toEqual({ search: undefined, createdAfter: undefined, createdBefore: undefined, country: "GB", metadata: [["a", "1"], ["b", "2"]] });
  });

  it("has one canonical form per set of filters, whatever the order of the metadata keys", () => {
    const a = check({ metadata: { x: "1", y: "2" }, country: "us" }).f;
    const b = check({ country: "US", metadata: { y: "2", x: "1" } }).f;
    expect(canonicalFilters(a)).toBe(canonicalFilters(b));
    expect(canonicalFilters(a)).not.toBe(canonicalFilters(check({ country: "US", metadata: { y: "2", x: "2" } }).f));
  });
});

describe("metadata matching", () => {
  it("matches values by their text, keys as data only", () => {
    expect([metadataText("a"), metadataText(30), metadataText(1.5), metadataText(true), metadataText(null)]).toEqual(["a", "30", "1.5", "true", "null"]);
    expect(metadataText(undefined)).toBeUndefined();
    const meta = JSON.parse('{"__proto__": "p", "constructor": "c", "$where": "w", "a.b": "d", "n": 30}') as Record<string, unknown>;
    const doc = newCustomerDoc("cus_1", "ws_1", "e1", { metadata: meta as never }, new Date(1000));
    const f = (metadata: Array<[string, string]>) => ({ search: undefined, createdAfter: undefined, createdBefore: undefined, country: undefined, metadata });
    expect(matchesFilters(doc, "ws_1", f([["__proto__", "p"], ["constructor", "c"], ["$where", "w"], ["a.b", "d"], ["n", "30"]]))).toBe(true);
    expect(matchesFilters(doc, "ws_1", f([["toString", "x"]]))).toBe(false);
    expect(matchesFilters(doc, "ws_1", f([["hasOwnProperty", "function hasOwnProperty() { [native code] }"]]))).toBe(false);
    expect(matchesFilters(doc, "ws_2", f([]))).toBe(false);
    expect(metadataTerms(meta as never)).toHaveLength(5);
    expect(metadataTerms(meta as never)).toContain(metadataTerm("__proto__", "p"));
  });

  it("gives distinct terms to distinct (key, value) pairs, even when their concatenations agree", () => {
    expect(metadataTerm("a\u0000b", "c")).not.toBe(metadataTerm("a", "b\u0000c"));
    expect(metadataTerm("ab", "c")).not.toBe(metadataTerm("a", "bc"));
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (k1, v1, k2, v2) => {
        fc.pre(k1 !== k2 || v1 !== v2);
        expect(metadataTerm(k1, v1)).not.toBe(metadataTerm(k2, v2));
      }),
    );
  });
});

describe("cursors", () => {
  const codec = new CursorCodec([Buffer.alloc(32, 1)]);
  const scope: CursorScope = { workspaceId: "ws_1", sortOrder: "desc", filters: "[]" };
  const pos = { t: 1_796_000_000_123, id: "cus_abcDEF123", span: 4000 };

  it("round-trip within their scope only", () => {
    const c = codec.encode(pos, scope);
    expect(codec.decode(c, scope)).toEqual(pos);
    expect(codec.decode(c, { ...scope, workspaceId: "ws_2" })).toBeNull();
    expect(codec.decode(c, { ...scope, sortOrder: "asc" })).toBeNull();
    expect(codec.decode(c, { ...scope, filters: '["x"]' })).toBeNull();
    expect(new CursorCodec([Buffer.alloc(32, 2)]).decode(c, scope)).toBeNull();
    // A second key verifies (rotation).
    expect(new CursorCodec([Buffer.alloc(32, 2), Buffer.alloc(32, 1)]).decode(c, scope)).toEqual(pos);
  });

  it("refuse every alteration (property)", () => {
    const c = codec.encode(pos, scope);
    fc.assert(
      fc.property(fc.nat({ max: c.length - 1 }), fc.constantFrom(..."ABCabc019-_.="), (i, ch) => {
        fc.pre(c[i] !== ch);
        expect(codec.decode(c.slice(0, i) + ch + c.slice(i + 1), scope)).toBeNull();
      }),
    );
    for (const bad of ["", ".", "a.b", `${c}x`, c.replace(".", ""), `${c.split(".")[0]}.${"A".repeat(22)}`]) expect(codec.decode(bad, scope)).toBeNull();
  });

  it("refuse well-signed payloads of the wrong shape", () => {
    // Signs any payload with the codec's own MAC, as only a holder of the key could.
    const sign = (value: unknown) => {
      const payload = Buffer.from(JSON.stringify(value)).toString("base64url");
      const mac = (codec as unknown as { mac(k: Buffer, p: string, s: CursorScope): Buffer }).mac(Buffer.alloc(32, 1), payload, scope);
      return `${payload}.${mac.toString("base64url")}`;
    };
    expect(codec.decode(sign([pos.t, pos.id, pos.span]), scope)).toEqual(pos);
    for (const v of [[1.5, "cus_a", 0], [1, "not-an-id", 0], [1, "cus_a", -1], [1, "cus_a"], { t: 1 }, "x", null]) expect(codec.decode(sign(v), scope)).toBeNull();
  });
});
