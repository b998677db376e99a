"""The chart's admission webhook as rendered: certificates (Helm-generated or cert-manager), the configuration the
operator's handler answers, and what turning it off removes. Served for real in tests/integration/test_admission.py
and tests/e2e/test_admission.py."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from finetune_operator.handlers import WEBHOOK_ID

from tests import charttools
from tests.charttools import CHART

SERVICE_DNS = "ft-finetune-operator-webhook.finetune-system.svc"


def _objects(*values: str, **sets: str) -> list[dict[str, Any]]:
    return charttools.documents(charttools.template([CHART / "ci" / v for v in values], sets))


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _operator(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(_kind(objects, "Deployment")[0]["spec"]["template"]["spec"])


def test_helm_generates_a_ca_and_a_certificate_for_the_service() -> None:
    objects = _objects()
    (secret,) = [s for s in _kind(objects, "Secret") if s["type"] == "kubernetes.io/tls"]
    (config,) = _kind(objects, "ValidatingWebhookConfiguration")
    hook = config["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert SERVICE_DNS in names and cert.issuer == ca.subject
    assert hook["clientConfig"]["service"] == {
        "name": "ft-finetune-operator-webhook", "namespace": "finetune-system", "path": f"/{WEBHOOK_ID}", "port": 443,
    }  # fmt: skip
    assert (hook["failurePolicy"], hook["sideEffects"], hook["timeoutSeconds"]) == ("Ignore", "None", 10)
    assert "namespaceSelector" not in hook


def test_the_operator_serves_it_with_the_mounted_certificate() -> None:
    pod = _operator(_objects())
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-tls")
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert env["FINETUNE_WEBHOOK_PORT"] == "9443" and env["FINETUNE_WEBHOOK_CERT_DIR"] == mount["mountPath"]
    assert mount["readOnly"] and volume["secret"]["secretName"] == "ft-finetune-operator-webhook-tls"
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]


def test_cert_manager_issues_and_injects_instead() -> None:
    objects = _objects("cert-manager-values.yaml")
    assert not [s for s in _kind(objects, "Secret") if s["type"] == "kubernetes.io/tls"]
    assert not _kind(objects, "Issuer"), "the platform's ClusterIssuer is used"
    (certificate,) = _kind(objects, "Certificate")
    assert certificate["spec"]["secretName"] == "ft-finetune-operator-webhook-tls"
    assert SERVICE_DNS in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {
        "name": "platform-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    (config,) = _kind(objects, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "finetune-system/ft-finetune-operator-webhook"
    )
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert config["webhooks"][0]["failurePolicy"] == "Fail"
    (issuer,) = _kind(_objects(**{"webhook.certManager.enabled": "true"}), "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}, "without an issuerRef the chart brings a self-signed Issuer"


def test_watched_namespaces_limit_the_webhook() -> None:
    (config,) = _kind(_objects("namespaced-values.yaml"), "ValidatingWebhookConfiguration")
    assert config["webhooks"][0]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]
    }


def test_turning_it_off_removes_every_piece() -> None:
    objects = _objects(**{"webhook.enabled": "false"})
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ValidatingWebhookConfiguration", "Certificate", "Issuer"}
    assert not [s for s in _kind(objects, "Secret") if s["type"] == "kubernetes.io/tls"]
    env = {e["name"] for e in _operator(objects)["containers"][0]["env"]}
    assert "FINETUNE_WEBHOOK_PORT" not in env
    rules = [r for o in _kind(objects, "ClusterRole") for r in o["rules"]]
    assert not [r for r in rules if "secrets" in r["resources"]], "no Secret reads without the webhook"
