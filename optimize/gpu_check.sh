#!/usr/bin/env bash
# The prepared GPU check of the TensorRT path (docs/optimize.md, "The GPU path (TensorRT)").
#
# Run it from anywhere in a checkout, on a machine with an NVIDIA GPU and driver whose
# Python has TensorRT 10.x, onnxruntime-gpu and cuda-python installed (with this repo's
# packages). It
#   1. prints nvidia-smi and the versions of TensorRT, CUDA bindings and ONNX Runtime;
#   2. runs `mozart optimize --only tensorrt` on a scratch copy of the model version: it
#      builds model.plan, gates it on accuracy against FP32 and on its speed-up over the
#      FP32 ONNX Runtime reference on CUDAExecutionProvider;
#   3. prints the report, then runs the GPU tests of tests/optimize/test_tensorrt.py
#      (the engine against ONNX Runtime, concurrent contexts, the batch limit).
#
# Settings (environment):
#   MODEL_DIR  model version to optimize      (default models/composer-cnn/1)
#   DATA       dataset root for the gates     (default data/corpus/default)
#   OUT        parent of the output folder    (default /tmp); results in $OUT/mozart-gpu-check
#   PYTHON     the Python to use              (default .venv/bin/python, else python3)
#   GPU_TESTS  0 to skip step 3's pytest run  (default 1)
#
# Exit status: that of `mozart optimize` (1 when a gate refused the plan), else pytest's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODEL_DIR="${MODEL_DIR:-models/composer-cnn/1}"
DATA="${DATA:-data/corpus/default}"
RESULTS="${OUT:-/tmp}/mozart-gpu-check"
GPU_TESTS="${GPU_TESTS:-1}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

fail() {
    echo "gpu_check: $*" >&2
    exit 2
}

section() {
    printf '\n== %s ==\n' "$*"
}

command -v nvidia-smi >/dev/null 2>&1 \
    || fail "nvidia-smi is not on PATH: this machine has no NVIDIA GPU or driver"
[[ -f "$MODEL_DIR/model.onnx" && -f "$MODEL_DIR/model.json" ]] \
    || fail "$MODEL_DIR has no model.onnx and model.json"
[[ -d "$DATA" ]] || fail "no dataset at $DATA (set DATA)"
"$PYTHON" -c "import tensorrt" 2>/dev/null \
    || fail "TensorRT is not importable by $PYTHON (pip install 'tensorrt>=10,<11' cuda-python)"

section "GPU"
nvidia-smi

section "versions"
"$PYTHON" - <<'PY'
import importlib.metadata as metadata
import sys

import onnxruntime
import tensorrt

print("python", sys.version.split()[0])
print("tensorrt", tensorrt.__version__)
for package in ("cuda-python", "cuda-bindings", "onnxruntime-gpu", "onnxruntime"):
    try:
        print(package, metadata.version(package))
    except metadata.PackageNotFoundError:
        print(package, "not installed")
print("onnxruntime providers", onnxruntime.get_available_providers())

from mozart_optimize.tensorrt_plan import unavailable_reason

print("plan builder:", unavailable_reason() or "ready")
PY

# optimize writes model.plan and model.json into the version folder: work on a copy, so
# the checkout stays as it was and every run starts from the committed model. The timing
# cache is kept beside the results, so a rerun on the same GPU skips most kernel timing.
version="$(basename "$MODEL_DIR")"
model="$(basename "$(dirname "$MODEL_DIR")")"
work="$RESULTS/models/$model/$version"
cache="$RESULTS.timing-cache"
rm -rf "$RESULTS"
mkdir -p "$(dirname "$work")"
cp -R "$MODEL_DIR" "$work"
rm -f "$work/model.plan"
mkdir -p "$work/optimize"
if [[ -f "$cache" ]]; then cp "$cache" "$work/optimize/tensorrt.timing-cache"; fi

section "mozart optimize --only tensorrt ($model/$version)"
status=0
"$PYTHON" -m mozart_proto.cli optimize "$work" --data "$DATA" --only tensorrt \
    --reference-provider CUDAExecutionProvider --out-report "$RESULTS/report" || status=$?

section "report ($RESULTS/report)"
for report in "$RESULTS"/report/*.md; do
    [[ -e "$report" ]] && cat "$report"
done
if [[ -f "$work/model.plan" ]]; then
    echo "plan: $work/model.plan ($(wc -c <"$work/model.plan") bytes)"
fi
if [[ -f "$work/optimize/tensorrt-build.log" ]]; then
    echo "build log: $work/optimize/tensorrt-build.log"
fi
if [[ -f "$work/optimize/tensorrt.timing-cache" ]]; then
    cp "$work/optimize/tensorrt.timing-cache" "$cache"
fi

if [[ "$GPU_TESTS" != "0" ]]; then
    section "GPU tests (tests/optimize/test_tensorrt.py)"
    tests=0
    "$PYTHON" -m pytest tests/optimize/test_tensorrt.py -q -rs -m gpu || tests=$?
    if [[ "$status" -eq 0 ]]; then status=$tests; fi
fi

section "done"
echo "mozart optimize and tests exit status: $status; results in $RESULTS"
exit "$status"
