/**
 * How a tool outside the mesh (the admin CLI, the data generator) calls a service: at its
 * address (addresses.ts), with mutual TLS when it holds a credential — TLS_CERT, TLS_KEY and
 * TLS_CA, each overridable by the tool's flags. Against a mesh that takes mutual TLS, operator
 * RPCs need an `operator:<name>` certificate (docs/internal-auth.md).
 */
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { serviceAddress, type ServiceName } from "./addresses.js";
import { ConfigError } from "./config.js";
import { loadCredential, tlsFilesFromEnv } from "./credentials.js";

/** Credential files given on a tool's command line; each overrides its variable. */
export interface ToolCredentialFlags {
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly ca?: string | undefined;
}

export interface ToolTransport {
  readonly baseUrl: string;
  readonly transport: Transport;
  /** The identity of the tool's certificate, when it has one. */
  readonly identity: string | undefined;
}

/**
 * The transport a tool calls `service` with. Without an explicit `<SERVICE>_ADDR`, the local
 * mesh's port: `https://127.0.0.1:$GRPC_PORT` with a credential, `http://…` without. A bad
 * credential or an address whose scheme does not match throws a ConfigError naming the variable.
 */
export function createToolTransport(service: ServiceName, flags: ToolCredentialFlags = {}, env: NodeJS.ProcessEnv = process.env): ToolTransport {
  const merged = { ...env };
  if (flags.cert !== undefined) merged["TLS_CERT"] = flags.cert;
  if (flags.key !== undefined) merged["TLS_KEY"] = flags.key;
  if (flags.ca !== undefined) merged["TLS_CA"] = flags.ca;
  const files = tlsFilesFromEnv(merged);
  const explicit = env[`${service}_ADDR`];
  let baseUrl = serviceAddress(service, env);
  if (files === undefined) {
    if (baseUrl.startsWith("https:")) throw new ConfigError(`${service}_ADDR: https:// needs a credential (TLS_CERT, TLS_KEY, TLS_CA or --tls-cert, --tls-key, --tls-ca)`);
    return { baseUrl, transport: createGrpcTransport({ baseUrl }), identity: undefined };
  }
  if (explicit === undefined || explicit === "") baseUrl = baseUrl.replace(/^http:/, "https:");
  else if (baseUrl.startsWith("http:")) throw new ConfigError(`${service}_ADDR: must be https:// with a credential (the mesh takes it over mutual TLS)`);
  const credential = loadCredential(files);
  return { baseUrl, transport: createGrpcTransport({ baseUrl, nodeOptions: { secureContext: credential.context } }), identity: credential.identity };
}
