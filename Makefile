# directservice-operator: every target sets up what it needs (venv, Python deps, tool binaries).
SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# dev/ is the second source root (control plane, demo, bench): importable here, never shipped.
export PYTHONPATH := $(CURDIR)/dev$(if $(PYTHONPATH),:$(PYTHONPATH))
# Tool binaries are built once and cached outside the clone, keyed by version.
export DIRECTSERVICE_TOOLS_CACHE ?= $(HOME)/.cache/directservice-operator/tools

.PHONY: help venv tools test test-unit test-integration test-e2e lint lock image image-push fmt demo bench soak fuzz docs sync-crds clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## Create the virtualenv with runtime and dev dependencies

tools: venv ## Build or reuse etcd, kube-apiserver, kubectl, CoreDNS and helm (cached by version)
	$(PY) -m devenv.tools ensure

# Two workers, a test file each at a time: e2e tests mostly wait on polls, and each worker has
# its own control plane, CoreDNS, emulator and operator (the session fixtures).
TEST_WORKERS ?= 2

test: tools ## Run every test tier (unit, integration, e2e) against a real control plane
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: venv ## Run only the unit tier (no cluster)
	$(PY) -m pytest -m unit

test-integration: tools ## Run the integration tier (real kube-apiserver + etcd)
	$(PY) -m pytest -m integration

test-e2e: tools ## Run the end-to-end tier (operator + CoreDNS)
	$(PY) -m pytest -m e2e

lint: venv ## ruff (lint + format check), mypy --strict, import-linter layers, CRD copies
	$(VENV)/bin/ruff check operator dev tests examples
	$(VENV)/bin/ruff format --check operator dev tests examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m devenv.crdsync --check
	$(PY) -m devenv.crdref --check
	$(PY) -m devenv.locks check

lock: venv ## Regenerate requirements.lock (runtime deps) and requirements-build.lock, with hashes
	$(PY) -m devenv.locks lock

# The image: built once per hash of Dockerfile, lock files and operator/ (as root: podman,
# buildah, runc and mmdebstrap are apt-installed when missing); OCI archive and SBOM are
# written to ~/.cache/directservice-operator/image/<hash>/.
image: venv ## Build or reuse the operator image localhost/directservice-operator:<appVersion>
	$(PY) -m devenv.image ensure

image-push: venv ## Push the image for a release: make image-push REGISTRY=registry.example.com/team
	@test -n "$(REGISTRY)" || { echo "usage: make image-push REGISTRY=registry.example.com/team" >&2; exit 2; }
	$(PY) -m devenv.image push --registry "$(REGISTRY)"

fmt: venv ## Format and autofix with ruff
	$(VENV)/bin/ruff format operator dev tests examples
	$(VENV)/bin/ruff check --fix operator dev tests examples

demo: tools ## Start a local control plane, CoreDNS, emulator and operator; show the DNS answers (DEMO_ARGS=--exit-after-print)
	$(PY) -m devenv.demo $(DEMO_ARGS)

# The benchmark fleet for 30 minutes with random discovery faults and operator restarts:
# RSS and fd slopes, writes, and endpoint loss (must be 0); figures in docs/reliability.md.
soak: tools ## Soak: the fleet for 30 min with faults and restarts (SOAK_ARGS=--minutes 5 ...)
	$(PY) -m soak $(SOAK_ARGS)

# Coverage-guided fuzzing (dev/fuzz); crashing inputs land in tests/fuzz-corpus/<target>/, and the
# unit tier replays that corpus on every run.
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= all

fuzz: venv ## Fuzz the providers' JSON decoding, the spec and HTTP answer parsers, FUZZ_SECONDS per target
	$(PY) -m fuzz.run --target $(FUZZ_TARGET) --seconds $(FUZZ_SECONDS)

bench: tools ## Benchmarks against the real control plane; writes docs/benchmarks.md
	$(PY) -m bench $(BENCH_ARGS)

docs: venv ## Regenerate docs/crd-reference.md from the CRD (manifests/crds)
	$(PY) -m devenv.crdref

sync-crds: venv ## Copy the CRD (manifests/crds, the single source) into the Helm chart
	$(PY) -m devenv.crdsync

clean: ## Remove the virtualenv and caches in the clone (the tool cache stays)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
