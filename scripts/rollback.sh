#!/usr/bin/env bash
# Rolls an environment back: abort the canary (or undo the Deployment) to the previous
# revision, and move the model alias the overlay serves back to the previous champion.
# docs/deployment.md, "Manual rollback".
#
#   scripts/rollback.sh [--dry-run] [--image-only | --model-only] ENV
#
# --image-only leaves the model alias alone; --model-only only moves the alias and
# restarts the pods so that their init containers publish it again.
# MLFLOW_TRACKING_URI must reach the registry for the model step.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PYTHON=${PYTHON:-python3}

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
image=1
model=1
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --image-only) model=0 ;;
    --model-only) image=0 ;;
    -h | --help) usage ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ $# -eq 1 ]] || usage
[[ $image == 1 || $model == 1 ]] || die "--image-only and --model-only exclude each other"
environment=$1
namespace=$(namespace_of "$environment")
model_uri=$(model_uri_of "$environment")
dry=()
[[ $DRY_RUN == 0 ]] || dry=(--dry-run)

if [[ $model == 1 ]]; then
  if [[ -z $model_uri ]]; then
    say "$environment serves models from a volume: no alias to move"
  else
    # Moves NAME@ALIAS to the newest earlier version that was champion; prints both.
    "$PYTHON" "$MOZART_ROOT/scripts/model_alias.py" "${dry[@]}" previous "$model_uri"
  fi
fi

if uses_rollout "$environment"; then
  if [[ $image == 1 ]]; then
    # abort: the canary scales down and the stable ReplicaSet takes all the traffic;
    # undo: the Rollout's spec goes back to the previous revision, so the next apply
    # does not roll the bad one out again.
    run "$KUBECTL" argo rollouts abort mozart-server -n "$namespace"
    run "$KUBECTL" argo rollouts undo mozart-server -n "$namespace"
  elif [[ -n $model_uri ]]; then
    run "$KUBECTL" argo rollouts restart mozart-server -n "$namespace"
  fi
  run "$KUBECTL" argo rollouts status mozart-server -n "$namespace" --timeout 30m
else
  if [[ $image == 1 ]]; then
    run "$KUBECTL" -n "$namespace" rollout undo deployment/mozart-server
  elif [[ -n $model_uri ]]; then
    run "$KUBECTL" -n "$namespace" rollout restart deployment/mozart-server
  fi
  run "$KUBECTL" -n "$namespace" rollout status deployment/mozart-server --timeout=10m
fi
