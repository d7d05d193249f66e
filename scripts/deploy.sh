#!/usr/bin/env bash
# Deploys the server to an environment: render the overlay (with TAG as the server
# image's tag), show the diff against the cluster, apply, wait for the rollout, print
# the pods. docs/deployment.md, "Release flow".
#
#   scripts/deploy.sh [--dry-run] ENV [TAG]
#
# ENV is dev, staging or production; TAG defaults to the VERSION file (never `latest`).
# --dry-run renders and prints what would run, without talking to a cluster.
# KUBECTL names the kubectl binary (default: kubectl; the Argo Rollouts plugin
# `kubectl argo rollouts` is needed for staging and production).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
[[ $# -ge 1 && $# -le 2 ]] || usage
environment=$1
tag=${2:-$(cat "$MOZART_ROOT/VERSION")}
overlay=$(overlay_dir "$environment")
namespace=$(namespace_of "$environment")
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "not an image tag: '$tag'"
[[ $tag != latest ]] || die "refusing the tag 'latest': name a version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A throw-away kustomization on top of the overlay sets the tag without editing git.
cat > "$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work" "$overlay")
images:
  - name: ghcr.io/mozart-audio/mozart-server
    newTag: "$tag"
YAML
rendered=$work/rendered.yaml
"$KUBECTL" kustomize "$work" > "$rendered"
say "rendered $environment (namespace $namespace, mozart-server:$tag):"
sed -n 's/^kind: //p' "$rendered" | sort | uniq -c | awk '{printf "  %s %s\n", $1, $2}' >&2
grep -o 'image: .*' "$rendered" | sort -u | sed 's/^/  /' >&2

# kubectl diff exits 1 when there are differences, >1 on errors.
status=0
run "$KUBECTL" diff -f "$rendered" || status=$?
[[ $status -le 1 ]] || die "kubectl diff failed ($status)"
run "$KUBECTL" apply -f "$rendered"
if uses_rollout "$environment"; then
  # Argo Rollouts runs the canary and its analysis; a failed analysis aborts it and
  # this exits non-zero (the stable pods go on serving).
  run "$KUBECTL" argo rollouts status mozart-server -n "$namespace" --timeout 30m
  run "$KUBECTL" argo rollouts get rollout mozart-server -n "$namespace"
else
  run "$KUBECTL" -n "$namespace" rollout status deployment/mozart-server --timeout=10m
fi
run "$KUBECTL" -n "$namespace" get pods -l app.kubernetes.io/name=mozart-server -o wide
