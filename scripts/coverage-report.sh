#!/usr/bin/env bash
# Combines the coverage data of the test suites (scripts/ci-tests.sh writes
# REPORTS/coverage.SUITE) into one report: HTML and XML in build/coverage, a Markdown
# table on stdout (ci.yml appends it to the run's summary).
#
#   scripts/coverage-report.sh [REPORTS]
#
# REPORTS defaults to build/reports; COVERAGE is the coverage command (default
# .venv/bin/coverage); OUT the output folder (default build/coverage).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COVERAGE=${COVERAGE:-$ROOT/.venv/bin/coverage}
reports=${1:-$ROOT/build/reports}
out=${OUT:-$ROOT/build/coverage}
shopt -s nullglob
data=("$reports"/coverage.unit "$reports"/coverage.integration "$reports"/coverage.data \
  "$reports"/coverage.model)
found=()
for file in "${data[@]}"; do [[ -f $file ]] && found+=("$file"); done
[[ ${#found[@]} -gt 0 ]] || { echo "coverage-report.sh: no coverage data in $reports" >&2; exit 1; }
mkdir -p "$out"
export COVERAGE_FILE=$out/.coverage
"$COVERAGE" combine --keep "${found[@]}" >&2
"$COVERAGE" html -q -d "$out/html"
"$COVERAGE" xml -q -o "$out/coverage.xml"
echo "### Coverage (${#found[@]} of 4 suites)"
echo
"$COVERAGE" report --format=markdown --skip-covered
