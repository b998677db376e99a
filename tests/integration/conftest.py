"""Fixtures for integration tests against a real kube-apiserver with fake (KWOK) GPU nodes.

The session fixture reuses a running cluster when `.cache/cluster/kubeconfig` answers, otherwise it runs
`hack/cluster/up.sh` (which builds the pinned binaries on first use, see its header for timings) and runs
`hack/cluster/down.sh` at session end. Set FINETUNE_KEEP_CLUSTER=1 to leave a cluster it started running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

# Make `tests.` importable however pytest is invoked (tests/invalid_specs/ is shared with the unit tests).
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from tests.integration.helpers import (  # noqa: E402
    CRD_DIR,
    GROUP,
    KUBECONFIG,
    PLURAL,
    ROOT,
    VERSION,
    Kube,
    crd_documents,
    fresh_namespace,
    install_crds,
    run_live,
    wait_until,
)
from tests.integration.kueue import KueueProcess  # noqa: E402

UP_TIMEOUT_S = 45 * 60  # a cold build of Kubernetes on 2 cores; warm starts take seconds
KUEUE_BUILD_TIMEOUT_S = 30 * 60  # a cold build of Kueue on 2 cores: 12 min; from the cache: a second


def _cluster_answers() -> bool:
    if not KUBECONFIG.is_file():
        return False
    try:
        probe = Kube.connect(KUBECONFIG)
        try:
            client.VersionApi(probe.api).get_code(_request_timeout=5)
        finally:
            probe.api.close()
    except Exception:
        return False
    return True


def _run_script(config: pytest.Config, name: str, timeout: float) -> None:
    run_live(config, [str(ROOT / "hack" / "cluster" / name)], timeout)


@pytest.fixture(scope="session")
def kube(pytestconfig: pytest.Config) -> Iterator[Kube]:
    """A running cluster: reused if `.cache/cluster/kubeconfig` answers, else started and later stopped."""
    started = False
    if not _cluster_answers():
        started = True
        try:
            _run_script(pytestconfig, "up.sh", UP_TIMEOUT_S)
        except BaseException:
            _run_script(pytestconfig, "down.sh", 120)
            raise
    kube = Kube.connect(KUBECONFIG)
    try:
        yield kube
    finally:
        kube.api.close()
        if started and os.environ.get("FINETUNE_KEEP_CLUSTER") != "1":
            _run_script(pytestconfig, "down.sh", 120)


@pytest.fixture(scope="session")
def crds(kube: Kube) -> list[str]:
    """Installs (or updates) every CRD in crds/ and waits until each is Established; returns their names."""
    docs = crd_documents(CRD_DIR)
    if not docs:
        pytest.fail(f"no CustomResourceDefinition found in {CRD_DIR}")
    names = install_crds(kube, docs)
    # Established means the API is served; the discovery/REST mapping can still lag a moment.
    wait_until(
        f"{PLURAL}.{GROUP} to be served",
        lambda: _list_works(kube),
        timeout=30,
    )
    return names


def _list_works(kube: Kube) -> bool:
    try:
        kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
    except ApiException:
        return False
    return True


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (with its default ServiceAccount), deleted afterwards."""
    with fresh_namespace(kube, request.node.name, "it", "integration") as name:
        yield name


@pytest.fixture(scope="session")
def kueue(kube: Kube, pytestconfig: pytest.Config) -> Iterator[KueueProcess]:
    """The pinned Kueue manager running against the cluster (tests/integration/kueue.py), stopped at session end.

    Kueue and its CRDs come from its Go module: skipped when Go is not installed.
    """
    if shutil.which("go") is None:
        pytest.skip(
            "the Kueue tests build Kueue from its Go module (hack/cluster/build.sh --kueue): install Go"
        )
    bin_dir = run_live(
        pytestconfig,
        [str(ROOT / "hack" / "cluster" / "build.sh"), "--kueue"],
        KUEUE_BUILD_TIMEOUT_S,
        stdout=subprocess.PIPE,
    )
    process = KueueProcess(
        kube, Path(bin_dir.splitlines()[-1]) / "kueue", ROOT / ".cache" / "integration" / "kueue"
    )
    process.install()
    process.start()
    try:
        yield process
    finally:
        process.stop()
