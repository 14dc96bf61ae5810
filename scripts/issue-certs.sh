#!/usr/bin/env bash
# Issues a development CA and the mesh's mutual-TLS certificates with openssl
# (docs/internal-auth.md). Each identity gets a directory laid out like the Secret cert-manager
# makes (tls.crt, tls.key, ca.crt), so the same TLS_CERT/TLS_KEY/TLS_CA paths work in both.
#
#   bash scripts/issue-certs.sh [--out DIR] [--days N] [--namespace NS] [--trust-domain TD] [identity...]
#
# identity: service:<plugin> or operator:<name>; default: the four services and operator:admin.
#   DIR/ca.crt, DIR/ca.key             the CA (made once; later runs reuse it and only issue)
#   DIR/service-gateway/{tls.crt,tls.key,ca.crt}, DIR/operator-admin/…
# A certificate names its identity twice: URI SAN spiffe://<TD>/<kind>/<name> and CN <kind>:<name>.
# Service certificates also carry the DNS names a peer dials (<plugin>, <plugin>.<NS>.svc,
# <plugin>.<NS>.svc.cluster.local, localhost) and IP 127.0.0.1, and serve as both server and
# client certificate; operator certificates are client certificates only.
# Running it again for an identity replaces its certificate and key (a rotation).
set -euo pipefail

out=.certs
days=90
namespace=linquid
trust_domain=linquid.local
identities=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --namespace) namespace=$2; shift 2 ;;
    --trust-domain) trust_domain=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "issue-certs: unknown option $1" >&2; exit 2 ;;
    *) identities+=("$1"); shift ;;
  esac
done
[ ${#identities[@]} -gt 0 ] || identities=(service:workspaces service:customers service:analytics service:gateway operator:admin)
[[ $days =~ ^[1-9][0-9]*$ ]] || { echo "issue-certs: --days must be a positive integer" >&2; exit 2; }
command -v openssl >/dev/null || { echo "issue-certs: openssl is needed (apt-get install openssl)" >&2; exit 1; }

mkdir -p "$out"
umask 077 # keys readable by their owner only
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$out/ca.crt" ] || [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/O=Linquid/CN=Linquid internal CA (development)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
  echo "issue-certs: CA $out/ca.crt"
fi

for identity in "${identities[@]}"; do
  if ! [[ $identity =~ ^(service|operator):([a-z0-9][a-z0-9-]*)$ ]]; then
    echo "issue-certs: identity must be service:<name> or operator:<name>, got \"$identity\"" >&2
    exit 2
  fi
  kind=${BASH_REMATCH[1]}
  name=${BASH_REMATCH[2]}
  dir="$out/$kind-$name"
  mkdir -p "$dir"
  san="URI:spiffe://$trust_domain/$kind/$name"
  eku=clientAuth
  if [ "$kind" = service ]; then
    san="$san,DNS:$name,DNS:$name.$namespace.svc,DNS:$name.$namespace.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
    eku=serverAuth,clientAuth
  fi
  cat >"$tmp/ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku
subjectAltName=$san
EOF
  # A fresh key every time: a rotation replaces the key too, as cert-manager's rotationPolicy: Always does.
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Linquid/CN=$identity" \
    -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -extfile "$tmp/ext" -out "$tmp/tls.crt" 2>/dev/null
  cp "$out/ca.crt" "$tmp/ca.crt"
  # Renamed into place, so a process reloading them never reads a half-written file.
  for f in ca.crt tls.key tls.crt; do mv -f "$tmp/$f" "$dir/$f"; done
  echo "issue-certs: $identity $dir/tls.crt (valid $days days)"
done
