"""The committed FineTuneJob CRD on a real kube-apiserver: schema acceptance, validation, immutability."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from tests.integration.helpers import CRD_DIR, GROUP, KIND, PLURAL, ROOT, VERSION, Kube

pytestmark = pytest.mark.integration

CRD_NAME = f"{PLURAL}.{GROUP}"
MINIMAL: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": KIND,
    "metadata": {"name": "t"},
    "spec": {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "configmap://data/train.jsonl"}},
}


def example_jobs() -> list[Any]:
    params = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        with path.open() as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc and doc.get("kind") == KIND:
                    params.append(pytest.param(doc, id=f"{path.name}#{i}"))
    return params


def server_enforced_invalid_specs() -> list[Any]:
    from tests.invalid_specs import INVALID_SPECS

    return [pytest.param(case, id=case.id) for case in INVALID_SPECS if case.server_enforced]


def error_text(err: ApiException) -> str:
    """The API server's message plus the field paths of its causes."""
    try:
        status = json.loads(err.body)
    except (TypeError, ValueError):
        return str(err.body)
    causes = (status.get("details") or {}).get("causes") or []
    return " | ".join([status.get("message", "")] + [f"{c.get('field')}: {c.get('message')}" for c in causes])


def test_committed_crd_is_established_and_structural(kube: Kube, crds: list[str]) -> None:
    assert CRD_NAME in crds
    crd = kube.ext.read_custom_resource_definition(CRD_NAME)
    conditions = {c.type: c for c in crd.status.conditions}
    assert conditions["Established"].status == "True"
    assert conditions["NamesAccepted"].status == "True"
    # A non-structural schema is served but flagged with this condition.
    assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"].message
    assert crd.status.accepted_names.kind == KIND
    assert crd.spec.scope == "Namespaced"
    assert [v.name for v in crd.spec.versions if v.served and v.storage] == [VERSION]


def test_committed_crd_matches_what_the_server_stores(kube: Kube, crds: list[str]) -> None:
    """The server keeps the schema as committed (nothing dropped while converting it to its internal form)."""
    with (CRD_DIR / f"{GROUP}_{PLURAL}.yaml").open() as f:
        committed = yaml.safe_load(f)
    raw = kube.ext.read_custom_resource_definition(CRD_NAME, _preload_content=False)
    served = json.loads(raw.data)
    committed_versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in committed["spec"]["versions"]}
    served_versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in served["spec"]["versions"]}
    assert served_versions == committed_versions


def test_minimal_finetunejob_is_accepted(kube: Kube, crds: list[str], namespace: str) -> None:
    created = kube.create_finetunejob(namespace, copy.deepcopy(MINIMAL))
    assert created["metadata"]["name"] == "t"
    assert created["spec"]["model"]["preset"] == "tiny-llama"


@pytest.mark.parametrize("manifest", example_jobs())
def test_example_is_accepted(kube: Kube, crds: list[str], namespace: str, manifest: dict[str, Any]) -> None:
    body = copy.deepcopy(manifest)
    body["metadata"].pop("namespace", None)
    try:
        kube.create_finetunejob(namespace, body, dry_run=True)
    except ApiException as e:
        pytest.fail(f"example rejected ({e.status}): {error_text(e)}")


def edge_specs() -> list[Any]:
    from tests.invalid_specs import EDGE_SPECS

    return [pytest.param(manifest, id=name) for name, manifest in EDGE_SPECS.items()]


@pytest.mark.parametrize("manifest", edge_specs())
def test_edge_spec_is_accepted(kube: Kube, crds: list[str], namespace: str, manifest: dict[str, Any]) -> None:
    """Valid specs next to a CEL rule: the server accepts what the offline rules accept."""
    try:
        kube.create_finetunejob(namespace, copy.deepcopy(manifest), dry_run=True)
    except ApiException as e:
        pytest.fail(f"rejected ({e.status}): {error_text(e)}")


@pytest.mark.parametrize("case", server_enforced_invalid_specs())
def test_invalid_spec_is_rejected_by_server(kube: Kube, crds: list[str], namespace: str, case: Any) -> None:
    body = copy.deepcopy(case.manifest)
    body["metadata"].pop("namespace", None)
    with pytest.raises(ApiException) as excinfo:
        kube.create_finetunejob(namespace, body, dry_run=True)
    err = excinfo.value
    assert err.status in (400, 422), f"unexpected status {err.status}: {error_text(err)}"
    assert case.field in error_text(err), f"{case.field!r} not named in: {error_text(err)}"


IMMUTABLE_CHANGES = [
    pytest.param({"model": {"preset": "phi-3-mini-4k-instruct"}}, "spec.model", id="model.preset"),
    pytest.param({"method": {"type": "dora"}}, "spec.method", id="method.type"),
    pytest.param({"training": {"learningRate": 0.0001}}, "spec.training", id="training.learningRate"),
]


@pytest.fixture
def created_job(kube: Kube, crds: list[str], namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(MINIMAL)
    body["metadata"]["name"] = "immutable"
    body["spec"]["method"] = {"type": "lora"}
    body["spec"]["training"] = {"learningRate": 0.0002}
    created: dict[str, Any] = kube.create_finetunejob(namespace, body)
    return created


@pytest.mark.parametrize(("patch", "field"), IMMUTABLE_CHANGES)
def test_immutable_fields_cannot_change(
    kube: Kube, namespace: str, created_job: dict[str, Any], patch: dict[str, Any], field: str
) -> None:
    name = created_job["metadata"]["name"]
    with pytest.raises(ApiException) as excinfo:
        kube.patch_finetunejob(namespace, name, {"spec": patch})
    err = excinfo.value
    assert err.status == 422, f"unexpected status {err.status}: {error_text(err)}"
    text = error_text(err)
    assert field in text and "immutable" in text, text
    stored = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert stored["spec"] == created_job["spec"]


def test_suspend_can_change(kube: Kube, namespace: str, created_job: dict[str, Any]) -> None:
    name = created_job["metadata"]["name"]
    for suspend in (True, False):
        updated = kube.patch_finetunejob(namespace, name, {"spec": {"runPolicy": {"suspend": suspend}}})
        assert updated["spec"]["runPolicy"]["suspend"] is suspend
