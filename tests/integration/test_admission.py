"""The admission webhook behind the real API server, installed by the chart and served by the operator.

The chart is installed (its ValidatingWebhookConfiguration, failurePolicy and rules as rendered), and the operator
runs as the chart's ServiceAccount with the webhook on. Only the configuration's address is changed: the chart's
Service cannot reach a process on this machine, so its clientConfig points at https://127.0.0.1:PORT with a
certificate made for that address (tests/integration/certs.py). The chart's own certificates and Service are used
for real on kind (tests/e2e).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import finetune_api as api
import pytest
import yaml
from finetune_api.references import DOCKER_CONFIG_KEY, S3_KEYS, secret_refs
from finetune_cli.main import validate_file
from finetune_operator.admission import resolve_host
from finetune_operator.handlers import WEBHOOK_ID
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests import charttools
from tests.charttools import CHART
from tests.integration.certs import LOOPBACK, serving_certificate
from tests.integration.chart_release import ChartOperator, Release, installed, running
from tests.integration.helpers import GROUP, KUBECONFIG, PLURAL, ROOT, VERSION, Kube, wait_until
from tests.integration.operator_process import free_port
from tests.integration.operator_world import condition
from tests.invalid_specs import INVALID_SPECS, InvalidSpec, merge, minimal_job

pytestmark = pytest.mark.integration
DENIED = 'admission webhook "validate.finetunejobs.finetune.io" denied the request: '


class Webhook:
    """The release's webhook configuration, pointed at the operator process."""

    def __init__(self, release: Release, operator: ChartOperator, port: int, ca: bytes) -> None:
        self.release, self.operator, self.port, self.ca = release, operator, port, ca
        self.admission = client.AdmissionregistrationV1Api(release.kube.api)

    def point(self) -> None:
        """Replace the Service address by this machine's."""
        config = {
            "url": f"https://{LOOPBACK}:{self.port}/{WEBHOOK_ID}",
            "caBundle": base64.b64encode(self.ca).decode(),
        }
        self._client_config(config)

    def upgrade(self, *sets: str) -> None:
        """`helm upgrade` with `sets`: the chart's address back first (Helm merges its own with the live one)."""
        rendered = charttools.documents(self.release.helm("get", "manifest", self.release.name).stdout)
        ours = next(d for d in rendered if d["kind"] == "ValidatingWebhookConfiguration")
        self._client_config(ours["webhooks"][0]["clientConfig"])
        self.release.helm("upgrade", self.release.name, str(CHART), "--reuse-values",
                          *(arg for value in sets for arg in ("--set", value)))  # fmt: skip
        self.point()

    def _client_config(self, config: dict[str, Any]) -> None:
        patch = [{"op": "replace", "path": "/webhooks/0/clientConfig", "value": config}]
        self.admission.patch_validating_webhook_configuration(self.release.fullname, patch)

    def configuration(self) -> dict[str, Any]:
        found = self.admission.read_validating_webhook_configuration(self.release.fullname)
        return dict(self.release.kube.api.sanitize_for_serialization(found))


def refusal(kube: Kube, namespace: str, body: dict[str, Any], dry_run: bool = True) -> str | None:
    """The API server's message when it refuses to create `body` in `namespace` (strict field validation, as
    kubectl asks for), else None."""
    body = merge(body, {"metadata": {"namespace": namespace}})
    try:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body,
                                                    dry_run="All" if dry_run else None, field_validation="Strict")  # fmt: skip
    except ApiException as exc:
        assert exc.status in (400, 422, 500), exc  # 500: a failurePolicy Fail webhook that did not answer
        return str(json.loads(exc.body)["message"])
    return None


