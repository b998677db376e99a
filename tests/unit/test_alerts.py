"""The chart's PrometheusRule through promtool (check rules, and unit tests of every alert) and the Grafana
dashboard, with every metric either one queries checked against what the operator and the trainer register."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from finetune_api.trainer import Metric
from finetune_operator.metrics import OperatorMetrics

from tests import charttools
from tests.charttools import CHART

ALERT_TESTS = Path(__file__).parent / "prometheus" / "alerts_test.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
METRIC_NAME = re.compile(r"\bfinetune_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
DASHBOARD_PANELS = (
    "FineTuneJobs by phase", "Progress per job", "Loss per job", "Tokens per second",
    "Time to start (creation to Job created)", "Reconcile errors",
)  # fmt: skip


def exported_metrics() -> set[str]:
    """Series names the operator's registry and the trainer's gauges (the pod contract's `Metric`) expose."""
    names = {metric.value for metric in Metric}
    for family in OperatorMetrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def rules() -> dict[str, Any]:
    """The rendered PrometheusRule's spec: a Prometheus rule file, for release ft in finetune-system."""
    rendered = charttools.template(sets={"prometheusRule.enabled": "true"}, namespace="finetune-system")
    found = [o for o in charttools.documents(rendered) if o["kind"] == "PrometheusRule"]
    assert len(found) == 1
    spec: dict[str, Any] = found[0]["spec"]
    return spec


def promtool(*args: str) -> str:
    """The pinned promtool (hack/tools/build.sh builds it from its Go module), never one found on PATH."""
    return charttools.run("promtool", *args).stdout


@pytest.fixture(scope="module")
def rule_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yaml").write_text(yaml.safe_dump(rules()))
    shutil.copy(ALERT_TESTS, folder / ALERT_TESTS.name)
    return folder


def test_promtool_checks_the_rules(rule_dir: Path) -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", str(rule_dir / "rules.yaml"))


def test_promtool_unit_tests_pass(rule_dir: Path) -> None:
    assert "SUCCESS" in promtool("test", "rules", str(rule_dir / ALERT_TESTS.name))


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    alerts = {rule["alert"] for group in rules()["groups"] for rule in group["rules"]}
    cases = [
        case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]
    ]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts == fired == silent


def test_alerts_query_only_exported_metrics() -> None:
    exprs = " ".join(rule["expr"] for group in rules()["groups"] for rule in group["rules"])
    assert set(METRIC_NAME.findall(exprs)) - exported_metrics() == set()


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [variable.get("query", "") for variable in dashboard["templating"]["list"]]
    used = set(METRIC_NAME.findall(" ".join(exprs)))
    assert used - exported_metrics() == set()
    assert {Metric.STEP.value, Metric.LOSS.value, Metric.TOKENS_PER_SECOND.value} <= used
    assert set(DASHBOARD_PANELS) <= {panel["title"] for panel in dashboard["panels"]}


def test_dashboard_ships_in_the_chart() -> None:
    rendered = charttools.template(sets={"grafanaDashboard.enabled": "true"})
    maps = [o for o in charttools.documents(rendered) if o["kind"] == "ConfigMap"]
    assert [m["metadata"]["labels"]["grafana_dashboard"] for m in maps] == ["1"]
    assert json.loads(maps[0]["data"]["finetune-operator.json"]) == json.loads(DASHBOARD.read_text())
