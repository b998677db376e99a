# Entry points named in CONTRIBUTING.md. `make test` is the README's test command and what .ci/run calls.
SHELL := /bin/bash
PYTHON ?= python3
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST ?= $(PYTHON) -m pytest

.PHONY: test deps lint types unit trainer integration e2e crd chart-docs tools demo cluster-up cluster-down kind-up kind-down images bench

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

# The kind suite lands with the operator (see README, Status); until then there is no test file to run.
e2e:
	@if compgen -G 'tests/e2e/test_*.py' >/dev/null; then $(PYTEST) tests/e2e -m e2e; \
	else echo "e2e: no e2e tests yet (tests/e2e/README.md)"; fi

crd: deps
	finetune crd --api-docs docs/api.md
	cp crds/*.yaml helm/finetune-operator/crds/

# helm, kubeconform and fluxcel for the chart's tests (they build them on first use too); cached like the cluster's.
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

demo kind-up kind-down:
	@echo "make $@: not implemented yet; it lands with the kind/e2e work (see README, Status)." >&2; exit 1

bench:
	$(PYTHON) benchmarks/trainer_overhead.py
	$(PYTHON) benchmarks/operator_scale.py
