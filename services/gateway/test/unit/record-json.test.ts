import { create, type DescMessage } from "@bufbuild/protobuf";
import { timestampFromDate, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { CustomerSchema, CustomerStatsSchema } from "@linquid/contracts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { recordJson } from "../../src/record-json.js";
import { REST_SERVICES } from "../../src/index.js";
import { restJson } from "../../src/transcoder.js";

const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const date = fc.date({ min: new Date(0), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true });
/** Timestamps with any nanos (restJson writes 0, 3, 6 or 9 fraction digits). */
const timestamp = fc.tuple(date, fc.integer({ min: 0, max: 999_999_999 })).map(([d, nanos]) => create(TimestampSchema, { seconds: timestampFromDate(d).seconds, nanos }));
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const metadataValue = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));

const customer = fc.record({
  id: fc.string(),
  externalId: fc.string(),
  email: optional(fc.string()),
  name: optional(fc.string({ unit: "grapheme" })),
  avatar: optional(fc.string()),
  country: optional(fc.string({ maxLength: 2 })),
  clickId: optional(fc.string()),
  metadata: optional(fc.dictionary(fc.oneof(fc.string(), fc.constantFrom("0", "12", "__proto__", "constructor", "$where", "a.b")), metadataValue, { maxKeys: 6 })),
  createdAt: optional(timestamp),
  updatedAt: optional(timestamp),
  stats: optional(
    fc.record({ leads: int64, sales: int64, revenue: int64, currency: optional(fc.string()), firstSeenAt: optional(timestamp), lastSeenAt: optional(timestamp) }, { requiredKeys: ["leads", "sales", "revenue"] }),
  ),
}, { requiredKeys: ["id", "externalId"] });

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

describe("record JSON (the streamed records' REST JSON)", () => {
  it("is restJson, to the byte, for any customer", () => {
    const json = recordJson(CustomerSchema);
    fc.assert(
      fc.property(customer, (c) => {
        const stats = c.stats === undefined ? undefined : create(CustomerStatsSchema, defined(c.stats));
        const m = create(CustomerSchema, defined({ ...c, stats }));
        expect(JSON.stringify(json(m))).toBe(JSON.stringify(restJson(CustomerSchema, m)));
      }),
      { numRuns: 500 },
    );
  });

  it("is restJson for every response message of the REST services, planned or not", () => {
    const messages: DescMessage[] = REST_SERVICES.flatMap((s) => s.methods.map((m) => m.output));
    for (const desc of messages) {
      const m = create(desc);
      expect(JSON.stringify(recordJson(desc)(m)), desc.typeName).toBe(JSON.stringify(restJson(desc, m)));
    }
  });
});
