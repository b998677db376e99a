"""The Helm chart on the real control plane: install, the operator running under the chart's (cluster-wide) RBAC,
upgrade and uninstall. tests/integration/chart_release.py says how the operator runs as the chart's ServiceAccount."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from finetune_api import GROUP, PLURAL, VERSION
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.charttools import CHART
from tests.integration.chart_release import ChartOperator, Release, installed, running
from tests.integration.helpers import KWOK_RUN_DURATION, Kube
from tests.integration.operator_world import World, finetunejob

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def release(kube: Kube, crds: list[str]) -> Iterator[Release]:
    with installed(kube, "image.tag=it") as release:
        yield release


@pytest.fixture(scope="module")
def chart_operator(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartOperator]:
    with running(release, tmp_path_factory.mktemp("chart-operator")) as process:
        yield process


@pytest.fixture
def world(kube: Kube, namespace: str, chart_operator: ChartOperator) -> Iterator[World]:
    with World(kube, namespace, chart_operator) as world:
        yield world


def test_operator_reconciles_under_the_charts_rbac(world: World, release: Release) -> None:
    name = f"rbac-{uuid.uuid4().hex[:6]}"  # a job of an earlier run may linger in a terminating namespace
    world.output_volume(name)
    world.create(finetunejob(name, annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase(name, "Running")
    world.wait("Events Pending and Running", lambda: {"Pending", "Running"} <= set(world.event_reasons(name)))
    lease = client.CoordinationV1Api(world.kube.api).read_namespaced_lease(
        release.fullname, release.namespace
    )
    assert lease.spec.holder_identity, "the operator holds the chart's Lease"
    ours = [line for line in world.operator.log_path.read_text().splitlines() if name in line]
    assert not [line for line in ours if "Forbidden" in line], "\n".join(ours)


def test_the_service_account_gets_nothing_more(release: Release) -> None:
    """Least privilege, checked by the API server: what the operator never does is denied."""
    denied = [("", "secrets", "list"), ("", "pods", "delete"), (GROUP, PLURAL, "delete"), (GROUP, PLURAL, "patch"),
              ("batch", "jobs", "update"), ("coordination.k8s.io", "leases", "list"),
              ("karpenter.sh", "nodeclaims", "create"), ("karpenter.sh", "nodeclaims", "delete"),
              ("kueue.x-k8s.io", "workloads", "patch")]  # fmt: skip
    allowed = [(GROUP, PLURAL, "watch"), ("batch", "jobs", "create"), ("", "events", "create"), ("", "events", "list"),
               ("karpenter.sh", "nodeclaims", "watch"), ("kueue.x-k8s.io", "workloads", "watch")]  # fmt: skip
    assert [rule for rule in denied if release.can(*rule)] == []
    assert [rule for rule in allowed if not release.can(*rule)] == []


def test_notes_say_what_to_do_next(release: Release) -> None:
    assert f"kubectl -n {release.namespace} rollout status deployment/{release.fullname}" in release.notes
    assert "kubectl get finetunejobs -w" in release.notes and "keeps the CRD" in release.notes


def test_bad_values_fail_install_with_the_schema_message(release: Release, tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump({"replicaCount": 0}))
    done = release.helm("install", "bad", str(CHART), "--dry-run", "-f", str(bad), check=False)
    assert done.returncode != 0
    assert "at '/replicaCount': minimum: got 0, want 1" in done.stderr, done.stderr


def test_upgrade_applies_a_changed_value(release: Release) -> None:
    release.helm("upgrade", release.name, str(CHART), "--reuse-values", "--set", "operator.stallAfterSeconds=60",
                 "--set", "trainer.image.tag=v2")  # fmt: skip
    env = release.env()
    assert env["FINETUNE_STALL_AFTER_SECONDS"] == "60"
    assert env["FINETUNE_TRAINER_IMAGE"] == "finetune-trainer:v2"
    assert (
        release.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == "finetune-operator:it"
    )
    status = yaml.safe_load(release.helm("status", release.name, "--output", "yaml").stdout)
    assert status["version"] == 2


def test_uninstall_keeps_the_crd_and_the_jobs(kube: Kube, release: Release, namespace: str) -> None:
    kube.create_finetunejob(namespace, finetunejob("kept"))
    release.helm("uninstall", release.name, "--wait")
    kube.ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "kept")
    rbac = client.RbacAuthorizationV1Api(kube.api)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(release.fullname)
    assert gone.value.status == 404
