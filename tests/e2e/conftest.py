"""Fixtures for the end-to-end tests: real pods on the kind cluster, the operator installed by its Helm chart.

The session fixture runs `hack/kind/install.sh` (the cluster from kind-config.yaml, built offline on first use; the
images from `make images`, loaded into the nodes; `helm upgrade --install` with hack/kind/values.yaml). A cluster
that was already running is reused and left running; one this session created is deleted at the end unless
FINETUNE_KEEP_CLUSTER=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from tests.e2e.kindkit import CLUSTER, KUBECONFIG, cluster_exists  # noqa: E402
from tests.integration.helpers import ROOT, Kube, fresh_namespace, run_live  # noqa: E402

INSTALL_TIMEOUT_S = (
    60 * 60
)  # cold: node image, trainer image (PyTorch from PyPI) and loading it into the node


def _run(config: pytest.Config, script: str, timeout: float) -> None:
    run_live(config, [str(ROOT / "hack" / "kind" / script)], timeout, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def kube(pytestconfig: pytest.Config) -> Iterator[Kube]:
    """The kind cluster with the chart installed (created if needed, then deleted if this session created it)."""
    created = not cluster_exists()
    try:
        _run(pytestconfig, "install.sh", INSTALL_TIMEOUT_S)
    except BaseException:
        if created:
            _run(pytestconfig, "down.sh", 300)
        raise
    kube = Kube.connect(KUBECONFIG)
    try:
        yield kube
    finally:
        kube.api.close()
        if created and os.environ.get("FINETUNE_KEEP_CLUSTER") != "1":
            _run(pytestconfig, "down.sh", 300)


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (with its jobs, pods and volumes)."""
    with fresh_namespace(kube, request.node.name, "e2e", "e2e") as name:
        yield name


__all__ = ["CLUSTER", "kube", "namespace"]
