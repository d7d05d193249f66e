# Mozart's development loop. `make test` and `make demo` work on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DISTS := proto clients server trainer optimize
PROTO_SRC := proto/mozart_proto/v1/audio_classifier.proto \
             proto/mozart_proto/inference/model_config.proto \
             proto/mozart_proto/inference/grpc_service.proto
STAMP := $(VENV)/.installed

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): constraints.txt system-packages.txt requirements-dev.txt VERSION $(foreach d,$(DISTS),$(d)/pyproject.toml) tools/install-system-packages.sh tools/package-lock.json
	bash tools/install-system-packages.sh
	npm ci --silent --prefix tools
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the CPU build from this machine's disk.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt \
		$(foreach d,$(DISTS),-e ./$(d)) -r requirements-dev.txt
	# librosa (the tests' reference front end) compiles numba functions into an on-disk cache
	# on first use; two test workers doing that at once can fail ("no compiled object yet").
	$(PY) -c 'import numpy, librosa; librosa.feature.melspectrogram(y=numpy.zeros(4096, "float32"), sr=16000)'
	touch $@

# Full MLflow for the tests that start a real tracking server: the trainer's
# mlflow-skinny cannot run `mlflow server`. A venv of its own (inside the ignored
# .venv), so the trainer keeps skinny; full MLflow needs no torch.
MLFLOW_VENV := $(VENV)/mlflow-server
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed
$(MLFLOW_STAMP): constraints.txt
	test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt mlflow
	touch $@

.PHONY: venv
venv: $(STAMP) $(MLFLOW_STAMP) ## Create .venv with every distribution (editable) and the dev tools.

.PHONY: proto
proto: $(STAMP) ## Regenerate the checked-in gRPC stubs from the .proto files.
	$(PY) -m grpc_tools.protoc -I proto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto $(PROTO_SRC)

.PHONY: proto-check
proto-check: $(STAMP) ## Fail when the checked-in stubs differ from a fresh generation.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) -m grpc_tools.protoc -I proto --python_out=$$tmp --pyi_out=$$tmp \
		--grpc_python_out=$$tmp $(PROTO_SRC); \
	for f in $$(cd $$tmp && find . -name '*.py*' -type f); do \
		diff -u "proto/$$f" "$$tmp/$$f" || { echo "stale stub: proto/$$f (run make proto)"; exit 1; }; \
	done; echo "proto stubs are up to date"

.PHONY: lint
lint: $(STAMP) ## Static checks: ruff, ruff format, mypy.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/shellcheck -x scripts/*.sh
	$(PY) scripts/k8s_prometheus_rules.py --check
	$(PY) docker/grafana/dashboards.py --check

# Every distribution as its sdist, then its wheel built from that sdist alone (python -m
# build): a file the build needs from outside the folder fails here, not on PyPI. The build
# backend is the venv's setuptools (--no-isolation): an isolated build env per sdist and
# wheel cost minutes.
DIST_DIR := build/dist
.PHONY: bandit
bandit: $(STAMP) ## bandit over the packages, benchmarks and scripts: medium severity and above fail.
	$(VENV)/bin/bandit -q -r $(DISTS) benchmarks scripts -ll

.PHONY: sbom
sbom: dists ## CycloneDX SBOMs of the server and client wheels into build/dist (scripts/sbom.sh).
	bash scripts/sbom.sh

.PHONY: dists
dists: $(STAMP) ## Build each distribution's sdist and wheel (python -m build) into build/dist.
	rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	for d in $(DISTS); do \
		$(PY) -m build --no-isolation --outdir $(DIST_DIR) ./$$d >$(DIST_DIR).$$d.log 2>&1 \
			|| { tail -30 $(DIST_DIR).$$d.log; echo "python -m build $$d failed"; exit 1; }; \
	done; rm -f $(DIST_DIR).*.log; ls $(DIST_DIR)

# The proto and client wheels alone in fresh venvs of each Python the SDK supports: their
# dependencies come from the configured index under constraints.txt, and no project file is
# reachable (the checks run from the venv's folder). pythonX.Y on PATH, else pyenv's.
WHEEL_PYTHONS ?= 3.11 3.12
.PHONY: wheels-check
wheels-check: dists ## Install the proto and client wheels alone on Python 3.11 and 3.12; run mozart --help.
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for v in $(WHEEL_PYTHONS); do \
		python=$$( { python$$v -c 'import sys; print(sys.executable)' 2>/dev/null \
			|| ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v 2>/dev/null; } \
			| tail -1 || true); \
		[[ -n "$$python" ]] || { echo "wheels-check: no Python $$v (set WHEEL_PYTHONS)"; exit 1; }; \
		$$python -m venv $$tmp/$$v; \
		$$tmp/$$v/bin/python -m pip install --quiet --disable-pip-version-check \
			-c constraints.txt $(DIST_DIR)/mozart_proto-*.whl $(DIST_DIR)/mozart_client-*.whl; \
		(cd $$tmp && $$v/bin/mozart --help >/dev/null \
			&& $$v/bin/python -c 'import mozart_client, mozart_proto.logs') \
			|| { echo "wheels-check: the wheels do not work on $$python"; exit 1; }; \
		echo "wheels-check: $$($$tmp/$$v/bin/python --version): mozart --help and import mozart_client work"; \
	done

