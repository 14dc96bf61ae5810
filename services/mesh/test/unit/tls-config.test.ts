/**
 * The mutual-TLS settings as the configuration reads them: all three files or none, and peer
 * addresses whose scheme matches (https:// with a credential, http:// without).
 */
import { ConfigError, loadConfig } from "@linquid/mesh";
import { describe, expect, it } from "vitest";

const files = { TLS_CERT: "/etc/linquid/tls/tls.crt", TLS_KEY: "/etc/linquid/tls/tls.key", TLS_CA: "/etc/linquid/tls/ca.crt" };

describe("TLS configuration", () => {
  it("is off without TLS_* (the embedded default)", () => {
    expect(loadConfig({}).tls).toBeUndefined();
  });

  it("reads the three files and the reload interval (30 s by default)", () => {
    expect(loadConfig({ ...files, CUSTOMERS_ADDR: "https://customers:8090" }).tls).toEqual({ certFile: files.TLS_CERT, keyFile: files.TLS_KEY, caFile: files.TLS_CA, reloadIntervalMs: 30_000 });
    expect(loadConfig({ ...files, TLS_RELOAD_INTERVAL_MS: "5000" }).tls?.reloadIntervalMs).toBe(5000);
  });

  it.each([
    [{ TLS_CERT: files.TLS_CERT }, /^TLS_KEY: required with TLS_CERT/],
    [{ TLS_CERT: files.TLS_CERT, TLS_KEY: files.TLS_KEY }, /^TLS_CA: required with TLS_CERT and TLS_KEY/],
    [{ ...files, TLS_RELOAD_INTERVAL_MS: "soon" }, /^TLS_RELOAD_INTERVAL_MS: expected an integer/],
    [{ ...files, TLS_RELOAD_INTERVAL_MS: "10" }, /^TLS_RELOAD_INTERVAL_MS: must be between 100 and/],
    [{ ...files, CUSTOMERS_ADDR: "http://customers:8090" }, /^CUSTOMERS_ADDR: must be https:\/\/ when TLS_CERT is set/],
    [{ ANALYTICS_ADDR: "https://analytics:8090" }, /^ANALYTICS_ADDR: https:\/\/ needs TLS_CERT, TLS_KEY and TLS_CA/],
  ])("refuses %o with one line naming the variable", (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});
