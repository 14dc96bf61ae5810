/**
 * Who may call what on the internal gRPC port when it takes mutual TLS (docs/internal-auth.md).
 * The table is the contracts' `linquid.policy.v1.access` method option; this module only reads
 * it. The checks run in an interceptor of the network server only: calls between plugins of one
 * process never leave it and are not checked.
 *
 *   no credential (plaintext, no or untrusted certificate)   → UNAUTHENTICATED
 *   a trusted certificate naming no identity                  → PERMISSION_DENIED
 *   operator:<name>                                           → every method
 *   service:<plugin>                                          → methods not operator_only whose
 *                                                               `services` list is empty or names it
 *
 * Health checks and server reflection stay open to anyone: the kubelet's `grpc:` probes speak
 * plaintext, and reflection describes only the public contracts.
 */
import { getOption, hasOption, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { access, Health, reflectionV1, reflectionV1alpha } from "@linquid/contracts";
import type { Logger } from "./logger.js";
import { peerKey, type Peer } from "./peer-identity.js";

/** Services any caller may use: health checks and reflection. */
export const OPEN_SERVICES: ReadonlySet<string> = new Set([Health.typeName, reflectionV1.ServerReflection.typeName, reflectionV1alpha.ServerReflection.typeName]);

/** A method's line of the table. */
export interface AccessRule {
  readonly operatorOnly: boolean;
  /** Plugin names allowed besides operators; empty = every service. */
  readonly services: readonly string[];
}

const rules = new WeakMap<DescMethod, AccessRule>();

/** The access rule the contract declares for a method (the default when it declares none). */
export function accessRuleOf(method: DescMethod): AccessRule {
  let rule = rules.get(method);
  if (rule === undefined) {
    const declared = hasOption(method, access) ? getOption(method, access) : undefined;
    rule = { operatorOnly: declared?.operatorOnly ?? false, services: declared?.services ?? [] };
    rules.set(method, rule);
  }
  return rule;
}

/**
 * Why `peer` may not call `method`, as the error to answer; undefined when it may. `rpc` names
 * the method in messages (`linquid.workspaces.v1.WorkspacesService/CreateApiKey`).
 */
export function refusal(method: DescMethod, peer: Peer | undefined): ConnectError | undefined {
  if (OPEN_SERVICES.has(method.parent.typeName)) return undefined;
  const rpc = `${method.parent.typeName}/${method.name}`;
  if (peer === undefined || peer.kind === "plaintext") {
    return new ConnectError(`${rpc}: a client certificate is required (this port takes mutual TLS)`, Code.Unauthenticated);
  }
  if (peer.kind === "untrusted") return new ConnectError(`${rpc}: ${peer.reason}`, Code.Unauthenticated);
  const identity = peer.identity;
  if (identity === undefined) {
    return new ConnectError(`${rpc}: the client certificate (${peer.subject}) names no identity (URI SAN spiffe://<trust domain>/service/<name> or CN service:<name>)`, Code.PermissionDenied);
  }
  if (identity.startsWith("operator:")) return undefined;
  const rule = accessRuleOf(method);
  if (rule.operatorOnly) return new ConnectError(`${rpc}: operators only, not ${identity}`, Code.PermissionDenied);
  if (rule.services.length > 0 && !rule.services.some((s) => identity === `service:${s}`)) {
    return new ConnectError(`${rpc}: only ${rule.services.map((s) => `service:${s}`).join(", ")} and operators, not ${identity}`, Code.PermissionDenied);
  }
  return undefined;
}

/**
 * The network server's authorization check: refuses a call its peer (peerKey, set from the
 * connection by the server) may not make, before its handler runs. Refusals are logged at warn
 * with the caller and the method, never the request.
 */
export function createAuthorizationInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const peer = req.contextValues.get(peerKey);
    const refused = refusal(req.method, peer);
    if (refused !== undefined) {
      logger.warn("rpc refused", {
        rpc: `${req.service.typeName}/${req.method.name}`,
        code: Code[refused.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase(),
        peer: peer?.kind === "trusted" ? (peer.identity ?? peer.subject) : (peer?.kind ?? "plaintext"),
      });
      throw refused;
    }
    return next(req);
  };
}
