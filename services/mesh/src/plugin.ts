/**
 * The plugin contract. A plugin is a module whose default export is a `Plugin`: a name,
 * what it needs from the host, and start/stop. The host (host.ts) runs any set of plugins
 * in one process and wires each plugin's clients to the services, wherever they run.
 */
import type { Client, ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { Redis } from "ioredis";
import type { Db } from "mongodb";
import type { MeshConfig, PluginName } from "./config.js";
import type { Logger } from "./logger.js";

export interface PluginContext {
  readonly config: MeshConfig;
  readonly logger: Logger;
  /** The plugin's own database; only for plugins that declared `needs.mongo`. */
  readonly db: Db;
  /** Redis when configured and wanted (`needs.redis`); may be down at any time. */
  readonly redis: Redis | undefined;
  /**
   * A client for another plugin's service: in-process when that plugin runs here,
   * over gRPC at `${NAME}_ADDR` otherwise. Calls are traced.
   */
  client<S extends DescService>(service: S): Client<S>;
}

export interface RunningPlugin {
  /** The RPC services this plugin serves, registered on the process's gRPC server. */
  readonly services?: readonly DescService[];
  readonly routes?: (router: ConnectRouter) => void;
  /** Base URL of an HTTP listener the plugin runs (the gateway's). */
  readonly url?: string;
  /** Finishes in-flight work and releases what start() took. */
  stop(): Promise<void>;
}

export interface Plugin {
  readonly name: PluginName;
  readonly needs: { readonly mongo?: boolean; readonly redis?: boolean };
  start(ctx: PluginContext): Promise<RunningPlugin>;
}

/** The plugin that serves a service, by convention from its package: linquid.<plugin>.v1. */
export function pluginOfService(service: DescService): string {
  const parts = service.typeName.split(".");
  if (parts[0] !== "linquid" || parts.length < 4) throw new Error(`${service.typeName}: not a linquid.<plugin>.v1 service`);
  return parts[1]!;
}
