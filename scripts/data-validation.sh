#!/usr/bin/env bash
# The data-validation pipeline (data-validation.yml): build the smoke corpus, validate
# every file against its manifest (sha256, decoding, durations, class balance), and
# compare the dataset digest with the one recorded in the repository, so that a change
# to the data code or the corpus configuration that changes the data fails until the
# record is updated in the same pull request.
#
#   scripts/data-validation.sh [--corpus DIR] [--record FILE] [--update]
#
# --corpus DIR  validate DIR (it has a manifest.json) instead of building the smoke corpus
# --record FILE the recorded digests (default .github/dataset-digests.json; key: the
#               corpus name, "smoke" for the built one)
# --update      write the digest seen into FILE instead of comparing
# REPORTS is the report folder (default build/reports); MOZART the mozart command.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOZART=${MOZART:-$ROOT/.venv/bin/mozart}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
REPORTS=${REPORTS:-$ROOT/build/reports}

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
say() { printf 'data-validation.sh: %s\n' "$*" >&2; }
corpus=""
record=$ROOT/.github/dataset-digests.json
update=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --corpus) [[ $# -ge 2 ]] || usage; corpus=$2; shift ;;
    --record) [[ $# -ge 2 ]] || usage; record=$2; shift ;;
    --update) update=1 ;;
    -h | --help) usage ;;
    *) say "unknown argument $1"; usage ;;
  esac
  shift
done

mkdir -p "$REPORTS"
name=smoke
if [[ -z $corpus ]]; then
  corpus=$ROOT/build/data-validation/smoke
  rm -rf "$corpus"
  "$MOZART" data build-corpus --smoke --out "$corpus" --no-progress
else
  name=$(basename "$corpus")
fi
report=$REPORTS/data-validation-$name.json
"$MOZART" data validate "$corpus" --report "$report" || {
  say "$corpus failed validation: see $report"
  exit 1
}
exec "$PYTHON" - "$report" "$record" "$name" "$update" <<'PY'
import json
import sys
from pathlib import Path

report, record, name, update = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
seen = json.loads(report.read_text())["dataset_digest"]
recorded = json.loads(record.read_text()) if record.exists() else {}
if update == "1":
    recorded[name] = seen
    record.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    print(f"data-validation.sh: recorded {name} = {seen} in {record}")
    sys.exit(0)
expected = recorded.get(name)
if expected != seen:
    print(
        f"data-validation.sh: the {name} dataset digest is {seen}, the record says {expected}"
        f" ({record}): if the data change is intended, rerun with --update and commit the"
        " record with it",
        file=sys.stderr,
    )
    sys.exit(1)
print(f"data-validation.sh: {name} digest {seen} matches {record.name}")
PY
