#!/usr/bin/env bash
# make stack-up: builds the images and starts docker/compose.yaml, waiting for health.
# Extra arguments go to `compose up` (e.g. a service name).
# shellcheck source=scripts/stack-lib.sh
source "$(dirname "$0")/stack-lib.sh"
if [[ ! -f "$ENV_FILE" ]]; then
    echo "no docker/.env: cp docker/.env.example docker/.env and set GRAFANA_ADMIN_PASSWORD" >&2
    exit 1
fi
python3 "$ROOT/docker/grafana/dashboards.py" --check 2>/dev/null \
    || "$ROOT/.venv/bin/python" "$ROOT/docker/grafana/dashboards.py" --check
GIT_COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
    compose up --detach --build --wait "$@"
"$(dirname "$0")/stack-status.sh"
