"""The admission webhook as the chart installs it: the operator's pod serves it behind its Service, over the
certificate Helm generated, and the API server calls it for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests import charttools
from tests.charttools import CHART
from tests.e2e.kindkit import KUBECONFIG, RELEASE, RELEASE_NAMESPACE, tiny_lora
from tests.integration.helpers import ROOT, Kube, wait_until

pytestmark = [pytest.mark.e2e]
DENIED = 'admission webhook "validate.finetunejobs.finetune.io" denied the request'


def _dry_run(path: Path, namespace: str) -> subprocess.CompletedProcess[str]:
    kubectl = ROOT / ".cache" / "cluster" / "bin" / "kubectl"
    return subprocess.run([str(kubectl), "apply", "--dry-run=server", "-n", namespace, "-f", str(path)],
                          capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})  # fmt: skip


def _ca_bundle(kube: Kube) -> str:
    """The webhook configuration's CA bundle (base64)."""
    found = client.AdmissionregistrationV1Api(kube.api).read_validating_webhook_configuration(RELEASE)
    return str(found.webhooks[0].client_config.ca_bundle)


def test_the_operator_refuses_a_job_whose_secret_is_missing(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    job, _ = tiny_lora("needs-token", model={"preset": "tiny-llama", "accessSecretRef": {"name": "hf-token"}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))

    def refused() -> subprocess.CompletedProcess[str] | None:
        done = _dry_run(path, namespace)
        return done if done.returncode else None  # admitted while the webhook is not serving yet (Ignore)

    refusal = wait_until("the webhook to answer", refused)
    assert f"{DENIED}: spec.model.accessSecretRef.name: Secret 'hf-token' not found" in refusal.stderr

    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hf-token"}, "stringData": {"HF_TOKEN": "x"}}
    )
    admitted = _dry_run(path, namespace)
    assert admitted.returncode == 0, admitted.stderr


def test_the_certificate_is_kept_across_upgrades(kube: Kube) -> None:
    secret = kube.core.read_namespaced_secret(f"{RELEASE}-webhook-tls", RELEASE_NAMESPACE)
    assert _ca_bundle(kube) == secret.data["ca.crt"]  # the API server trusts the CA Helm generated

    charttools.run("helm", "upgrade", RELEASE, str(CHART), "--reuse-values", "--namespace", RELEASE_NAMESPACE,
                   "--kubeconfig", str(KUBECONFIG))  # fmt: skip

    again = kube.core.read_namespaced_secret(f"{RELEASE}-webhook-tls", RELEASE_NAMESPACE)
    assert again.data == secret.data and _ca_bundle(kube) == secret.data["ca.crt"]
