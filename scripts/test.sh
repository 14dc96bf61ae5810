#!/usr/bin/env bash
# `npm test`: contract checks, the type-check, then every test tier (unit + integration against
# real FerretDB/MongoDB and Redis). Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
failed_checks=0
bash scripts/check-generated.sh || failed_checks=$((failed_checks + 1))
npx --no-install tsc --noEmit -p tsconfig.json && echo "typecheck: clean" || { echo "typecheck: failed" >&2; failed_checks=$((failed_checks + 1)); }

report=.cache/vitest-report.json
rm -f "$report"
npx --no-install vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
vitest_rc=$?

node -e '
  const fs = require("node:fs");
  const checks = Number(process.argv[2]);
  let passed = 0, failed = 0, skipped = 0;
  try {
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    passed = r.numPassedTests; failed = r.numFailedTests; skipped = r.numPendingTests + r.numTodoTests;
    // A file that failed to load counts as a failure even with no test in it.
    for (const f of r.testResults) if (f.status === "failed" && f.assertionResults.length === 0) failed++;
  } catch { failed++; }
  failed += checks;
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$report" "$failed_checks"

[ "$vitest_rc" -eq 0 ] && [ "$failed_checks" -eq 0 ]
