"""The reconciler refuses a spec it cannot run before creating anything, with the reason, and shows the estimate."""

from __future__ import annotations

from typing import Any

import pytest
from finetune_operator.config import Settings
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.reconciler import Reconciler
from prometheus_client import CollectorRegistry

from tests.unit.operator_fixtures import FakeKube, body


class RecordingKube(FakeKube):
    """Records writes instead of sending them."""


def _reconcile(settings: Settings | None = None, **spec: Any) -> RecordingKube:
    kube = RecordingKube()
    reconciler = Reconciler(kube, settings or Settings(), OperatorMetrics(CollectorRegistry()))
    reconciler.reconcile(body(**spec), None, [])
    return kube


LLAMA8B_FULL = {"model": {"preset": "llama-3.1-8b-instruct"}, "method": {"type": "full"}}


@pytest.mark.parametrize(
    ("spec", "reason", "field"),
    [
        ({"dataset": {"uri": "https://10.0.0.5/d.csv"}}, "InvalidSpec", "spec.dataset.uri"),
        ({**LLAMA8B_FULL, "resources": {"gpu": {"count": 1, "minMemoryGiB": 24}}}, "DoesNotFit",
         "spec.resources.gpu.minMemoryGiB"),
        ({"model": {"uri": "hf://org/custom", "trustRemoteCode": True}}, "NotAllowed", "spec.model.trustRemoteCode"),
    ],
    ids=["invalid", "does-not-fit", "remote-code-not-allowed"],
)  # fmt: skip
def test_a_refused_spec_fails_at_once_and_creates_nothing(
    spec: dict[str, Any], reason: str, field: str
) -> None:
    kube = _reconcile(**spec)

    (status,) = kube.statuses
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (status["phase"], failed["reason"]) == ("Failed", reason)
    assert failed["message"].startswith(f"{field}: ")
    assert kube.created == []


def test_a_job_that_fits_is_created_with_its_estimate_in_status() -> None:
    kube = _reconcile(**LLAMA8B_FULL, distributed={"deepspeed": {"zeroStage": 3}, "nodes": 2},
                      resources={"gpu": {"count": 8, "minMemoryGiB": 80}})  # fmt: skip

    (status,) = kube.statuses
    assert status["phase"] == "Pending" and kube.created
    assert status["estimate"]["fits"] is True and status["estimate"]["capacityGiB"] == 80
    assert 10 < status["estimate"]["gpuMemoryGiB"] < 80


def test_the_fake_and_the_real_client_both_implement_kube_api() -> None:
    from finetune_operator.kube import Kube
    from finetune_operator.kubeapi import KubeApi

    assert isinstance(FakeKube(), KubeApi)
    assert all(callable(getattr(Kube, name, None)) for name in dir(KubeApi) if not name.startswith("_"))


def test_remote_code_runs_where_the_installation_allows_it() -> None:
    kube = _reconcile(
        Settings(allow_trust_remote_code=True), model={"uri": "hf://org/custom", "trustRemoteCode": True}
    )
    assert kube.statuses[0]["phase"] == "Pending" and kube.created