def validate_lines(manifest: dict[str, Any], tmp_path: Path) -> list[str]:
    """What `finetune validate` prints for `manifest`, without the file name."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return [line.removeprefix(f"{path}: ") for line in validate_file(path).problems]


@pytest.fixture(scope="module")
def release(kube: Kube, crds: list[str]) -> Iterator[Release]:
    with installed(kube, "image.tag=it") as release:
        yield release


@pytest.fixture(scope="module")
def webhook(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    folder = tmp_path_factory.mktemp("webhook")
    ca, port = serving_certificate(folder / "tls"), free_port()
    env = {"FINETUNE_WEBHOOK_PORT": str(port), "FINETUNE_WEBHOOK_CERT_DIR": str(folder / "tls")}
    with running(release, folder, env) as operator:
        hook = Webhook(release, operator, port, ca)
        hook.point()
        probe = merge(minimal_job(), {"spec": {"dataset": {"secretRef": {"name": "absent"}}}})
        wait_until("the webhook to answer", lambda: DENIED in (refusal(release.kube, "default", probe) or ""))
        yield hook


def test_the_chart_registers_the_handler_kopf_serves(webhook: Webhook) -> None:
    hook = webhook.configuration()["webhooks"][0]
    rendered = charttools.documents(
        charttools.run("helm", "template", "ft", str(CHART), "--show-only", "templates/webhook.yaml").stdout
    )
    service = next(d for d in rendered if d["kind"] == "ValidatingWebhookConfiguration")
    assert service["webhooks"][0]["clientConfig"]["service"]["path"] == f"/{WEBHOOK_ID}"
    assert (hook["failurePolicy"], hook["sideEffects"]) == ("Ignore", "None")
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]


@pytest.mark.parametrize("case", INVALID_SPECS, ids=[c.id for c in INVALID_SPECS])
def test_refused_as_validate_refuses(
    webhook: Webhook, namespace: str, case: InvalidSpec, tmp_path: Path
) -> None:
    lines = validate_lines(case.manifest, tmp_path)
    assert lines, "finetune validate refuses every case of the table"
    message = refusal(webhook.release.kube, namespace, case.manifest)
    assert message is not None, f"{case.id}: admitted"
    if case.server_enforced:
        assert case.field.removeprefix("spec.") in message, message  # the CRD refused it before the webhook
    elif case.field == "metadata.generateName":
        assert "metadata.name must be at most" in message  # the CRD's rule on the name generated from it
    else:
        assert message == DENIED + "; ".join(lines)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_admitted(webhook: Webhook, namespace: str, path: Path, tmp_path: Path) -> None:
    kube = webhook.release.kube
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != api.KIND:
            continue
        for use in secret_refs(api.parse(doc).spec):  # what the example expects the namespace to hold
            names = {"s3": S3_KEYS, "oci": (DOCKER_CONFIG_KEY,)}.get(use.scheme, (use.ref.key or "TOKEN",))
            data = {key: base64.b64encode(b"x").decode() for key in names}
            try:
                kube.core.create_namespaced_secret(
                    namespace, {"metadata": {"name": use.ref.name}, "data": data}
                )
            except ApiException as exc:
                assert exc.status == 409, exc
        assert validate_lines(doc, tmp_path) == []
        assert refusal(kube, namespace, doc) is None


def test_a_missing_secret_or_key_is_refused_by_name(webhook: Webhook, namespace: str) -> None:
    kube = webhook.release.kube
    job = merge(
        minimal_job("secret"),
        {"spec": {"model": {"accessSecretRef": {"name": "hf-token", "key": "HF_TOKEN"}}}},
    )
    assert refusal(kube, namespace, job) == DENIED + (
        f"spec.model.accessSecretRef.name: Secret 'hf-token' not found in namespace '{namespace}'; create it there "
        f"first (kubectl create secret generic hf-token -n {namespace} --from-literal=KEY=VALUE)"
    )
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hf-token"}, "stringData": {"TOKEN": "x"}}
    )
    assert refusal(kube, namespace, job) == DENIED + (
        "spec.model.accessSecretRef.key: Secret 'hf-token' has no key 'HF_TOKEN' (it has: TOKEN); name one of them "
        "or add the key to the Secret"
    )
    kube.core.patch_namespaced_secret("hf-token", namespace, {"stringData": {"HF_TOKEN": "x"}})
    assert refusal(kube, namespace, job, dry_run=False) is None

    # Admitted once: losing the Secret later does not block metadata changes, only spec changes.
    kube.core.delete_namespaced_secret("hf-token", namespace)
    kube.patch_finetunejob(namespace, "secret", {"metadata": {"labels": {"team": "a"}}})
    with pytest.raises(ApiException) as refused:
        kube.patch_finetunejob(namespace, "secret", {"spec": {"runPolicy": {"suspend": True}}})
    assert "Secret 'hf-token' not found" in json.loads(refused.value.body)["message"]


def test_a_host_that_resolves_to_a_private_address_is_refused(webhook: Webhook, namespace: str) -> None:
    host = socket.gethostname().lower()  # resolves to this machine: loopback or a private address
    if all(ipaddress.ip_address(address).is_global for address in resolve_host(host)):
        pytest.skip(f"{host} resolves to public addresses only")
    job = merge(minimal_job(), {"spec": {"dataset": {"uri": f"https://{host}/train.jsonl"}}})
    message = refusal(webhook.release.kube, namespace, job)
    assert message is not None and message.startswith(
        DENIED + f"spec.dataset.uri: URL host '{host}' resolves to"
    )


def _kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    kubectl = ROOT / ".cache" / "cluster" / "bin" / "kubectl"
    return subprocess.run([str(kubectl), *args], capture_output=True, text=True,
                          env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})  # fmt: skip


def test_kubectl_dry_run_shows_the_verdict_and_warnings(
    webhook: Webhook, namespace: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump(
            merge(
                minimal_job("warned"), {"spec": {"dataset": {"uri": "https://no-such-host.invalid/d.jsonl"}}}
            )
        )
    )
    done = _kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(good))
    assert done.returncode == 0, done.stderr
    assert "Warning: spec.dataset.uri: 'no-such-host.invalid' does not resolve here" in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(merge(minimal_job("refused"), {"spec": {"dataset": {"secretRef": {"name": "nope"}}}}))
    )
    done = _kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(bad))
    assert done.returncode == 1 and "Secret 'nope' not found" in done.stderr, done.stderr


def test_kubectl_explain_documents_the_fields(crds: list[str]) -> None:
    done = _kubectl("explain", "finetunejob.spec.model.accessSecretRef")
    assert done.returncode == 0, done.stderr
    assert (
        "Secret with credentials to fetch the model" in done.stdout
        and "name\t<string> -required-" in done.stdout
    )


def test_while_the_operator_is_down(webhook: Webhook, namespace: str) -> None:
    """Ignore (the default): admitted, then refused by the operator when it reconciles; Fail: refused outright."""
    kube, operator = webhook.release.kube, webhook.operator
    bad = next(c for c in INVALID_SPECS if c.id == "ssrf-private").manifest
    operator.stop()
    try:
        assert (
            refusal(kube, namespace, merge(bad, {"metadata": {"name": "unchecked"}}), dry_run=False) is None
        )
        webhook.upgrade("webhook.failurePolicy=Fail")
        wait_until(
            "failurePolicy Fail in force",
            lambda: "failed calling webhook" in (refusal(kube, namespace, minimal_job()) or ""),
        )
    finally:
        webhook.upgrade("webhook.failurePolicy=Ignore")
        operator.start()

    def failed() -> dict[str, Any] | None:
        status = (
            kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "unchecked").get(
                "status"
            )
            or {}
        )
        return status if status.get("phase") == "Failed" else None

    status = wait_until("the unchecked job to be refused by the operator", failed)
    failure = condition(status, "Failed")
    assert (
        failure["reason"] == "InvalidSpec" and "spec.dataset.uri: URL host '10.0.0.5'" in failure["message"]
    )
