#!/usr/bin/env bash
# Smoke test of a deployed service (deployment.yml, after the rollout): health, the
# loaded models, and one demo clip classified end to end through the public address.
#
#   scripts/deploy-smoke.sh SERVER
#
# SERVER is what `mozart --server` takes (host:port, grpcs://host:port...). MOZART_TOKEN
# and the other MOZART_* client settings come from the environment; MOZART names the
# mozart command (default .venv/bin/mozart, else mozart on PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOZART=${MOZART:-$ROOT/.venv/bin/mozart}
[[ -x $MOZART ]] || MOZART=mozart
[[ $# -eq 1 && $1 != -* ]] || { sed -n 's/^#   //p' "$0" >&2; exit 2; }
server=$1
for _ in $(seq 1 30); do
  "$MOZART" health --server "$server" >/dev/null 2>&1 && break
  sleep 5
done
"$MOZART" health --server "$server"
"$MOZART" models list --server "$server"
"$MOZART" classify --server "$server" "$ROOT/demo/clips/mozart-k458-movement1.flac"
echo "deploy-smoke.sh: $server answers"
