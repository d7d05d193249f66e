# shellcheck shell=bash
# Shared by deploy.sh, rollback.sh, backup.sh and restore.sh: dry-run aware command
# runner, messages, and the overlay facts the scripts need. Sourced, never run.

MOZART_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
DRY_RUN=${DRY_RUN:-0}

say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "$*"; exit 2; }

# run CMD ARGS...: runs the command, or prints it (shell-quoted) under --dry-run.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf 'would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# overlay_dir ENV: the overlay folder of a known environment, or exit 2.
overlay_dir() {
  case $1 in
    dev | staging | production) printf '%s/k8s/overlays/%s\n' "$MOZART_ROOT" "$1" ;;
    *) die "unknown environment '$1' (dev, staging or production)" ;;
  esac
}

# namespace_of ENV: the namespace the overlay deploys to.
namespace_of() {
  sed -n 's/^namespace: *//p' "$(overlay_dir "$1")/kustomization.yaml"
}

# uses_rollout ENV: true when the overlay deploys an Argo Rollout.
uses_rollout() {
  grep -q 'components/rollout$' "$(overlay_dir "$1")/kustomization.yaml"
}

# model_uri_of ENV: the models:/NAME@ALIAS the overlay's init container publishes, if any.
model_uri_of() {
  sed -n 's/^ *- MOZART_MODEL_URI=//p' "$(overlay_dir "$1")/kustomization.yaml"
}
