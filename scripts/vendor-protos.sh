#!/usr/bin/env bash
# Copies the few google.* protos the contracts import from the google-proto-files
# package into third_party/ (git-ignored), a buf module of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules/google-proto-files
for f in google/api/annotations.proto google/api/http.proto google/rpc/code.proto google/rpc/error_details.proto; do
  mkdir -p "third_party/$(dirname "$f")"
  cmp -s "$src/$f" "third_party/$f" || cp "$src/$f" "third_party/$f"
done
