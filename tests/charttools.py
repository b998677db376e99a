"""The chart's tools for the tests: pinned helm, kubeconform, fluxcel and promtool (hack/tools/build.sh) and Kubernetes JSON schemas.

Schemas: the `kubernetes-validate` wheel ships the Kubernetes JSON schemas per minor version, with `$ref`s to a
remote `/api/_definitions.json` (and remote `$id`s); `kube_schemas()` copies the pinned minor's strict set under
`.cache/` with those refs pointing at the local `_definitions.json`, and adds our CRD's schema under the name kubeconform looks up.
The Prometheus Operator's kinds (ServiceMonitor, PodMonitor, PrometheusRule) and cert-manager's (Certificate, Issuer)
are checked against their own CRDs, from their Go modules at PROMETHEUS_OPERATOR_VERSION and CERT_MANAGER_VERSION
(`go mod download`, cached by Go).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "finetune-operator"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CACHE = ROOT / ".cache" / "tools"
REMOTE_DEFINITIONS = '"/api/_definitions.json#'
MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")
"""The Prometheus Operator CRDs the chart's optional objects use."""
CERT_MANAGER_CRDS = ("certificates", "issuers")
"""cert-manager's, for the webhook certificate (webhook.certManager)."""


def versions() -> dict[str, str]:
    """hack/versions.env as a dict."""
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def kubernetes_version() -> str:
    """The pinned Kubernetes version, e.g. v1.33.5."""
    return versions()["KUBERNETES_VERSION"]


@functools.cache
def bin_dir() -> Path:
    """Where the pinned tools are (built or taken from the cache by hack/tools/build.sh)."""
    out = subprocess.run(
        [str(ROOT / "hack" / "tools" / "build.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=30 * 60,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def run(
    tool: str, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a pinned tool; on failure with check, the error names the command and shows its output."""
    done = subprocess.run(
        [str(bin_dir() / tool), *args], capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(
            f"{tool} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def values_args(values: list[Path] | None = None, sets: dict[str, str] | None = None) -> list[str]:
    """`-f file` and `--set k=v` arguments."""
    args = [arg for path in values or [] for arg in ("-f", str(path))]
    return args + [arg for key, value in (sets or {}).items() for arg in ("--set", f"{key}={value}")]


def template(
    values: list[Path] | None = None, sets: dict[str, str] | None = None, namespace: str = "finetune-system"
) -> str:
    """`helm template` of the chart with its CRDs, for the pinned Kubernetes version."""
    args = ["template", "ft", str(CHART), "--namespace", namespace, "--include-crds"]
    args += ["--kube-version", kubernetes_version(), *values_args(values, sets)]
    return run("helm", *args).stdout


def documents(rendered: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def kube_schemas() -> Path:
    """A kubeconform schema folder: the pinned minor's strict Kubernetes schemas plus our CRD's (cached)."""
    import kubernetes_validate  # the wheel is the schemas' source; imported only where needed

    minor = ".".join(kubernetes_version().lstrip("v").split(".")[:2])
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: kubernetes-validate has no schemas for Kubernetes {minor}")
    target = CACHE / "schemas" / f"v{minor}-strict"
    stamp = target / ".complete"
    if not stamp.is_file():
        target.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.json"):
            schema = json.loads(
                path.read_text(encoding="utf-8").replace(REMOTE_DEFINITIONS, '"_definitions.json#')
            )
            schema.pop("$id", None)  # a remote $id would resolve the relative refs against it
            (target / path.name).write_text(json.dumps(schema), encoding="utf-8")
        stamp.touch()
    _write_crd_schemas(target)
    return target


def _module_dir(module: str, version_key: str) -> Path:
    """The folder of a Go module at the version pinned as `version_key` (`go mod download`, cached by Go)."""
    found = subprocess.run(["go", "mod", "download", "-json", f"{module}@{versions()[version_key]}"], check=True,
                           capture_output=True, text=True, timeout=600).stdout  # fmt: skip
    return Path(json.loads(found)["Dir"])


@functools.cache
def prometheus_operator_crds() -> list[Path]:
    """The Prometheus Operator's CRD files for MONITORING_CRDS, from its Go module (downloaded once)."""
    folder = _module_dir("github.com/prometheus-operator/prometheus-operator", "PROMETHEUS_OPERATOR_VERSION")
    return [folder / "example" / "prometheus-operator-crd" / f"monitoring.coreos.com_{name}.yaml"
            for name in MONITORING_CRDS]  # fmt: skip


@functools.cache
def cert_manager_crds() -> list[Path]:
    """cert-manager's Certificate and Issuer CRDs (the webhook's certificate), from its Go module."""
    folder = _module_dir("github.com/cert-manager/cert-manager", "CERT_MANAGER_VERSION") / "deploy" / "crds"
    return [folder / f"cert-manager.io_{name}.yaml" for name in CERT_MANAGER_CRDS]


def _write_crd_schemas(target: Path) -> None:
    """Our CRDs', the Prometheus Operator's and cert-manager's schemas as `<kind>-<group's first label>-<version>.json`
    (kubeconform's KindSuffix)."""
    for path in [*sorted((ROOT / "crds").glob("*.yaml")), *prometheus_operator_crds(), *cert_manager_crds()]:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        kind, group = crd["spec"]["names"]["kind"].lower(), crd["spec"]["group"].split(".")[0]
        for version in crd["spec"]["versions"]:
            schema = {
                "$schema": "http://json-schema.org/draft-04/schema#",
                **version["schema"]["openAPIV3Schema"],
            }
            out = target / f"{kind}-{group}-{version['name']}.json"
            out.write_text(json.dumps(schema, indent=1), encoding="utf-8")


def kubeconform(paths: list[Path], skip: tuple[str, ...] = ()) -> str:
    """`kubeconform -strict` against `kube_schemas()`; returns its summary."""
    schemas = kube_schemas()
    args = ["-strict", "-summary", "-output", "text", "-kubernetes-version", kubernetes_version().lstrip("v")]
    args += ["-schema-location", f"{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"]
    if skip:
        args += ["-skip", ",".join(skip)]
    return run("kubeconform", *args, *map(str, paths)).stdout
