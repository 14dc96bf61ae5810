/** Shared bits of the customers integration tests. */
import { ConnectError } from "@connectrpc/connect";
import { MongoClient, type Db } from "mongodb";
import type { TestMesh } from "@linquid/mesh/testing";

/** The customers plugin's own database of a test mesh, through a separate client. */
export async function customersDb(mesh: TestMesh): Promise<{ db: Db; close: () => Promise<void> }> {
  const client = new MongoClient(mesh.host.mongodbUri!, { retryWrites: false });
  await client.connect();
  return { db: client.db(`${mesh.config.mongodbDbPrefix}_customers`), close: () => client.close() };
}

/** The ConnectError a call fails with. */
export async function rpcError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}
