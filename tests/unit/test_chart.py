"""The Helm chart, with the real tools: helm lint and template per values file, kubeconform -strict on the output,
the values schema refusing bad values, and the rendered settings being ones the operator accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from finetune_operator import config

from tests import charttools
from tests.charttools import CHART, CI_VALUES, ROOT

VALUES_IDS = ["defaults", *(path.name.removesuffix("-values.yaml") for path in CI_VALUES)]
VALUES_SETS: list[list[Path]] = [[], *([path] for path in CI_VALUES)]
PUBLIC_REGISTRIES = ("docker.io", "ghcr.io", "quay.io", "gcr.io", "registry.k8s.io")


def _objects(values: list[Path] | None = None, **sets: str) -> list[dict[str, Any]]:
    return charttools.documents(charttools.template(values, sets))


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def _operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def test_chart_crds_are_the_generated_ones() -> None:
    chart_crds = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    crds = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert chart_crds == crds, "helm/finetune-operator/crds/ differs from crds/: run `make crd`"


@pytest.mark.parametrize("values", VALUES_SETS, ids=VALUES_IDS)
def test_lint(values: list[Path]) -> None:
    charttools.run("helm", "lint", "--strict", str(CHART), *charttools.values_args(values))


@pytest.mark.parametrize("values", VALUES_SETS, ids=VALUES_IDS)
def test_rendered_manifests_pass_kubeconform(values: list[Path], tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(charttools.template(values))
    summary = charttools.kubeconform([rendered])
    assert "Invalid: 0, Errors: 0" in summary, summary


def test_examples_pass_kubeconform_with_the_crd_schema() -> None:
    summary = charttools.kubeconform(sorted((ROOT / "examples").glob("*.yaml")), skip=())
    assert "Invalid: 0, Errors: 0, Skipped: 0" in summary, summary


def test_kubeconform_catches_a_bad_manifest(tmp_path: Path) -> None:
    """The schemas are really applied: an unknown field in a Deployment, a bad FineTuneJob and a ServiceMonitor
    with a string for its endpoints fail."""
    objects = _objects()
    deployment = _one(objects, "Deployment")
    deployment["spec"]["replica"] = 1
    job = next(yaml.safe_load_all((ROOT / "examples" / "tiny-lora.yaml").read_text()))
    job["spec"]["training"] = {"epochs": "many"}
    monitor = _one(_objects([CHART / "ci" / "monitoring-values.yaml"]), "ServiceMonitor")
    monitor["spec"]["endpoints"] = "metrics"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([deployment, job, monitor]))
    done = charttools.run("kubeconform", "-strict", "-schema-location",
                          f"{charttools.kube_schemas()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
                          str(bad), check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "replica" in done.stdout and "epochs" in done.stdout and "endpoints" in done.stdout, done.stdout


BAD_VALUES = {
    "replicas": ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
    "pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
    "namespace": (
        {"watchNamespaces": ["Team_A"]},
        "at '/watchNamespaces/0': 'Team_A' does not match pattern",
    ),
    "typo": (
        {"operator": {"stallAfterSecond": 60}},
        "at '/operator': additional properties 'stallAfterSecond'",
    ),
    "digest": (
        {"trainer": {"image": {"digest": "latest"}}},
        "at '/trainer/image/digest': 'latest' does not match",
    ),
    "toleration": (
        {"trainer": {"tolerations": [{"key": "spot", "operator": "In"}]}},
        "at '/trainer/tolerations/0/operator': value must be one of",
    ),
}
"""Bad values files and the schema's message naming the field (tests/integration: `helm install --dry-run`)."""


@pytest.mark.parametrize(("values", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_with_the_schema_message(
    values: dict[str, Any], message: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    done = charttools.run("helm", "template", "ft", str(CHART), "-f", str(bad), check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert message in done.stderr, done.stderr


def test_several_replicas_need_leader_election() -> None:
    done = charttools.run("helm", "template", str(CHART), "--set", "replicaCount=2",
                          "--set", "leaderElection.enabled=false", check=False)  # fmt: skip
    assert done.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled: true" in done.stderr


@pytest.mark.parametrize("values", VALUES_SETS, ids=VALUES_IDS)
def test_operator_accepts_the_rendered_settings(values: list[Path]) -> None:
    env = {e["name"]: e.get("value", "finetune-system") for e in _operator_container(_objects(values))["env"]}
    unknown = {
        name
        for name in env
        if name.removeprefix(config.ENV_PREFIX).lower() not in config.Settings.model_fields
    }
    assert not unknown, f"the chart sets variables the operator does not read: {unknown}"
    settings = config.from_env(env)
    assert settings.lease_namespace == "finetune-system"


def test_rbac_has_no_wildcards() -> None:
    for values in VALUES_SETS:
        for obj in _objects(values):
            if obj["kind"] in ("Role", "ClusterRole"):
                for rule in obj["rules"]:
                    fields = [*rule.get("apiGroups", []), *rule["resources"], *rule["verbs"]]
                    assert "*" not in fields, f"{obj['kind']} {obj['metadata']['name']}: {rule}"


def test_images_registries_and_pull_secrets() -> None:
    objects = _objects([CHART / "ci" / "registry-values.yaml"])
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert pod["containers"][0]["image"] == "registry.example.com/ml/finetune-operator:0.1.0-rc1"
    assert env["FINETUNE_TRAINER_IMAGE"] == (
        "gpu-registry.example.com/finetune-trainer@sha256:" + "0123456789abcdef" * 4
    )
    assert env["FINETUNE_IMAGE_PULL_POLICY"] == "Always"
    assert env["FINETUNE_SERVICE_ACCOUNT"] == "trainer"
    assert env["FINETUNE_IMAGE_PULL_SECRETS"] == "gpu-regcred"
    assert env["FINETUNE_INSECURE_REGISTRIES"] == "registry.ml.svc:5000"
    settings = config.from_env({k: v for k, v in env.items() if v is not None})
    assert settings.trainer_node_selector == {"pool": "training"}
    assert [t.model_dump(by_alias=True, exclude_none=True) for t in settings.trainer_tolerations] == [
        {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"}
    ]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    defaults = charttools.template()
    assert not [r for r in PUBLIC_REGISTRIES if r in defaults], "an image is hard-coded to a public registry"


def test_restricted_pod_security() -> None:
    pod = _one(_objects(), "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    strategy = _one(_objects([CHART / "ci" / "monitoring-values.yaml"]), "Deployment")["spec"]["strategy"]
    assert strategy == {"type": "Recreate"}, "stand-bys are never Ready: a rolling update would never finish"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_watch_namespaces_bind_per_namespace() -> None:
    objects = _objects([CHART / "ci" / "namespaced-values.yaml"])
    bindings = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["kind"] == "ClusterRole"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    cluster_bindings = [o["roleRef"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert cluster_bindings == ["ft-finetune-operator-discovery"], "only cluster-wide reads"
    policies = [o["metadata"].get("namespace") for o in objects if o["kind"] == "NetworkPolicy"]
    assert sorted(policies) == ["finetune-system", "team-a", "team-b"]
    env = {e["name"]: e.get("value") for e in _operator_container(objects)["env"]}
    assert env["FINETUNE_NAMESPACES"] == "team-a,team-b" and env["FINETUNE_LEASE_NAME"] == "ft-leader"
