# Entry points named in CONTRIBUTING.md. `make test` is the README's test command and what .ci/run calls.
SHELL := /bin/bash
PYTHON ?= python3
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST ?= $(PYTHON) -m pytest

.PHONY: test deps lint types unit trainer integration e2e crd chart-docs tools demo cluster-up cluster-down kind-up kind-down images bench bench-trl

test: deps lint types unit trainer integration e2e

# Installs the package with every extra; re-runs only when pyproject.toml changes.
deps: .cache/deps.stamp
.cache/deps.stamp: pyproject.toml
	$(PYTHON) -m pip install --quiet --upgrade 'pip>=25'
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	@mkdir -p .cache && touch $@

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	lint-imports

types:
	$(PYTHON) -m mypy

unit:
	$(PYTEST) tests/unit

trainer:
	$(PYTEST) tests/trainer -m trainer

integration:
	$(PYTEST) tests/integration -m integration

# Real pods on the kind cluster (tests/e2e/conftest.py runs hack/kind/install.sh: cluster, images, chart).
e2e:
	$(PYTEST) tests/e2e -m e2e

crd: deps
	finetune crd --api-docs docs/api.md
	cp crds/*.yaml helm/finetune-operator/crds/

# helm, kubeconform, fluxcel and promtool for the chart's tests (they build them on first use too); cached like the cluster's.
tools:
	hack/tools/build.sh

# helm/README.md's configuration reference (values.schema.json) and metrics reference (the code's registries).
chart-docs: deps
	$(PYTHON) hack/chart_docs.py

cluster-up:
	hack/cluster/up.sh

cluster-down:
	hack/cluster/down.sh

images:
	hack/images/build.sh

# The tiny LoRA job end to end on kind (hack/kind/demo.sh); the cluster alone with kind-up / kind-down.
demo:
	hack/kind/demo.sh

kind-up:
	hack/kind/up.sh

kind-down:
	hack/kind/down.sh

bench:
	$(PYTHON) benchmarks/trainer_overhead.py
	$(PYTHON) benchmarks/operator_scale.py
	$(PYTHON) benchmarks/e2e_latency.py
	$(PYTHON) benchmarks/gpu_fit.py

# The trainer against TRL's SFTTrainer (about 7 minutes on 2 quiet cores); TRL is the `bench` extra only.
bench-trl:
	$(PYTHON) -m pip install --quiet -e '.[bench]'
	$(PYTHON) benchmarks/trainer_vs_trl.py --steps 8 --warmup 2 --repeats 3 --profile --json benchmarks/reports/trainer_vs_trl.json
