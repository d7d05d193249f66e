#!/usr/bin/env bash
# Applies the repository's rules on GitHub from the payloads kept in the repository:
# .github/branch-protection/repository.json (head branches deleted after merge, squash
# or rebase merges only) and one BRANCH.json per protected branch (required reviews from
# code owners, required status checks by job name, linear history, no force pushes or
# deletions), sent with `gh api`. tests/workspace/test_workflows_calls.py checks that
# every required check is a job of a workflow that runs on every pull request.
#
#   scripts/protect-branches.sh [--dry-run] [OWNER/REPO]
#
# OWNER/REPO defaults to the repository gh sees here. --dry-run prints the gh commands
# and the required checks without calling GitHub. GH names the gh binary (default gh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GH=${GH:-gh}
PAYLOADS=$ROOT/.github/branch-protection
BRANCHES=(main develop)

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
dry_run=0
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
[[ $# -le 1 && ${1:-} != -* ]] || usage
repo=${1:-}
if [[ -z $repo ]]; then
  if [[ $dry_run == 1 ]]; then repo=OWNER/REPO; else
    repo=$("$GH" repo view --json nameWithOwner --jq .nameWithOwner)
  fi
fi
[[ $repo =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || { echo "protect-branches.sh: not OWNER/REPO: $repo" >&2; exit 2; }

# gh_api ARGS...: runs gh api, or prints the command under --dry-run.
gh_api() {
  if [[ $dry_run == 1 ]]; then
    printf 'would run: %s api' "$GH"; printf ' %q' "$@"; printf '\n'
  else
    "$GH" api "$@" >/dev/null
  fi
}

for file in "$PAYLOADS/repository.json" "${BRANCHES[@]/#/$PAYLOADS/}"; do
  [[ $file == *.json ]] || file=$file.json
  python3 -m json.tool "$file" >/dev/null || { echo "protect-branches.sh: $file is not JSON" >&2; exit 1; }
done
gh_api --method PATCH "repos/$repo" --input "$PAYLOADS/repository.json"
for branch in "${BRANCHES[@]}"; do
  gh_api --method PUT "repos/$repo/branches/$branch/protection" --input "$PAYLOADS/$branch.json"
  python3 - "$PAYLOADS/$branch.json" "$branch" <<'PY'
import json
import sys

payload = json.load(open(sys.argv[1]))
for check in payload["required_status_checks"]["checks"]:
    print(f"{sys.argv[2]}: required check: {check['context']}")
PY
done
