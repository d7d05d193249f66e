#!/usr/bin/env bash
# Shared by scripts/stack-{up,down,status}.sh: finds a compose implementation and runs
# docker/compose.yaml with docker/.env. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$ROOT/docker/compose.yaml"
ENV_FILE="$ROOT/docker/.env"

compose() {
    local runner=()
    if docker compose version >/dev/null 2>&1; then
        runner=(docker compose)
    elif podman compose version >/dev/null 2>&1; then
        runner=(podman compose)
    elif command -v podman-compose >/dev/null 2>&1; then
        runner=(podman-compose)
    else
        echo "no compose implementation (docker compose, podman compose or podman-compose);" \
             "without one, tests/deploy/test_stack*.py check these files with real" \
             "Prometheus and Alertmanager processes (docker/README.md)" >&2
        return 1
    fi
    local env_args=()
    [[ -f "$ENV_FILE" ]] && env_args=(--env-file "$ENV_FILE")
    "${runner[@]}" -f "$COMPOSE_FILE" "${env_args[@]}" "$@"
}
