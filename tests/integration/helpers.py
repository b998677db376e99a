"""Shared helpers for the integration tests (imported as `tests.integration.helpers`)."""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import yaml

# Re-exported for the tests; the API package is their one source.
from finetune_api import GROUP as GROUP
from finetune_api import KIND as KIND
from finetune_api import PLURAL as PLURAL
from finetune_api import VERSION as VERSION
from kubernetes import client
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = ROOT / ".cache" / "cluster" / "kubeconfig"
# FINETUNE_CRD_DIR: try a CRD under development without touching crds/.
CRD_DIR = Path(os.environ.get("FINETUNE_CRD_DIR", ROOT / "crds"))

# Pod annotations the KWOK stages in hack/cluster/kwok.yaml act on (set them on a Job's pod template).
KWOK_FAIL = "kwok.finetune.io/fail"  # "true": the pod goes Failed instead of Succeeded
KWOK_EXIT_CODE = "kwok.finetune.io/exit-code"  # exit code of the failed container (default 1)
KWOK_REASON = "kwok.finetune.io/reason"  # termination reason of the failed container (default Error)
KWOK_RUN_DURATION = "kwok.finetune.io/run-duration"  # time in Running before Succeeded/Failed, e.g. "30s"
GPU_NODE_PREFIX = "gpu-node-"

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.5) -> T:
    """Polls `probe` until it returns something other than None/False; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_for_default_service_account(kube: Kube, namespace: str) -> None:
    """Pods of a new namespace need its default ServiceAccount, which the controller-manager creates a moment later."""

    def exists() -> bool:
        try:
            kube.core.read_namespaced_service_account("default", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_until(f"ServiceAccount default in {namespace}", exists, timeout=30)


@contextlib.contextmanager
def fresh_namespace(kube: Kube, test_name: str, prefix: str, suite: str) -> Iterator[str]:
    """A new namespace named after the test, labelled finetune.io/test=<suite>, with its default ServiceAccount;
    deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    name = f"{prefix}-{slug}-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"finetune.io/test": suite}}})
    wait_for_default_service_account(kube, name)
    try:
        yield name
    finally:
        try:
            kube.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


class ScriptFailed(subprocess.CalledProcessError):
    """A hack/ script's non-zero exit, with the last lines of its log in the message (what CI shows of a run is its
    tail, far below the live log)."""

    def __str__(self) -> str:
        return f"{super().__str__()} Its last lines on stderr:\n{self.stderr}"


def run_live(config: pytest.Config, argv: list[str], timeout: float, stdout: int | None = None) -> str:
    """Runs a hack/ script with its log (stderr) shown live, as a cold build takes many minutes; its stdout is shown
    too unless `stdout` redirects it (subprocess.PIPE: returned, DEVNULL: dropped). Raises ScriptFailed.

    The log goes through a file, not a pipe: daemons the script leaves running (dockerd, the control plane) may hold
    it open, and must never write into a closed pipe."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with (
        capture.global_and_fixture_disabled() if capture else contextlib.nullcontext(),
        tempfile.NamedTemporaryFile("w", prefix="run-live-", suffix=".log") as log,
        Path(log.name).open() as reader,
    ):
        print(f"\n[tests] running {' '.join(argv)}", file=sys.stderr, flush=True)
        proc = subprocess.Popen(argv, cwd=ROOT, text=True, stdout=stdout, stderr=log)
        echo = threading.Thread(target=_echo, args=(reader, proc), daemon=True)
        echo.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            echo.join()
        reader.seek(0)
        tail = "".join(collections.deque(reader, maxlen=40))
    if proc.returncode:
        raise ScriptFailed(proc.returncode, argv, output=out, stderr=tail)
    return out or ""


def _echo(log: IO[str], proc: subprocess.Popen[str]) -> None:
    """Copies what the script writes to its log onto this process's stderr until the script ends."""
    while True:
        ended = proc.poll() is not None
        if chunk := log.read():
            sys.stderr.write(chunk)
            sys.stderr.flush()
        elif ended:
            return
        else:
            time.sleep(0.5)


def crd_documents(directory: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in the YAML files of `directory`."""
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        with path.open() as f:
            docs += [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


def _status_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"({err.status}) {err.body}"


def _crd_established(kube: Kube, name: str) -> bool:
    crd = kube.ext.read_custom_resource_definition(name)
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_crds(kube: Kube, docs: list[dict[str, Any]]) -> list[str]:
    """Creates (or replaces) each CustomResourceDefinition in `docs`, then waits until each is Established; returns
    their names. A CRD the API server rejects fails the test with the server's message."""
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        rejected = None
        try:
            try:
                kube.ext.create_custom_resource_definition(doc)
            except ApiException as e:
                if e.status != 409:
                    raise
                current = kube.ext.read_custom_resource_definition(name)
                doc = {
                    **doc,
                    "metadata": {**doc["metadata"], "resourceVersion": current.metadata.resource_version},
                }
                kube.ext.replace_custom_resource_definition(name, doc)
        except ApiException as e:
            rejected = e
        if rejected is not None:
            pytest.fail(f"the API server rejected CRD {name}: {_status_message(rejected)}", pytrace=False)
        names.append(name)
    for name in names:
        wait_until(f"CRD {name} Established", functools.partial(_crd_established, kube, name))
    return names


@dataclass
class Kube:
    """API clients bound to the test cluster."""

    api: client.ApiClient
    core: client.CoreV1Api
    batch: client.BatchV1Api
    custom: client.CustomObjectsApi
    ext: client.ApiextensionsV1Api
    kubeconfig: Path

    @classmethod
    def connect(cls, kubeconfig: Path = KUBECONFIG) -> Kube:
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(kubeconfig))
        return cls(
            api=api,
            core=client.CoreV1Api(api),
            batch=client.BatchV1Api(api),
            custom=client.CustomObjectsApi(api),
            ext=client.ApiextensionsV1Api(api),
            kubeconfig=kubeconfig,
        )

    def create_finetunejob(self, namespace: str, body: dict[str, Any], dry_run: bool = False) -> Any:
        """Creates a FineTuneJob with strict field validation (unknown fields are errors, as with kubectl)."""
        kwargs: dict[str, Any] = {"field_validation": "Strict"}
        if dry_run:
            kwargs["dry_run"] = "All"
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, **kwargs)

    def patch_finetunejob(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        """JSON merge patch of a FineTuneJob."""
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
