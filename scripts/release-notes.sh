#!/usr/bin/env bash
# The release notes of a version: its section of CHANGELOG.md (Keep a Changelog), after
# checking that the tag, the VERSION file and the changelog agree. release.yml passes
# the output to `gh release create --notes-file`.
#
#   scripts/release-notes.sh TAG
#
# TAG is vX.Y.Z; exits 1 when VERSION is not X.Y.Z or CHANGELOG.md has no "## [X.Y.Z]".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHANGELOG=${CHANGELOG:-$ROOT/CHANGELOG.md}
[[ $# -eq 1 && $1 =~ ^v[0-9]+\.[0-9]+\.[0-9]+.*$ ]] || { sed -n 's/^#   //p' "$0" >&2; exit 2; }
version=${1#v}
recorded=$(cat "$ROOT/VERSION")
[[ $version == "$recorded" ]] || {
  echo "release-notes.sh: tag $1 but VERSION says $recorded" >&2
  exit 1
}
notes=$(awk -v v="$version" '
  index($0, "## [" v "]") == 1 { on = 1; next }
  on && /^## \[/ { exit }
  on && /^\[[^]]+\]: / { next }
  on { print }
' "$CHANGELOG")
[[ -n ${notes//[[:space:]]/} ]] || {
  echo "release-notes.sh: $CHANGELOG has no entries under ## [$version]" >&2
  exit 1
}
printf '%s\n' "$notes"
