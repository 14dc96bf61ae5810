#!/usr/bin/env bash
# `npm run check:k8s`: every kustomize target under deploy/ applied with
# `kubectl apply --dry-run=server` to a real, throwaway Kubernetes API server — etcd plus a
# kube-apiserver on free loopback ports, with a temporary data dir, stopped and deleted on exit.
# The server runs its full validation and default admission chain (schemas, strict field
# validation, defaulting, NamespaceLifecycle, Pod Security at `restricted`), which
# `kubectl kustomize` and deploy/check.mjs do not. Targets: each overlay, the base, the base with each component, and the README's
# single-process + otel variant. One line per target; exits non-zero on any rejection.
#
# Installs what is missing: etcd (Debian's etcd-server) and openssl with apt-get when root;
# kube-apiserver built once from the k8s.io/kubernetes Go module into
# .cache/kube-apiserver/<version>/ (about 16 min on 2 cores; later runs reuse it); kubectl,
# when none on PATH can render components (Debian's kubernetes-client 1.20 cannot), built the
# same way.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The Kubernetes release the manifests are checked against. Its staging modules (k8s.io/api,
# k8s.io/apiserver, …) are published as v0.<minor>.<patch>.
K8S_VERSION=v1.34.4
STAGING_VERSION=v0.${K8S_VERSION#v1.}
cache=$root/.cache/kube-apiserver/$K8S_VERSION

started=$(date +%s)
log() { printf '%s\n' "$*"; }
die() { printf 'k8s-validate: %s\n' "$*" >&2; exit 1; }

as_root_install() { # package...
  [ "$(id -u)" -eq 0 ] || die "missing $*; install it (apt-get install $*) or run as root"
  command -v apt-get >/dev/null || die "missing $*; no apt-get to install it"
  log "installing $* (apt-get)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v etcd >/dev/null || as_root_install etcd-server
command -v openssl >/dev/null || as_root_install openssl

# Builds cmd/<name> of k8s.io/kubernetes@$K8S_VERSION into $cache/<name>. The module as the
# proxy serves it has no staging/ tree (each staging dir is a module of its own), so its own
# replace directives cannot work; a small build module requires it and points every staging
# module at its published release instead.
build_k8s_binary() { # name
  local name=$1 out=$cache/$1
  [ -x "$out" ] && return 0
  command -v go >/dev/null || die "go is needed to build $name $K8S_VERSION"
  log "building $name $K8S_VERSION from the k8s.io/kubernetes module (once; cached in ${cache#"$root"/})"
  local t0 dir moddir
  t0=$(date +%s)
  mkdir -p "$cache"
  dir=$cache/build
  export GOFLAGS=-buildvcs=false GOWORK=off
  moddir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -f "$moddir/go.mod" ] || die "go mod download k8s.io/kubernetes@$K8S_VERSION gave no module"
  if [ ! -f "$dir/go.sum" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    {
      printf 'module kube-build\n\ngo 1.24.0\n\n'
      grep -m1 '^godebug ' "$moddir/go.mod" || true
      printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
      sed -n 's/^\t\(k8s\.io\/[a-z-]*\) v0\.0\.0$/\t\1 => \1 '"$STAGING_VERSION"'/p' "$moddir/go.mod"
      printf ')\n'
    } >"$dir/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >"$dir/tools.go"
    (cd "$dir" && go mod tidy) || { rm -f "$dir/go.sum"; die "could not resolve the modules of kube-apiserver $K8S_VERSION"; }
  fi
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local v=k8s.io/component-base/version
  (cd "$dir" && go build -trimpath -o "$out.tmp" \
    -ldflags "-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
    "k8s.io/kubernetes/cmd/$name") || die "building $name $K8S_VERSION failed"
  mv "$out.tmp" "$out"
  log "built $name in $(($(date +%s) - t0)) s"
}

build_k8s_binary kube-apiserver
apiserver=$cache/kube-apiserver

# kubectl renders the kustomizations too: it needs components support (kustomize v4+,
# kubectl 1.21+).
kubectl=$(command -v kubectl || true)
if [ -z "$kubectl" ] || ! "$kubectl" kustomize deploy/overlays/single-process >/dev/null 2>&1; then
  build_k8s_binary kubectl
  kubectl=$cache/kubectl
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/k8s-validate.XXXXXX")
pids=()
cleanup() {
  local rc=$? pid
  # The API server first, so it does not log etcd vanishing under it.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three free loopback ports (etcd client, etcd peer, API server): the kernel picks them.
read -r etcd_port peer_port api_port < <(node -e '
  const net = require("node:net");
  const take = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => ok(s)); });
  Promise.all([take(), take(), take()]).then((ss) => { console.log(ss.map((s) => s.address().port).join(" ")); ss.forEach((s) => s.close()); });
')

etcd --name k8s-validate --data-dir "$tmp/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "k8s-validate=http://127.0.0.1:$peer_port" --logger=zap >"$tmp/etcd.log" 2>&1 &
pids+=($!)
etcd_pid=$!

# Serving certificate (self-signed, also the CA kubectl trusts), service-account signing key
# pair, and a static token with cluster-admin rights for kubectl.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$tmp/serving.key" -out "$tmp/serving.crt" 2>/dev/null
openssl genrsa -out "$tmp/sa.key" 2048 2>/dev/null
openssl rsa -in "$tmp/sa.key" -pubout -out "$tmp/sa.pub" 2>/dev/null
token=$(openssl rand -hex 24)
printf '%s,admin,admin,"system:masters"\n' "$token" >"$tmp/tokens.csv"

for i in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$etcd_port") 2>/dev/null && break
  kill -0 "$etcd_pid" 2>/dev/null || { tail -n 30 "$tmp/etcd.log" >&2; die "etcd exited"; }
  [ "$i" -lt 100 ] || die "etcd not listening after 10 s"
  sleep 0.1
done

# No controller-manager, scheduler or kubelet: nothing runs, the server only validates and
# stores. The endpoint reconciler is off because the advertised address is loopback.
"$apiserver" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --tls-cert-file="$tmp/serving.crt" --tls-private-key-file="$tmp/serving.key" --cert-dir="$tmp/certs" \
  --token-auth-file="$tmp/tokens.csv" --anonymous-auth=false --authorization-mode=AlwaysAllow \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$tmp/sa.pub" --service-account-signing-key-file="$tmp/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none \
  --profiling=false >"$tmp/kube-apiserver.log" 2>&1 &
pids+=($!)

export KUBECONFIG=$tmp/kubeconfig KUBECACHEDIR=$tmp/kube-cache
"$kubectl" config set-cluster throwaway --server="https://127.0.0.1:$api_port" \
  --certificate-authority="$tmp/serving.crt" --embed-certs >/dev/null
"$kubectl" config set-credentials admin --token="$token" >/dev/null
"$kubectl" config set-context throwaway --cluster=throwaway --user=admin >/dev/null
"$kubectl" config use-context throwaway >/dev/null

# /readyz turns ok once etcd answers and the bootstrap controllers (default namespaces,
# priority levels, …) are done.
for i in $(seq 240); do
  "$kubectl" get --raw=/readyz >/dev/null 2>&1 && break
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$tmp"/*.log >&2; die "etcd or kube-apiserver exited"; }
  done
  [ "$i" -lt 240 ] || { tail -n 30 "$tmp/kube-apiserver.log" >&2; die "kube-apiserver not ready after 60 s"; }
  sleep 0.25
done
server_version=$("$kubectl" get --raw=/version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
log "kube-apiserver $server_version ready on 127.0.0.1:$api_port (etcd $(etcd --version | sed -n 's/^etcd Version: //p')) after $(($(date +%s) - started)) s"

# name → kustomization directory. Component variants are rendered from a throwaway
# kustomization outside the tree (kustomize takes relative paths only), allowed to load them.
targets=()
for d in deploy/overlays/*/; do targets+=("${d%/}"); done
targets+=(deploy/base)
variant() { # name component...
  local name=$1 dir=$tmp/variants/$1
  shift
  mkdir -p "$dir"
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents:\n' \
      "$(realpath --relative-to="$dir" deploy/base)"
    for c in "$@"; do printf '  - %s\n' "$(realpath --relative-to="$dir" "deploy/components/$c")"; done
  } >"$dir/kustomization.yaml"
  targets+=("$dir")
}
for c in deploy/components/*/; do
  c=$(basename "$c")
  variant "base+$c" "$c"
done
variant "base+single-process+otel" single-process otel # deploy/README.md's example
variant "base+single-process+mutual-tls" single-process mutual-tls

failed=0
declare -A namespaces=()
for target in "${targets[@]}"; do
  name=${target#"$tmp/variants/"}
  name=${name#deploy/}
  rendered=$tmp/rendered.yaml
  if ! "$kubectl" kustomize --load-restrictor=LoadRestrictionsNone "$target" >"$rendered" 2>"$tmp/out"; then
    printf 'FAIL %-32s kustomize: %s\n' "$name" "$(cat "$tmp/out")"
    failed=$((failed + 1))
    continue
  fi
  # A dry run does not persist a Namespace, so the namespaces the objects go to are created
  # for real first (as deploy/README.md has the operator do). kustomize's output puts each
  # object's metadata at the top level, indented by two. Each namespace (and `default`, for
  # targets without one) warns on pods below Pod Security's `restricted` profile, which
  # the pod specs promise to meet.
  for ns in default $(awk '/^[^ #-]/ { top = $1 } top == "metadata:" && /^  namespace: / { print $2 }' "$rendered" | sort -u); do
    [ -n "${namespaces[$ns]:-}" ] && continue
    "$kubectl" get namespace "$ns" >/dev/null 2>&1 || "$kubectl" create namespace "$ns" >/dev/null
    "$kubectl" label namespace "$ns" pod-security.kubernetes.io/warn=restricted --overwrite >/dev/null
    namespaces[$ns]=1
  done
  if "$kubectl" apply --dry-run=server --validate=strict -f "$rendered" >"$tmp/out" 2>&1 &&
    ! grep -q 'would violate PodSecurity' "$tmp/out"; then
    count=$(grep -c '(server dry run)$' "$tmp/out" || true)
    printf 'ok   %-32s %3d objects\n' "$name" "$count"
    # Deprecations and other server warnings are shown, not fatal.
    grep '^Warning:' "$tmp/out" | sed 's/^/     /' || true
  else
    printf 'FAIL %-32s\n' "$name"
    grep -v '(server dry run)$' "$tmp/out" | sed 's/^/     /'
    if grep -q 'ensure CRDs are installed first' "$tmp/out"; then
      printf '     %s uses a kind the API server does not serve (a CustomResourceDefinition): apply the CRD to the throwaway server before the dry runs\n' "$name"
    fi
    failed=$((failed + 1))
  fi
done

log "k8s-validate: ${#targets[@]} targets against Kubernetes $server_version, $failed failed, $(($(date +%s) - started)) s"
[ "$failed" -eq 0 ]
