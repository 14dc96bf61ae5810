/**
 * The access table the contracts declare (linquid.policy.v1.access) and the decision for each
 * kind of caller. The network half (TLS, certificates, real processes) is in
 * test/integration/internal-auth.test.ts.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { AnalyticsService, CustomersService, Health, reflectionV1, WorkspacesService } from "@linquid/contracts";
import { accessRuleOf, refusal, type Peer } from "@linquid/mesh";
import { describe, expect, it } from "vitest";

const SERVICES: DescService[] = [WorkspacesService, CustomersService, AnalyticsService];
const method = (s: DescService, name: string): DescMethod => s.methods.find((m) => m.name === name)!;
const trusted = (identity: string | undefined): Peer => ({ kind: "trusted", identity, subject: "O=Linquid, CN=x" });
const codeOf = (m: DescMethod, peer: Peer | undefined) => refusal(m, peer)?.code ?? "ok";

describe("access table from the contracts", () => {
  it("marks exactly the operator's work operator_only", () => {
    const operatorOnly = SERVICES.flatMap((s) => s.methods.filter((m) => accessRuleOf(m).operatorOnly).map((m) => `${s.name}/${m.name}`));
    expect(operatorOnly.sort()).toEqual(["AnalyticsService/GetRebuildProgress", "AnalyticsService/RebuildWorkspace", "WorkspacesService/CreateApiKey", "WorkspacesService/CreateWorkspace", "WorkspacesService/RevokeApiKey"]);
  });

  it("names the callers of internal RPCs, and every name is a plugin", () => {
    const declared = Object.fromEntries(SERVICES.flatMap((s) => s.methods.filter((m) => accessRuleOf(m).services.length > 0).map((m) => [m.name, accessRuleOf(m).services])));
    expect(declared).toEqual({
      GetWorkspace: ["analytics"],
      AuthenticateApiKey: ["gateway"],
      StitchCustomer: ["analytics"],
      StitchCustomers: ["analytics"],
      SetCustomerStats: ["analytics"],
      SetCustomersStats: ["analytics"],
      ScrubCustomer: ["customers"],
      RegisterCustomer: ["customers"],
      ListSnapshotInvalidations: ["gateway"],
    });
  });
});

describe("refusal", () => {
  const createApiKey = method(WorkspacesService, "CreateApiKey");
  const authenticate = method(WorkspacesService, "AuthenticateApiKey");
  const getCustomer = method(CustomersService, "GetCustomer");
  const stitch = method(CustomersService, "StitchCustomers");

  it.each([
    ["no peer (not from the network server)", undefined, Code.Unauthenticated],
    ["plaintext", { kind: "plaintext" } as Peer, Code.Unauthenticated],
    ["TLS without a trusted certificate", { kind: "untrusted", reason: "no client certificate" } as Peer, Code.Unauthenticated],
    ["a trusted certificate naming no identity", trusted(undefined), Code.PermissionDenied],
  ])("%s: refused on every method but health and reflection", (_, peer, code) => {
    for (const m of [createApiKey, authenticate, getCustomer, stitch]) expect(codeOf(m, peer)).toBe(code);
    expect(codeOf(method(Health, "Check"), peer)).toBe("ok");
    expect(codeOf(method(reflectionV1.ServerReflection, "ServerReflectionInfo"), peer)).toBe("ok");
  });

  it.each([
    ["operator:admin", createApiKey, "ok"],
    ["operator:admin", stitch, "ok"],
    ["operator:admin", getCustomer, "ok"],
    ["service:gateway", createApiKey, Code.PermissionDenied],
    ["service:gateway", getCustomer, "ok"],
    ["service:gateway", authenticate, "ok"],
    ["service:gateway", stitch, Code.PermissionDenied],
    ["service:analytics", stitch, "ok"],
    ["service:analytics", authenticate, Code.PermissionDenied],
    ["service:customers", createApiKey, Code.PermissionDenied],
    ["service:billing", getCustomer, "ok"],
  ] as const)("%s calling %s: %s", (identity, m, code) => {
    expect(codeOf(m, trusted(identity))).toBe(code);
  });

  it("names the method and the caller, never more", () => {
    expect(refusal(createApiKey, trusted("service:gateway"))?.rawMessage).toBe("linquid.workspaces.v1.WorkspacesService/CreateApiKey: operators only, not service:gateway");
    expect(refusal(stitch, trusted("service:gateway"))?.rawMessage).toBe("linquid.customers.v1.CustomersService/StitchCustomers: only service:analytics and operators, not service:gateway");
  });
});
