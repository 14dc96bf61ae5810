#!/usr/bin/env bash
# `npm run check:image`: the Dockerfile's steps, performed in a scratch copy of the working
# tree (no container engine needed): npm ci, npm run build, the production tree pruned to
# production dependencies, then the compiled mesh started on a plain Node >= 22 (not through
# npm) until /healthz answers and every gRPC service reports SERVING. Prints the runtime's size.
#
# NODE_BIN picks the Node binary (default: the official build that the `node` devDependency
# unpacks, run directly). FERRETDB_BIN (default .bin/ferretdb) serves the embedded database.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
say() { printf 'check:image: %s\n' "$*" >&2; }

scratch=$(mktemp -d /tmp/linquid-image.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

say "copying the tracked files to $scratch"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$scratch"

cd "$scratch"
say "npm ci"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
say "npm run build"
npm run --silent build
cd dist
say "npm ci --omit=dev (production dependencies only)"
npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null

node_bin=${NODE_BIN:-$scratch/node_modules/node/bin/node}
version=$("$node_bin" --version)
major=${version#v}; major=${major%%.*}
[ "$major" -ge 22 ] || { say "Node $version is older than 22"; exit 1; }
say "runtime: $(du -sh . | cut -f1) ($(du -sh node_modules | cut -f1) of it node_modules); Node $version"

port=$((20000 + RANDOM % 20000)); grpc=$((port + 1)); metrics=$((port + 2))
PORT=$port GRPC_PORT=$grpc METRICS_PORT=$metrics DATA_DIR="$scratch/data" FERRETDB_BIN="${FERRETDB_BIN:-$repo/.bin/ferretdb}" \
  "$node_bin" services/mesh/src/main.js >"$scratch/mesh.log" 2>&1 &
pid=$!

for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { say "the mesh exited:"; tail -5 "$scratch/mesh.log" >&2; exit 1; }
  sleep 0.2
done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || { say "/healthz did not answer"; exit 1; }
say "/healthz: 200"
# (into a file: `grep -q` on a pipe would end curl with SIGPIPE and fail the pipe)
curl -fs "http://127.0.0.1:$metrics/metrics" >"$scratch/metrics.txt" && grep -q '^# TYPE linquid_http_requests counter' "$scratch/metrics.txt" \
  || { say "/metrics did not answer with the request counters"; exit 1; }
say "/metrics: 200"

cat >"$scratch/dist/health-check.mjs" <<'JS'
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@linquid/contracts";
const client = createClient(Health, createGrpcTransport({ baseUrl: process.argv[2] }));
for (const service of ["", "linquid.workspaces.v1.WorkspacesService", "linquid.workspaces.v1.IdempotencyService", "linquid.customers.v1.CustomersService", "linquid.analytics.v1.AnalyticsService"]) {
  const { status } = await client.check({ service }, { timeoutMs: 5000 });
  if (status !== Status.SERVING) throw new Error(`${service || "(server)"}: ${Status[status]}`);
  console.error(`check:image: gRPC health ${service || "(server)"}: SERVING`);
}
JS
# Resolved from dist/, so @linquid/contracts is the compiled workspace.
"$node_bin" "$scratch/dist/health-check.mjs" "http://127.0.0.1:$grpc"

kill -TERM "$pid"
wait "$pid" && say "SIGTERM: clean exit" || { say "the mesh exited with $? on SIGTERM"; exit 1; }
pid=""
say "ok"
