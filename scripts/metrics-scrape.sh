#!/usr/bin/env bash
# `npm run check:metrics`: a real Prometheus scraping a running mesh. Starts the mesh as
# `npm start` does (embedded FerretDB and redis-server, all four plugins, ports picked free on
# 127.0.0.1) and Debian's prometheus scraping its metrics port every second, sends some REST
# traffic (a workspace and key made with the admin CLI, creates, reads, a cached read twice, a
# 404, a tracked click), then asks Prometheus' HTTP API that the target is up, that the request
# counter, the latency histogram and the RPC counter answer queries with data, and that an
# exemplar carries a trace id. Everything runs in a temporary directory, removed on exit.
#
# Installs prometheus with apt-get when it is missing (root only). Not part of `npm test`:
# about 30 s once installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$root/node_modules/.bin:$PATH"
say() { printf 'check:metrics: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if ! command -v prometheus >/dev/null; then
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null || die "prometheus is not installed (apt-get install prometheus)"
  say "installing prometheus (apt-get)"
  apt-get update -qq >/dev/null
  # Debian's package would also start a service on :9090 where an init system runs; ours is separate.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
say "$(prometheus --version 2>&1 | head -1)"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/linquid-metrics-XXXXXX")
mesh_pid=""; prom_pid=""
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
  [ -n "$mesh_pid" ] && kill -TERM "$mesh_pid" 2>/dev/null && wait "$mesh_pid" 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
# Reads a JSON document on stdin and prints what the expression (of `d`) gives.
json() { node -e 'let t="";process.stdin.on("data",c=>t+=c).on("end",()=>{const d=JSON.parse(t);const v=('"$1"');console.log(typeof v==="string"?v:JSON.stringify(v))})'; }

# 1. The mesh, on free ports; its "mesh started" line says where.
PORT=0 GRPC_PORT=0 METRICS_PORT=0 DATA_DIR="$scratch/data" FERRETDB_BIN="${FERRETDB_BIN:-$root/.bin/ferretdb}" LOG_LEVEL=info \
  node --import tsx services/mesh/src/main.ts 2>"$scratch/mesh.log" &
mesh_pid=$!
for _ in $(seq 1 150); do
  grep -q '"msg":"mesh started"' "$scratch/mesh.log" && break
  kill -0 "$mesh_pid" 2>/dev/null || { tail -5 "$scratch/mesh.log" >&2; die "the mesh exited"; }
  sleep 0.2
done
started=$(grep -m1 '"msg":"mesh started"' "$scratch/mesh.log") || die "the mesh did not start within 30 s"
gateway=$(json d.gateway <<<"$started"); grpc=$(json d.grpc <<<"$started"); metrics=$(json d.metrics <<<"$started")
say "mesh: REST $gateway/api, gRPC $grpc, metrics $metrics/metrics"

# 2. Prometheus, scraping it every second, exemplars kept.
prom_port=$(free_port)
cat >"$scratch/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: linquid
    static_configs:
      - targets: ["${metrics#http://}"]
YAML
prometheus --config.file="$scratch/prometheus.yml" --storage.tsdb.path="$scratch/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --enable-feature=exemplar-storage \
  >"$scratch/prometheus.log" 2>&1 &
prom_pid=$!
prom="http://127.0.0.1:$prom_port"
for _ in $(seq 1 100); do curl -fs "$prom/-/ready" >/dev/null 2>&1 && break; kill -0 "$prom_pid" 2>/dev/null || { tail -5 "$scratch/prometheus.log" >&2; die "prometheus exited"; }; sleep 0.2; done
curl -fs "$prom/-/ready" >/dev/null || die "prometheus did not become ready"
say "prometheus: $prom"

# 3. Traffic.
admin() { WORKSPACES_ADDR=$grpc ANALYTICS_ADDR=$grpc node --import tsx services/workspaces/src/cli/admin.ts "$@"; }
ws=$(admin workspace create --name Metrics --plan pro --currency USD | json d.id)
key=$(admin key create --workspace "$ws" --scopes links:read,links:write,analytics:read,events:write --name metrics | json d.key)
api="$gateway/api"
call() { curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" -H 'content-type: application/json' "$@"; }
codes=""
for i in $(seq 1 5); do
  id=$(curl -fs -H "X-API-Key: $key" -H 'content-type: application/json' -X POST "$api/customers" -d "{\"externalId\":\"metrics-$i\"}" | json d.data.id)
  codes+=" $(call "$api/customers/$id")"
done
codes+=" $(call "$api/customers?limit=5") $(call "$api/customers/cohorts?group_by=month&start=2026-01-01&end=2026-12-31") $(call "$api/customers/cohorts?group_by=month&start=2026-01-01&end=2026-12-31")"
codes+=" $(call "$api/customers/cus_missing") $(call -X POST "$api/track/click" -d '{"clickId":"clk_metrics","linkId":"lnk_1"}')"
say "REST answers:$codes"

# 4. What Prometheus saw.
query() { curl -fsG "$prom/api/v1/query" --data-urlencode "query=$1"; }
has_data() { [ "$(query "$1" | json 'd.status==="success"&&d.data.result.length>0')" = true ]; }
ok=""
for _ in $(seq 1 30); do
  if has_data 'up{job="linquid"} == 1' && has_data 'sum(linquid_http_requests_total{status="404"}) >= 1' && has_data 'sum by (route) (linquid_http_requests_total) >= 5'; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || { query 'linquid_http_requests_total' >&2; die "Prometheus has no request counts from the mesh"; }
health=$(curl -fs "$prom/api/v1/targets" | json 'd.data.activeTargets.map(t=>t.labels.job+" "+t.health).join(", ")')
say "targets: $health"
[ "$health" = "linquid up" ] || die "the target is not up"
say "requests by route: $(query 'sum by (route, status) (linquid_http_requests_total)' | json 'd.data.result.map(r=>r.metric.route+" "+r.metric.status+"="+r.value[1]).join(", ")')"
# A second scrape may be needed for rate(); the histogram and RPC counters must answer too.
for _ in $(seq 1 10); do has_data 'histogram_quantile(0.99, sum by (le) (rate(linquid_http_request_duration_seconds_bucket[1m])))' && break; sleep 1; done
has_data 'histogram_quantile(0.99, sum by (le) (rate(linquid_http_request_duration_seconds_bucket[1m])))' || die "no p99 latency"
say "p99 REST latency: $(query 'histogram_quantile(0.99, sum by (le) (rate(linquid_http_request_duration_seconds_bucket[1m])))' | json 'd.data.result[0].value[1]') s"
has_data 'sum by (method, code) (linquid_rpc_server_handled_total{service="linquid.customers.v1.CustomersService"})' || die "no RPC counts"
has_data 'sum(linquid_mongodb_operation_duration_seconds_count) > 0' || die "no MongoDB timings"
has_data 'linquid_snapshot_cache_lookups_total{result="hit"}' || die "no snapshot cache hit counted"
has_data 'linquid_events_ingested_total{type="click"}' || die "no ingested click counted"
has_data 'process_resident_memory_bytes{job="linquid"}' || die "no process metrics"
now=$(date +%s)
exemplar=$(curl -fsG "$prom/api/v1/query_exemplars" --data-urlencode 'query=linquid_http_request_duration_seconds_bucket' \
  --data-urlencode "start=$((now - 300))" --data-urlencode "end=$((now + 60))" | json '(d.data.flatMap(s=>s.exemplars)[0]||{labels:{}}).labels.trace_id||""')
[ -n "$exemplar" ] || die "no exemplar with a trace id"
say "an exemplar's trace id: $exemplar"
say "ok"
