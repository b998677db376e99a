"""The chart with `watchNamespaces`: RoleBindings in the watched namespace only, and the operator, running as the
chart's ServiceAccount, reconciles jobs there and nowhere else (tests/integration/chart_release.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.chart_release import ChartOperator, Release, installed, running
from tests.integration.helpers import KWOK_RUN_DURATION, Kube, wait_for_default_service_account
from tests.integration.operator_world import World, finetunejob

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def watched(kube: Kube) -> Iterator[str]:
    name = f"it-watched-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"finetune.io/test": "integration"}}})
    try:
        yield name
    finally:
        kube.core.delete_namespace(name)


@pytest.fixture(scope="module")
def release(kube: Kube, crds: list[str], watched: str) -> Iterator[Release]:
    with installed(kube, f"watchNamespaces={{{watched}}}") as release:
        yield release


@pytest.fixture(scope="module")
def chart_operator(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartOperator]:
    with running(release, tmp_path_factory.mktemp("chart-operator")) as process:
        yield process


def test_operator_reconciles_in_the_watched_namespace_only(
    kube: Kube, watched: str, namespace: str, release: Release, chart_operator: ChartOperator
) -> None:
    assert release.can("batch", "jobs", "create", watched) and not release.can(
        "batch", "jobs", "create", namespace
    )
    wait_for_default_service_account(kube, watched)
    inside, outside = World(kube, watched, chart_operator), World(kube, namespace, chart_operator)
    try:
        inside.output_volume("inside")
        inside.create(finetunejob("inside", annotations={KWOK_RUN_DURATION: "1h"}))
        inside.wait_phase("inside", "Running")
        outside.create(finetunejob("outside"))
        inside.wait("a second reconcile round", lambda: inside.event_reasons("inside") or None)
        assert "status" not in outside.get("outside"), "a job outside watchNamespaces was reconciled"
        assert "Forbidden" not in chart_operator.log_path.read_text(), chart_operator.log_tail()
    finally:
        inside.cleanup()
        outside.cleanup()
