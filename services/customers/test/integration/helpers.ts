/** Shared bits of the customers integration tests. */
import { ConnectError } from "@connectrpc/connect";
import type { Db } from "mongodb";
import { pluginDatabase, type TestMesh } from "@linquid/mesh/testing";

/** The customers plugin's own database of a test mesh, through a separate client. */
export function customersDb(mesh: TestMesh): Promise<{ db: Db; close: () => Promise<void> }> {
  return pluginDatabase(mesh, "customers");
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
