#!/usr/bin/env bash
# Smoke test of a built server image (ci.yml's image job, release.yml before a push):
# start it on the repository's models/, wait for health, classify a demo clip through
# the published port, stop it with SIGTERM and require exit code 0 (a clean drain).
#
#   scripts/image-smoke.sh IMAGE [PORT]
#
# DOCKER names the container CLI (default docker; podman works); MOZART the mozart
# command (default .venv/bin/mozart, else mozart on PATH). PORT defaults to 8001.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-docker}
MOZART=${MOZART:-$ROOT/.venv/bin/mozart}
[[ -x $MOZART ]] || MOZART=mozart

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 && $1 != -* ]] || usage
image=$1
port=${2:-8001}
name=mozart-smoke-$$
server=127.0.0.1:$port
cleanup() { "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$DOCKER" run -d --name "$name" -p "$server:8001" -v "$ROOT/models:/models:ro" "$image"
for _ in $(seq 1 60); do
  "$MOZART" health --server "$server" >/dev/null 2>&1 && break
  sleep 2
done
"$MOZART" health --server "$server" || { "$DOCKER" logs "$name" >&2; exit 1; }
"$MOZART" classify --server "$server" "$ROOT/demo/clips/mozart-k458-movement1.flac"
"$DOCKER" stop --time 30 "$name" >/dev/null
code=$("$DOCKER" inspect --format '{{.State.ExitCode}}' "$name")
[[ $code == 0 ]] || { echo "image-smoke.sh: $image exited $code after SIGTERM" >&2; exit 1; }
echo "image-smoke.sh: $image served, classified and drained (exit code 0)"
