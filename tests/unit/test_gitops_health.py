"""GitOps health of FineTuneJobs: Argo CD's Lua check run in a real Lua 5.1 VM (Argo CD runs gopher-lua, Lua 5.1
semantics) against Argo CD's own test layout, and Flux's kstatus reading of the same statuses."""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lupa
import pytest
import yaml
from finetune_operator.builders import workload
from finetune_operator.builders.meta import Owner
from finetune_operator.config import Settings

from tests import charttools, gitops_statuses
from tests.gitops_statuses import ARGO_DIR
from tests.unit.operator_fixtures import example_bodies

HEALTH_LUA = (ARGO_DIR / "health.lua").read_text()
ARGO_TESTS = yaml.safe_load((ARGO_DIR / "health_test.yaml").read_text())["tests"]
FLUX_KUSTOMIZATION = ARGO_DIR.parents[3] / "flux" / "kustomization.yaml"
EXPECTED = {
    "pending": ("Progressing", "InProgress", "InProgress"),
    "stalled": ("Degraded", "Failed", "Failed"),
    "queued": ("Progressing", "InProgress", "InProgress"),
    "running": ("Progressing", "InProgress", "InProgress"),
    "suspended": ("Suspended", "Current", "Current"),
    "succeeded": ("Healthy", "Current", "Current"),
    "result-missing": ("Degraded", "Current", "Failed"),
    "failed": ("Degraded", "Failed", "Failed"),
    "old-generation": ("Progressing", "InProgress", "InProgress"),
    "no-status": ("Progressing", "Current", "error"),
}
"""Per case: Argo CD health, kstatus status, and Flux's with gitops/flux's healthCheckExprs (see gitops/README.md)."""


def argo_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run health.lua as Argo CD does: `obj` a global table, the script's return value the health."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    health = lua.execute(HEALTH_LUA)
    return {key: str(value) for key, value in dict(health).items()}


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic reading (sigs.k8s.io/cli-utils, what Flux's health checks use) of a custom resource."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed < obj["metadata"]["generation"]:
        return "InProgress"
    true = {c["type"] for c in status.get("conditions") or [] if c["status"] == "True"}
    if "Reconciling" in true:
        return "InProgress"
    if "Stalled" in true:
        return "Failed"
    return "Current"


def test_every_case_is_covered() -> None:
    assert set(EXPECTED) == set(gitops_statuses.cases())
    assert {t["inputPath"] for t in ARGO_TESTS} == {f"testdata/{name}.yaml" for name in EXPECTED}


def test_testdata_is_what_the_operator_writes() -> None:
    for name, obj in gitops_statuses.cases().items():
        committed = (ARGO_DIR / "testdata" / f"{name}.yaml").read_text()
        assert committed == gitops_statuses.render(obj), (
            f"{name}: stale, run `python3 -m tests.gitops_statuses`"
        )


@pytest.mark.parametrize("case", ARGO_TESTS, ids=lambda t: t["inputPath"])
def test_argo_cd_health_test_cases(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGO_DIR / case["inputPath"]).read_text())
    assert argo_health(obj) == case["healthStatus"]


@pytest.mark.parametrize(("name", "expected"), EXPECTED.items(), ids=EXPECTED.keys())
def test_argo_cd_and_kstatus_agree_with_the_documented_mapping(
    name: str, expected: tuple[str, str, str]
) -> None:
    obj = gitops_statuses.cases()[name]
    assert (argo_health(obj)["status"], kstatus(obj)) == expected[:2]


def test_flux_health_check_exprs_in_fluxs_own_evaluator() -> None:
    """gitops/flux's CEL expressions through github.com/fluxcd/pkg/runtime/cel (hack/tools/fluxcel)."""
    testdata = {name: ARGO_DIR / "testdata" / f"{name}.yaml" for name in EXPECTED}
    out = charttools.run("fluxcel", str(FLUX_KUSTOMIZATION), *map(str, testdata.values())).stdout
    got = dict(line.split(" ", 1) for line in out.splitlines())
    flux = {name: got[str(path)].split(":")[0] for name, path in testdata.items()}
    assert flux == {name: expected[2] for name, expected in EXPECTED.items()}, out


def test_the_script_runs_on_lua_5_1() -> None:
    assert lupa.LuaRuntime().eval("_VERSION") == "Lua 5.1"


def test_no_ttl_deletes_a_finished_job() -> None:
    """A GitOps tool recreating a TTL-deleted object would train again: no child has a TTL by default."""
    for name, body in example_bodies().items():
        for obj in workload.desired(Owner.from_body(body), Settings()):
            assert "ttlSecondsAfterFinished" not in obj.get("spec", {}), f"{name}: {obj['kind']} has a TTL"


def test_argocd_cm_snippet_holds_the_script() -> None:
    cm = yaml.safe_load((ARGO_DIR.parents[2] / "argocd-cm.yaml").read_text())
    assert cm["data"]["resource.customizations.health.finetune.io_FineTuneJob"] == HEALTH_LUA


def test_argocd_cm_snippet_is_a_valid_config_map() -> None:
    summary = charttools.kubeconform([ARGO_DIR.parents[2] / "argocd-cm.yaml"], skip=())
    assert "Valid: 1, Invalid: 0, Errors: 0" in summary, summary
