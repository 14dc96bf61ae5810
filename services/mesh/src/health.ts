/**
 * grpc.health.v1.Health for the services a process serves. "" stands for the whole process.
 * Every service reports SERVING once started and NOT_SERVING as soon as shutdown begins.
 */
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@linquid/contracts";

export interface HealthRegistry {
  set(service: string, status: Status): void;
  routes(router: ConnectRouter): void;
}

export function createHealthRegistry(): HealthRegistry {
  const statuses = new Map<string, Status>();
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const w of watchers) w();
  };
  return {
    set(service, status) {
      statuses.set(service, status);
      notify();
    },
    routes(router) {
      router.service(Health, {
        check(req) {
          const status = statuses.get(req.service);
          if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
          return { status };
        },
        list() {
          return { statuses: Object.fromEntries([...statuses].map(([k, status]) => [k, { status }])) };
        },
        async *watch(req, ctx) {
          let last: Status | undefined;
          while (!ctx.signal.aborted) {
            const now = statuses.get(req.service) ?? Status.SERVICE_UNKNOWN;
            if (now !== last) {
              last = now;
              yield { status: now };
            }
            await new Promise<void>((resolve) => {
              const wake = () => {
                watchers.delete(wake);
                ctx.signal.removeEventListener("abort", wake);
                resolve();
              };
              watchers.add(wake);
              ctx.signal.addEventListener("abort", wake);
            });
          }
        },
      });
    },
  };
}
