import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CustomersService } from "@linquid/contracts";

/** Lists a workspace's newest customers over gRPC, as another internal service would. */
export async function connectClientExample(grpcUrl: string, workspaceId: string): Promise<string[]> {
  // grpcUrl is a mesh process's GRPC_PORT, e.g. "http://127.0.0.1:8090" (https:// with mutual TLS).
  const transport = createGrpcTransport({ baseUrl: grpcUrl });
  const customers = createClient(CustomersService, transport);
  const answer = await customers.listCustomers({ workspaceId, limit: 10 }, { timeoutMs: 5000 });
  return answer.customers.map((c) => c.externalId);
}
