# Ferry — the two commands a newcomer needs are `make demo` and `make test` (see README.md).
# Both install everything they need on a fresh machine; heavy builds are cached in ~/.cache/ferry.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml dev/pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: chaos help setup system-deps controlplane node image helm test unit integration crds crds-check demo down status bench fuzz lint

help:
	@echo "make demo   - local control plane + services + operator + examples"
	@echo "make test   - install everything, check CRDs, run unit and integration tests"
	@echo "make down   - stop the demo environment"
	@echo "make chaos  - kill the operator at random moments of each flow, print trials passed"
	@echo "make fuzz   - 500 fuzzed specs a kind against the apiserver and operator, with counts"

$(INSTALLED): pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]' -e ./dev
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(INSTALLED) system-deps controlplane node image helm

system-deps: $(INSTALLED)
	$(BIN)/python -m ferry_dev.services --ensure-packages

controlplane: $(INSTALLED)
	$(BIN)/python -c 'from ferry_dev.controlplane import ensure_binaries; print(ensure_binaries())'

# The real node: kubelet, kube-proxy, containerd, CoreDNS from Go modules (pins.env), cached.
node: $(INSTALLED) system-deps
	$(BIN)/python -c 'from ferry_dev.node import ensure_node_binaries; print(ensure_node_binaries())'

# Ferry's image from the Dockerfile (buildah on a local Debian base), cached by content hash.
image: $(INSTALLED) system-deps
	$(BIN)/python -m ferry_dev.image

# Helm, built from its Go module into ~/.cache/ferry/bin/helm-<HELM_VERSION>/, and the Gateway API CRDs (pins.env).
helm: $(INSTALLED)
	$(BIN)/python -m ferry_dev.tools

crds: $(INSTALLED)
	$(BIN)/ferry crds --dir crds

crds-check: $(INSTALLED)
	$(BIN)/ferry crds --check --dir crds

unit: $(INSTALLED) helm
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

integration: setup
	$(BIN)/python -m pytest tests/integration -q $(PYTEST_ARGS)

test: setup lint crds-check
	$(BIN)/python -m pytest tests/unit tests/integration -q $(PYTEST_ARGS)

demo: setup
	$(BIN)/ferry-dev up --operator --examples manifests/examples

down: $(INSTALLED)
	$(BIN)/ferry-dev down

status: $(INSTALLED)
	$(BIN)/ferry-dev status

bench: setup
	set -o pipefail; $(BIN)/python -m pytest tests/bench -q -s $(PYTEST_ARGS) | grep -E "BENCH|passed|failed"

# Chaos trials: the operator SIGKILLed at random moments of each flow (FERRY_CHAOS_TRIALS per scenario).
chaos: setup
	set -o pipefail; FERRY_CHAOS_TRIALS=$${FERRY_CHAOS_TRIALS:-4} $(BIN)/python -m pytest \
		tests/integration/test_chaos.py -q $(PYTEST_ARGS) | grep -E "CHAOS|passed|failed|Error"

# FERRY_FUZZ_SPECS_PER_KIND: 40 in the integration suite, 500 here.
fuzz: setup
	FERRY_FUZZ_SPECS_PER_KIND=$${FERRY_FUZZ_SPECS_PER_KIND:-500} \
		$(BIN)/python -m pytest tests/integration/test_fuzz_specs.py -q -s $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check operator dev tests
