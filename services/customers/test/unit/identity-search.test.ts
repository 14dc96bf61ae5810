import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { identityKeyId, parseCustomerRef } from "../../src/identity.js";
import { changes, newCustomerDoc } from "../../src/customer-doc.js";
import { foldCase, literalPattern, searchTerms } from "../../src/search.js";

describe("parseCustomerRef", () => {
  it.each([
    ["cus_abc123", { kind: "id", id: "cus_abc123" }],
    ["ext_abc", { kind: "external", externalId: "abc" }],
    ["ext_ext_abc", { kind: "external", externalId: "ext_abc" }],
    ["ext_cus_abc", { kind: "external", externalId: "cus_abc" }],
    ["ext_a:b/c d", { kind: "external", externalId: "a:b/c d" }],
    ["ext_", null],
    ["ext_a\u0007", null],
    ["cus_", null],
    ["cus_a-b", null],
    ["abc", null],
    ["", null],
  ])("%j → %j", (raw, want) => {
    expect(parseCustomerRef(raw)).toEqual(want);
  });

  it("round-trips every valid external id", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 255, unit: "grapheme" }), (ext) => {
        fc.pre(!/\p{Cc}/u.test(ext) && [...ext].length <= 255);
        expect(parseCustomerRef(`ext_${ext}`)).toEqual({ kind: "external", externalId: ext });
      }),
    );
  });
});

describe("identityKeyId", () => {
  it("never gives two (workspace, externalId) pairs the same key", () => {
    const ws = fc.stringMatching(/^ws_[0-9A-Za-z]{1,6}$/);
    fc.assert(
      fc.property(ws, fc.string(), ws, fc.string(), (w1, e1, w2, e2) => {
        fc.pre(w1 !== w2 || e1 !== e2);
        expect(identityKeyId(w1, e1)).not.toBe(identityKeyId(w2, e2));
      }),
    );
  });
});

describe("literalPattern", () => {
  const tricky = fc.constantFrom(".*", "$where", "(", "\\", "[a-z]", "^", "$", "|", "?", "+", "{2}", "a.b", "\\d", "(?i)", "${x}", "{$ne:1}", "-", "/", "é", "ü", "İ", "_", " ");
  const text = fc.array(fc.oneof(tricky, fc.string({ maxLength: 3 })), { maxLength: 6 }).map((a) => a.join(""));

  it("matches exactly where the text occurs literally", () => {
    fc.assert(
      fc.property(text, text, (needle, hay) => {
        expect(new RegExp(literalPattern(needle)).test(hay)).toBe(hay.includes(needle));
        expect(new RegExp(literalPattern(needle)).test(`${hay}${needle}${hay}`)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("escapes every ASCII punctuation character and nothing else", () => {
    expect(literalPattern("a.b*c(d)\\e$f^g[h]i{j}k|l?m+n/o-p_q r#s")).toBe("a\\.b\\*c\\(d\\)\\\\e\\$f\\^g\\[h\\]i\\{j\\}k\\|l\\?m\\+n\\/o\\-p_q r\\#s");
    expect(literalPattern("éü漢字")).toBe("éü漢字");
  });
});

describe("searchTerms and changes", () => {
  const base = () => newCustomerDoc("cus_1", "ws_1", "Ext-1", { email: "A@X.io", name: "Ann", metadata: { k: 1 } }, new Date(0));

  it("keeps lowercased copies of externalId, email and name", () => {
    expect(base().search).toEqual(["ext-1", "a@x.io", "ann"]);
    expect(searchTerms({ externalId: "É", email: null, name: "" })).toEqual([foldCase("É")]);
  });

  it("returns null when nothing changes", () => {
    expect(changes(base(), { email: "A@X.io", metadata: { k: 1 } }, "overwrite")).toBeNull();
    expect(changes(base(), { email: "other@x.io" }, "fill")).toBeNull();
  });

  it("overwrites or fills, recomputing search", () => {
    expect(changes(base(), { name: null, country: "DE" }, "overwrite")).toEqual({ name: null, country: "DE", search: ["ext-1", "a@x.io"] });
    expect(changes(base(), { name: "Bob", clickId: "c1" }, "fill")).toEqual({ clickId: "c1" });
  });
});