# Two pytest-xdist workers, a test file each at a time (module fixtures stay per file): many
# tests wait on servers, subprocesses and I/O, so two workers fill two cores.
# The slowest folders run first (tests/conftest.py), so no worker is left alone at the end.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25
# The checks before the suite are independent of each other: run them side by side.
PRE_TEST := lint bandit proto-check wheels-check $(MLFLOW_STAMP)
.PHONY: test
test: $(STAMP) ## Static checks, proto drift, the dists and wheels, the whole test suite, then the short load gate.
	$(MAKE) --no-print-directory -j4 --output-sync=target $(PRE_TEST)
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory bench-gate

DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
DEMO_ARGS ?=

# The demo's own venv: proto, client and server only (no torch, no dev tools).
$(DEMO_STAMP): constraints.txt proto/pyproject.toml clients/pyproject.toml server/pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt ./proto "./clients[audio-files]" ./server
	touch $@

.PHONY: demo
demo: $(DEMO_STAMP) ## Start a server on the default model and stream real music through it.
	$(DEMO_VENV)/bin/python demo/run_demo.py $(DEMO_ARGS)

DEMO_HTTP_PORT ?= 8000
.PHONY: demo-web
demo-web: $(DEMO_STAMP) ## Serve the default model and the live page on http://127.0.0.1:$(DEMO_HTTP_PORT)/ (Ctrl-C stops).
	@echo "open http://127.0.0.1:$(DEMO_HTTP_PORT)/ (Ctrl-C stops)"
	$(DEMO_VENV)/bin/python -m mozart_server --model-repository models \
		--http-port $(DEMO_HTTP_PORT) --drain-delay-s 0 --log-format text

MODEL_REPOSITORY ?= models
SERVE_ARGS ?=
.PHONY: serve
serve: $(STAMP) ## Start the gRPC server on $(MODEL_REPOSITORY) (more flags: SERVE_ARGS="--port 9001").
	$(PY) -m mozart_server --model-repository $(MODEL_REPOSITORY) $(SERVE_ARGS)

BENCH_CLIPS ?= demo/clips/*.flac
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP) ## Load benchmark vs the in-process ceiling, with the stream knee; then the heavy model's knee.
	$(PY) -m benchmarks.run --profile full --model-repository $(MODEL_REPOSITORY) \
		--clips '$(BENCH_CLIPS)' $(BENCH_ARGS)
	$(PY) -m benchmarks.run --profile knee --model heavy --clips '$(BENCH_CLIPS)' $(BENCH_ARGS)

.PHONY: bench-knee
bench-knee: $(STAMP) ## The stream knee (p99 <= 100 ms) of the default model and of the heavy one.
	$(PY) -m benchmarks.run --profile knee --model-repository $(MODEL_REPOSITORY) \
		--clips '$(BENCH_CLIPS)' $(BENCH_ARGS)
	$(PY) -m benchmarks.run --profile knee --model heavy --clips '$(BENCH_CLIPS)' $(BENCH_ARGS)

.PHONY: bench-gate
bench-gate: $(STAMP) ## Gated load benchmark against the baseline, ABBA (under 3 minutes); fails on a regression.
	$(PY) -m benchmarks.run --profile quick --gate --model-repository $(MODEL_REPOSITORY) \
		--clips '$(BENCH_CLIPS)' $(BENCH_ARGS)

OPTIMIZE_MODEL ?= models/composer-cnn/1
OPTIMIZE_ARGS ?=
.PHONY: optimize
optimize: $(STAMP) ## Build (or reuse) the default corpus, then build, gate and record the optimized artifacts of OPTIMIZE_MODEL.
	$(VENV)/bin/mozart data build-corpus --out data/corpus/default --no-progress
	$(VENV)/bin/mozart optimize $(OPTIMIZE_MODEL) --data data/corpus/default $(OPTIMIZE_ARGS)

TRAIN_CONFIG ?= trainer/configs/default.yaml
TRAIN_ARGS ?=
.PHONY: train
train: $(STAMP) ## Build (or reuse) the default corpus, train, evaluate and publish the next models/composer-cnn/<N>.
	start=$$SECONDS; \
	$(VENV)/bin/mozart data build-corpus --out data/corpus/default --no-progress; \
	$(VENV)/bin/mozart train --config $(TRAIN_CONFIG) --publish $(TRAIN_ARGS); \
	echo "make train: $$((SECONDS - start)) s"

# The operator's stack (docker/compose.yaml): the scripts find docker compose or podman.
.PHONY: stack-up stack-down stack-status stack-test dashboards k8s-rules
stack-up: ## Build and start the compose stack (docker/compose.yaml), waiting for health.
	bash scripts/stack-up.sh
stack-down: ## Stop the compose stack (ARGS=-v also removes its volumes).
	bash scripts/stack-down.sh $(ARGS)
stack-status: ## The stack's containers, each health endpoint, active alerts.
	bash scripts/stack-status.sh
stack-test: $(STAMP) ## Real Prometheus and Alertmanager against a real server, plus the compose, dashboard and env checks.
	$(VENV)/bin/pytest -q tests/deploy/test_stack.py tests/deploy/test_stack_compose.py \
		tests/deploy/test_stack_env.py tests/deploy/test_dashboards.py
dashboards: $(STAMP) ## Rewrite docker/grafana/dashboards/*.json from docker/grafana/dashboards.py.
	$(PY) docker/grafana/dashboards.py
k8s-rules: $(STAMP) ## Regenerate k8s/components/monitoring/prometheus-rules.yaml from k8s/monitoring's rule files.
	$(PY) scripts/k8s_prometheus_rules.py
