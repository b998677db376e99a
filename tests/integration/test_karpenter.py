"""Karpenter, for real: its controller with the KWOK cloud provider makes nodes from a NodePool for jobs whose GPUs
are not there, the FineTuneJob shows the NodeClaim's progress in its `Provisioning` condition, and the node goes
once the job is done (tests/integration/karpenter_process.py sets it up). The operator runs as the chart's
ServiceAccount, so the chart's rules are proven enough; it starts after Karpenter's CRDs are installed (it asks once).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.chart_release import ChartOperator, installed, running
from tests.integration.helpers import GPU_NODE_PREFIX, KWOK_RUN_DURATION, Kube
from tests.integration.karpenter_process import INSTANCE_TYPES, NODEPOOL, Karpenter, build
from tests.integration.operator_world import World, condition, finetunejob

pytestmark = pytest.mark.integration

H100 = INSTANCE_TYPES["p5.48xlarge"]  # not on the static nodes: only a node of the NodePool has it
PROVISION_S = 120.0  # Karpenter's batching, the node class's 20 s registration delay, the operator's poll


@pytest.fixture(scope="module")
def karpenter(kube: Kube, crds: list[str], pytestconfig: pytest.Config) -> Iterator[Karpenter]:
    process = Karpenter(kube, build(pytestconfig))
    process.install()
    try:
        process.start()
        yield process
    finally:
        process.uninstall()


@pytest.fixture(scope="module")
def chart_operator(
    kube: Kube, karpenter: Karpenter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChartOperator]:
    with (
        installed(kube, "image.tag=it") as release,
        running(release, tmp_path_factory.mktemp("op")) as process,
    ):
        yield process


@pytest.fixture
def world(kube: Kube, namespace: str, chart_operator: ChartOperator) -> Iterator[World]:
    with World(kube, namespace, chart_operator) as world:
        yield world


def _when(
    world: World, name: str, kind: str, status: str, reason: str | None = None
) -> dict[str, Any] | None:
    """The job's status once its condition `kind` has `status` (and `reason`), else None."""
    found = world.status(name)
    held = condition(found, kind)
    return found if held.get("status") == status and reason in (None, held.get("reason")) else None


def test_a_job_gets_a_node_from_the_nodepool_and_gives_it_back(world: World, karpenter: Karpenter) -> None:
    name = f"h100-{uuid.uuid4().hex[:6]}"
    world.output_volume(name)
    job = finetunejob(
        name, annotations={KWOK_RUN_DURATION: "5s"}, resources={"gpu": {"count": 1, "product": H100}}
    )
    world.create(job)

    status = world.wait(
        "Provisioning True", lambda: _when(world, name, "Provisioning", "True"), timeout=PROVISION_S
    )
    provisioning = condition(status, "Provisioning")
    assert provisioning["reason"] in ("Launching", "Launched"), provisioning  # registration waits 20 s
    claim_name = re.search(r"nodeclaim/(\S+)", provisioning["message"])
    assert claim_name is not None, provisioning
    assert f"(instance type p5.48xlarge, NodePool {NODEPOOL})" in provisioning["message"]
    claim = karpenter.nodeclaim(claim_name.group(1))
    assert claim is not None and claim["metadata"]["labels"]["karpenter.sh/nodepool"] == NODEPOOL
    assert status["phase"] == "Pending" and condition(status, "Reconciling")["reason"] == "Provisioning"
    assert condition(status, "Stalled")["status"] == "False", "waiting for a node on its way is not stalling"

    status = world.wait_phase(name, "Running", timeout=PROVISION_S)
    assert (condition(status, "Provisioning")["status"], condition(status, "Provisioning")["reason"]) == (
        "False",
        "NotProvisioning",
    )
    claim = karpenter.nodeclaim(claim_name.group(1))
    assert claim is not None
    node = claim["status"]["nodeName"]
    pod = world.pods(name)[0]
    assert pod["spec"]["nodeName"] == node and not node.startswith(GPU_NODE_PREFIX)

    world.wait_phase(name, "Succeeded", timeout=PROVISION_S)
    world.wait(
        f"the node {node} made for the job to go",
        lambda: karpenter.nodeclaim(claim_name.group(1)) is None and not _node_exists(world, node),
        timeout=PROVISION_S,
    )


def _node_exists(world: World, name: str) -> bool:
    return any(node.metadata.name == name for node in world.kube.core.list_node().items)


def test_when_no_nodepool_fits_the_job_stalls_with_karpenters_reason(
    world: World, karpenter: Karpenter
) -> None:
    name = f"greedy-{uuid.uuid4().hex[:6]}"
    world.output_volume(name)
    world.create(finetunejob(name, resources={"gpu": {"count": 9, "product": H100}}))  # 8 per node at most

    status = world.wait(
        "Provisioning False with Karpenter's reason",
        lambda: _when(world, name, "Provisioning", "False", "ProvisioningFailed"),
        timeout=PROVISION_S,
    )
    provisioning = condition(status, "Provisioning")
    assert provisioning["message"].startswith("Failed to schedule pod"), provisioning
    assert "no instance type has enough resources" in provisioning["message"]
    stalled = world.wait("Stalled", lambda: _when(world, name, "Stalled", "True"))
    assert "; Karpenter: Failed to schedule pod" in condition(stalled, "Stalled")["message"]
    assert karpenter.nodeclaims() == []
