#!/usr/bin/env bash
# Backs up what a Mozart deployment cannot rebuild: the model repository, the MLflow
# backend store (sqlite, copied with SQLite's online backup, safe while MLflow runs)
# and its artifact folder, and the dataset manifests. docs/deployment.md, "Backup".
#
#   scripts/backup.sh [--dry-run] [--models DIR] [--mlflow-db FILE]
#                     [--mlflow-artifacts DIR] [--datasets DIR] DEST
#
# DEST is a folder or s3://bucket/prefix (copied with `aws s3 cp`). The backup is
# DEST/mozart-YYYYmmddTHHMMSSZ/ with one archive per part, a `parts` file naming
# where each came from, and SHA256SUMS; its path is the last line printed.
# Give at least one part. An MLflow store on PostgreSQL/MySQL is backed up with
# that database's own tools (pg_dump), not here.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PYTHON=${PYTHON:-python3}

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
models='' mlflow_db='' artifacts='' datasets=''
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --models) models=${2:?--models needs a folder}; shift ;;
    --mlflow-db) mlflow_db=${2:?--mlflow-db needs a file}; shift ;;
    --mlflow-artifacts) artifacts=${2:?--mlflow-artifacts needs a folder}; shift ;;
    --datasets) datasets=${2:?--datasets needs a folder}; shift ;;
    -h | --help) usage ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ $# -eq 1 ]] || usage
dest=$1
[[ -n $models$mlflow_db$artifacts$datasets ]] || die "nothing to back up: give --models, --mlflow-db, --mlflow-artifacts or --datasets"
for folder in "$models" "$artifacts" "$datasets"; do
  [[ -z $folder || -d $folder ]] || die "not a folder: $folder"
done
[[ -z $mlflow_db || -f $mlflow_db ]] || die "not a file: $mlflow_db"

name=mozart-$(date -u +%Y%m%dT%H%M%SZ)
if [[ $dest == s3://* ]]; then
  staging=$(mktemp -d)
  trap 'rm -rf "$staging"' EXIT
  out=$staging/$name
else
  out=$dest/$name
fi
run mkdir -p "$out"

# archive PART FOLDER: PART.tar.gz of the folder's contents.
archive() {
  run tar -C "$2" -czf "$out/$1.tar.gz" .
  [[ $DRY_RUN == 1 ]] || printf '%s\t%s\n' "$1" "$(cd "$2" && pwd)" >> "$out/parts"
}
[[ -z $models ]] || archive models "$models"
[[ -z $artifacts ]] || archive mlflow-artifacts "$artifacts"
[[ -z $datasets ]] || archive datasets "$datasets"
if [[ -n $mlflow_db ]]; then
  # SQLite's backup API copies a consistent snapshot even while MLflow writes.
  run "$PYTHON" -c 'import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
with target:
    source.backup(target)' "$mlflow_db" "$out/mlflow.db"
  [[ $DRY_RUN == 1 ]] || printf 'mlflow-db\t%s\n' "$(cd "$(dirname "$mlflow_db")" && pwd)/$(basename "$mlflow_db")" >> "$out/parts"
fi
if [[ $DRY_RUN == 0 ]]; then
  (cd "$out" && sha256sum -- * > SHA256SUMS)
fi
if [[ $dest == s3://* ]]; then
  run aws s3 cp --recursive "$out" "${dest%/}/$name"
  out=${dest%/}/$name
fi
if [[ $DRY_RUN == 1 ]]; then say "would back up to $out"; else say "backed up to $out"; fi
printf '%s\n' "$out"
