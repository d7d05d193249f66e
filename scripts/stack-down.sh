#!/usr/bin/env bash
# make stack-down: stops and removes the stack's containers; the named volumes (metrics,
# dashboards' state, MLflow runs) stay unless -v / --volumes is given.
# shellcheck source=scripts/stack-lib.sh
source "$(dirname "$0")/stack-lib.sh"
compose down --remove-orphans "$@"
