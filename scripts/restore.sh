#!/usr/bin/env bash
# Restores a backup made by backup.sh: checks every archive against SHA256SUMS, then
# puts each part back where it came from (the backup's `parts` file) or where a flag
# says. docs/deployment.md, "Restore".
#
#   scripts/restore.sh [--dry-run] [--force] [--models DIR] [--mlflow-db FILE]
#                      [--mlflow-artifacts DIR] [--datasets DIR] BACKUP
#
# BACKUP is a folder that backup.sh printed, or its s3:// address. A target that
# exists and is not empty is refused unless --force, which replaces it. Stop the
# MLflow server before restoring its store. The sqlite store names its artifacts by
# absolute path: restore the artifacts where they were, or the runs will not find them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
force=0
declare -A target=()
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --force) force=1 ;;
    --models) target[models]=${2:?--models needs a folder}; shift ;;
    --mlflow-db) target[mlflow-db]=${2:?--mlflow-db needs a file}; shift ;;
    --mlflow-artifacts) target[mlflow-artifacts]=${2:?--mlflow-artifacts needs a folder}; shift ;;
    --datasets) target[datasets]=${2:?--datasets needs a folder}; shift ;;
    -h | --help) usage ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ $# -eq 1 ]] || usage
backup=$1
if [[ $backup == s3://* ]]; then
  local_copy=$(mktemp -d)
  trap 'rm -rf "$local_copy"' EXIT
  # Even under --dry-run: the checksums and parts are read from the copy.
  aws s3 cp --recursive "$backup" "$local_copy"
  backup=$local_copy
fi
[[ -f $backup/parts && -f $backup/SHA256SUMS ]] || die "not a backup made by backup.sh: $backup"
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || die "checksums do not match: $backup"
say "checksums match: $backup"

# occupied PATH: true when PATH is a file, or a folder with anything in it.
occupied() { [[ -f $1 ]] || { [[ -d $1 ]] && [[ -n $(ls -A "$1") ]]; }; }

parts=() destinations=()
while IFS=$'\t' read -r part origin; do
  case $part in
    models | mlflow-artifacts | datasets | mlflow-db) ;;
    *) die "unknown part '$part' in $backup/parts" ;;
  esac
  parts+=("$part")
  destinations+=("${target[$part]:-$origin}")
done < "$backup/parts"

# Every target is checked before any is touched: a refusal changes nothing.
occupied_targets=()
for to in "${destinations[@]}"; do
  if occupied "$to"; then occupied_targets+=("$to"); fi
done
if [[ ${#occupied_targets[@]} -gt 0 && $force == 0 ]]; then
  die "exists and is not empty (--force replaces it): ${occupied_targets[*]}"
fi

for i in "${!parts[@]}"; do
  part=${parts[$i]} to=${destinations[$i]}
  if occupied "$to"; then run rm -rf "$to"; fi
  if [[ $part == mlflow-db ]]; then
    run mkdir -p "$(dirname "$to")"
    run cp "$backup/mlflow.db" "$to"
  else
    run mkdir -p "$to"
    run tar -C "$to" -xzf "$backup/$part.tar.gz"
  fi
  if [[ $DRY_RUN == 1 ]]; then say "would restore $part to $to"; else say "restored $part to $to"; fi
done
