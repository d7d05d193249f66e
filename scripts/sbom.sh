#!/usr/bin/env bash
# CycloneDX SBOMs of what Mozart ships: for each of the server (what the server image
# installs: proto + server) and the client SDK (proto + client), a fresh venv gets those
# wheels from build/dist under constraints.txt, and cyclonedx-py (cyclonedx-bom, pinned
# in constraints.txt, in a venv of its own) describes that venv.
#
#   scripts/sbom.sh [--out DIR]
#
# Needs the wheels (`make dists`). Writes DIR/mozart-{server,client}-VERSION.cdx.json
# (default DIR: build/dist, where release.yml picks the wheels and the SBOMs up).
# PYTHON is the interpreter for the venvs (default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
dist=$ROOT/build/dist
out=$dist

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) [[ $# -ge 2 ]] || usage; out=$2; shift ;;
    *) usage ;;
  esac
  shift
done
version=$(cat "$ROOT/VERSION")
work=$ROOT/build/sbom
pip=(-m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt")
mkdir -p "$work" "$out"
[[ -x $work/tool/bin/cyclonedx-py ]] || {
  "$PYTHON" -m venv "$work/tool"
  "$work/tool/bin/python" "${pip[@]}" cyclonedx-bom
}

# sbom NAME PYPROJECT WHEEL-GLOB...: one SBOM of a venv holding those wheels.
sbom() {
  local name=$1 pyproject=$2 wheels=()
  shift 2
  for pattern in "$@"; do
    # shellcheck disable=SC2206 # the glob is meant to expand
    wheels+=($dist/$pattern)
    [[ -f ${wheels[-1]} ]] || { echo "sbom.sh: no $dist/$pattern (run make dists)" >&2; exit 1; }
  done
  rm -rf "${work:?}/$name"
  "$PYTHON" -m venv "$work/$name"
  "$work/$name/bin/python" "${pip[@]}" "${wheels[@]}"
  "$work/tool/bin/cyclonedx-py" environment "$work/$name/bin/python" \
    --pyproject "$pyproject" --output-reproducible --of JSON \
    -o "$out/mozart-$name-$version.cdx.json"
  echo "sbom.sh: $out/mozart-$name-$version.cdx.json"
}
sbom server "$ROOT/server/pyproject.toml" 'mozart_proto-*.whl' 'mozart_server-*.whl'
sbom client "$ROOT/clients/pyproject.toml" 'mozart_proto-*.whl' 'mozart_client-*.whl'
