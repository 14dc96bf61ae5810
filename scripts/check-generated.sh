#!/usr/bin/env bash
# Fails when the committed generated code differs from what proto/ generates (the protobuf code,
# and the REST client's types, made from the OpenAPI document the gateway builds from the
# contracts), or buf lint complains.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/vendor-protos.sh
npx --no-install buf lint
npx --no-install buf generate
npm run -s generate:client
if ! git diff --quiet -- services/contracts/src/gen services/client/src/schema.ts || [ -n "$(git ls-files --others --exclude-standard services/contracts/src/gen)" ]; then
  echo "generated code is stale: run \`npm run generate\` and commit services/contracts/src/gen and services/client/src/schema.ts" >&2
  git status --short services/contracts/src/gen services/client/src/schema.ts >&2
  exit 1
fi
echo "contracts: buf lint clean, generated code up to date"
