"""The README's "Watch a job and use its result" commands, run as written against the kind cluster."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.kindkit import KUBECONFIG
from tests.integration.helpers import GROUP, PLURAL, ROOT, VERSION, Kube, wait_until

pytestmark = [pytest.mark.e2e]


def _watch_section_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Watch a job and use its result", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def _sh(command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(KUBECONFIG),
        "PATH": f"{ROOT / '.cache' / 'cluster' / 'bin'}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )


def _gone(kube: Kube) -> bool:
    return not [
        j for j in kube.custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
        if j["metadata"]["name"] == "tiny-lora"
    ]  # fmt: skip


def test_the_readme_watch_commands_work_as_written(kube: Kube) -> None:
    # The README's commands use the default namespace and the example's name (as `make demo` does): start clean.
    _sh("kubectl delete finetunejob tiny-lora --ignore-not-found --wait && kubectl delete pvc tiny-lora-output "
        "--ignore-not-found")  # fmt: skip
    wait_until("a previous tiny-lora to be gone", lambda: _gone(kube), timeout=120)
    blocks = _watch_section_blocks()
    assert len(blocks) == 2, blocks
    try:
        for block in blocks:
            for line in block.splitlines():
                done = _sh(line)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
        result = _sh(blocks[1].strip()).stdout
        assert '"digest":"sha256:' in result.replace(" ", ""), result
    finally:
        _sh("kubectl delete -f examples/tiny-lora.yaml --ignore-not-found && kubectl delete pvc tiny-lora-output "
            "--ignore-not-found")  # fmt: skip
