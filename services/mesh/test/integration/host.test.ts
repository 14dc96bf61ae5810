import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CustomersService,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
  WorkspacesService,
  type HealthCheckResponse,
} from "@linquid/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "@linquid/mesh/testing";

describe("mesh host", () => {
  let mesh: TestMesh;
  beforeAll(async () => {
    mesh = await startTestMesh({ MESH_PLUGINS: "workspaces" });
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("answers grpc.health.v1 to a plain @grpc/grpc-js client", async () => {
    const Client = grpc.makeGenericClientConstructor(
      {
        check: {
          path: "/grpc.health.v1.Health/Check",
          requestStream: false,
          responseStream: false,
          requestSerialize: (m: unknown) => Buffer.from(toBinary(HealthCheckRequestSchema, m as never)),
          requestDeserialize: (b: Buffer) => fromBinary(HealthCheckRequestSchema, b),
          responseSerialize: (m: unknown) => Buffer.from(toBinary(HealthCheckResponseSchema, m as never)),
          responseDeserialize: (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
        },
      },
      "Health",
    );
    const client = new Client(mesh.host.grpcUrl!.replace("http://", ""), grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<HealthCheckResponse>((resolve, reject) =>
        (client as unknown as { check: (r: unknown, cb: (e: Error | null, r: HealthCheckResponse) => void) => void }).check(
          create(HealthCheckRequestSchema, { service }),
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      );
    try {
      expect((await check("")).status).toBe(Status.SERVING);
      expect((await check(WorkspacesService.typeName)).status).toBe(Status.SERVING);
      await expect(check(CustomersService.typeName)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    } finally {
      client.close();
    }
  });

  it("serves a service over gRPC to a Connect client", async () => {
    const ws = mesh.grpcClient(WorkspacesService);
    const created = await ws.createWorkspace({ name: "Acme", plan: "pro" });
    expect(created.workspace).toMatchObject({ name: "Acme", plan: "pro", currency: "USD", rateLimit: 1000n });
    const got = await ws.getWorkspace({ id: created.workspace!.id });
    expect(got.workspace?.entitlements).toEqual(["revenue-tracking"]);
  });
});
