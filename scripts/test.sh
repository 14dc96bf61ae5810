#!/usr/bin/env bash
# `npm test`: contract checks, the type-check, then every test tier: unit + integration (against
# real FerretDB/MongoDB and Redis), then the fault-injection suite alone (test/faults: its own
# database, Redis and mesh processes, killed and stopped under load; its timings are asserted,
# so it does not share the machine with the other tiers). Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
failed_checks=0
bash scripts/check-generated.sh || failed_checks=$((failed_checks + 1))
npx --no-install tsc --noEmit -p tsconfig.json && echo "typecheck: clean" || { echo "typecheck: failed" >&2; failed_checks=$((failed_checks + 1)); }

reports=.cache/vitest-report.json
rm -f .cache/vitest-report*.json
npx --no-install vitest run --project unit --project integration --passWithNoTests --reporter=default --reporter=json --outputFile.json=.cache/vitest-report.json "$@"
vitest_rc=$?
npx --no-install vitest run --project faults --passWithNoTests --reporter=default --reporter=json --outputFile.json=.cache/vitest-report-faults.json "$@"
faults_rc=$?

node -e '
  const fs = require("node:fs");
  const checks = Number(process.argv[1]);
  let passed = 0, failed = 0, skipped = 0;
  for (const file of process.argv.slice(2)) {
    try {
      const r = JSON.parse(fs.readFileSync(file, "utf8"));
      passed += r.numPassedTests; failed += r.numFailedTests; skipped += r.numPendingTests + r.numTodoTests;
      // A file that failed to load counts as a failure even with no test in it.
      for (const f of r.testResults) if (f.status === "failed" && f.assertionResults.length === 0) failed++;
    } catch { failed++; }
  }
  failed += checks;
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$failed_checks" "$reports" .cache/vitest-report-faults.json

[ "$vitest_rc" -eq 0 ] && [ "$faults_rc" -eq 0 ] && [ "$failed_checks" -eq 0 ]
