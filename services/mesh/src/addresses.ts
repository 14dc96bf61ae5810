/**
 * Where a tool outside the mesh (the admin CLI, the data generator) reaches a service: its
 * `<SERVICE>_ADDR`, else the local mesh's gRPC port (`GRPC_PORT`, default 8090) on loopback —
 * the same defaults `npm start` listens on.
 */
export type ServiceName = "WORKSPACES" | "CUSTOMERS" | "ANALYTICS";

export function serviceAddress(service: ServiceName, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env[`${service}_ADDR`];
  if (explicit !== undefined && explicit !== "") return explicit;
  return `http://127.0.0.1:${env["GRPC_PORT"] || "8090"}`;
}
