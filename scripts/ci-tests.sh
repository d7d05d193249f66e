#!/usr/bin/env bash
# Runs one of the suites CI splits the tests into, with a JUnit report and coverage in
# build/reports/. ci.yml calls it once per job; the suites together are the whole of
# tests/ (tests/workspace/test_workflows_calls.py checks that no test file is left out).
#
#   scripts/ci-tests.sh [--print] SUITE [PYTEST_ARGS...]
#
# SUITE is unit, integration, data or model:
#   integration  the suites that start real servers and talk to them (server, HTTP,
#                client, Triton protocol, deployment)
#   data         the data pipeline: corpus rendering, manifests, splits, validation
#   model        the default model's accuracy gates (FP32 and INT8); `make bench-gate`
#                is the load gate, a step of its own
#   unit         everything else under tests/
# --print prints the pytest arguments of SUITE and exits.
# PYTEST is the pytest command (default .venv/bin/pytest); REPORTS the report folder
# (default build/reports; coverage data goes to REPORTS/coverage.SUITE, which
# scripts/coverage-report.sh combines); PYTEST_ARGS as in the Makefile (-n 2 --dist loadfile).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTEST=${PYTEST:-$ROOT/.venv/bin/pytest}
REPORTS=${REPORTS:-$ROOT/build/reports}
read -r -a workers <<<"${PYTEST_ARGS:--n 2 --dist loadfile}"

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
print=0
if [[ ${1:-} == --print ]]; then print=1; shift; fi
[[ $# -ge 1 ]] || usage
suite=$1
shift

integration=(tests/server tests/http tests/client tests/triton tests/deploy)
data=(tests/data)
model=(tests/trainer/test_default_model.py tests/optimize/test_default_model_int8.py)
case $suite in
  integration) args=("${integration[@]}") ;;
  data) args=("${data[@]}") ;;
  model) args=("${model[@]}") ;;
  unit)
    args=(tests)
    for path in "${integration[@]}" "${data[@]}" "${model[@]}"; do
      args+=("--ignore=$path")
    done
    ;;
  *) printf 'ci-tests.sh: unknown suite %s (unit, integration, data, model)\n' "$suite" >&2; exit 2 ;;
esac

if [[ $print == 1 ]]; then
  printf '%s\n' "${args[@]}"
  exit 0
fi
mkdir -p "$REPORTS"
cd "$ROOT"
export COVERAGE_FILE=$REPORTS/coverage.$suite
exec "$PYTEST" "${workers[@]}" "${args[@]}" \
  --junitxml="$REPORTS/$suite.xml" \
  --cov=mozart_proto --cov=mozart_client --cov=mozart_server --cov=mozart_trainer \
  --cov=mozart_optimize --cov-report=term:skip-covered \
  --cov-report="xml:$REPORTS/coverage-$suite.xml" "$@"
