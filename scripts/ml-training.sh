#!/usr/bin/env bash
# The training pipeline (ml-training.yml): build the corpus, train, evaluate, register the
# candidate in MLflow (the trainer moves the `champion` alias to it only when it beats the
# current champion on validation), fetch the run's evaluation report and model card into
# the report folder, and with --publish write the new version into models/ when it won.
#
#   scripts/ml-training.sh [--full] [--hpo TRIALS] [--publish] [--set KEY=VALUE]...
#
# Default: the smoke corpus and trainer/configs/smoke.yaml (minutes on a CPU); --full:
# the default corpus and trainer/configs/default.yaml. --hpo TRIALS first runs an Optuna
# search of TRIALS trials (`mozart train tune`). MLFLOW_TRACKING_URI selects the registry
# (unset: the trainer's sqlite store under mlruns/). Writes REPORTS/training.md (default
# build/reports) and, on GitHub, `promoted`, `version` and `folder` (the models/ folder
# published, or empty) to $GITHUB_OUTPUT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOZART=${MOZART:-$ROOT/.venv/bin/mozart}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
REPORTS=${REPORTS:-$ROOT/build/reports}

usage() { sed -n 's/^#   //p' "$0" >&2; exit 2; }
config=trainer/configs/smoke.yaml
corpus=(--smoke --out data/corpus/smoke)
trials=0
publish=0
overrides=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --full) config=trainer/configs/default.yaml; corpus=(--out data/corpus/default) ;;
    --hpo) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage; trials=$2; shift ;;
    --publish) publish=1 ;;
    --set) [[ $# -ge 2 ]] || usage; overrides+=(--set "$2"); shift ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
  shift
done

cd "$ROOT"
mkdir -p "$REPORTS"
"$MOZART" data build-corpus "${corpus[@]}" --no-progress
if [[ $trials -gt 0 ]]; then
  "$MOZART" train tune --config "$config" "${overrides[@]}" --trials "$trials" \
    | tee "$REPORTS/tuning.log"
fi
"$MOZART" train --config "$config" "${overrides[@]}" | tee "$REPORTS/training.log"

# "registered NAME vN: REASON"; the reason says whether the alias moved (tracking.py).
registered=$(grep -E '^registered ' "$REPORTS/training.log" || true)
[[ -n $registered ]] || { echo "ml-training.sh: the run registered no model" >&2; exit 1; }
run_id=$(sed -n 's/^run //p' "$REPORTS/training.log" | head -1)
name=$(sed -E 's/^registered ([^ ]+) v[0-9]+:.*/\1/' <<<"$registered")
version=$(sed -E 's/^registered [^ ]+ v([0-9]+):.*/\1/' <<<"$registered")
reason=${registered#*: }
promoted=false
if [[ $reason != *"does not beat"* ]]; then promoted=true; fi

"$PYTHON" - "$run_id" "$REPORTS" <<'PY'
import sys

from mlflow.artifacts import download_artifacts

run_id, reports = sys.argv[1], sys.argv[2]
download_artifacts(run_id=run_id, artifact_path="evaluation", dst_path=reports)
download_artifacts(run_id=run_id, artifact_path="model/MODEL_CARD.md", dst_path=reports)
PY

folder=""
if [[ $publish == 1 && $promoted == true ]]; then
  before=$(find models -mindepth 2 -maxdepth 2 -type d | sort)
  "$MOZART" models publish "models:/$name/$version" --repository models \
    | tee -a "$REPORTS/training.log"
  folder=$(comm -13 <(echo "$before") <(find models -mindepth 2 -maxdepth 2 -type d | sort))
fi
{
  echo "## Training run $run_id"
  echo
  echo "- config: \`$config\`, HPO trials: $trials"
  echo "- registered: $name v$version"
  echo "- champion: $promoted ($reason)"
  echo
  echo '```'
  cat "$REPORTS/training.log"
  echo '```'
} >"$REPORTS/training.md"
if [[ -n ${GITHUB_OUTPUT:-} ]]; then
  {
    echo "promoted=$promoted"
    echo "version=$version"
    echo "folder=$folder"
  } >>"$GITHUB_OUTPUT"
fi
echo "ml-training.sh: $name v$version, champion: $promoted ($reason)"
