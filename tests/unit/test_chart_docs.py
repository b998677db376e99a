"""helm/README.md's generated references are fresh (like the CRD's API reference, docs/api.md)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from finetune_api.trainer import Metric
from finetune_operator.metrics import OperatorMetrics

from tests.charttools import ROOT


def _chart_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_docs", ROOT / "hack" / "chart_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_docs"] = module
    spec.loader.exec_module(module)
    return module


def test_references_are_fresh() -> None:
    readme = (ROOT / "helm" / "README.md").read_text()
    assert _chart_docs().render(readme) == readme, "helm/README.md is stale: run `make chart-docs`"


def test_every_value_and_metric_is_documented() -> None:
    docs = _chart_docs()
    metrics = docs.metrics_reference()
    assert all(f"`{m.value}`" in metrics for m in Metric)
    assert all(f"`{family.name}" in metrics for family in OperatorMetrics().registry.collect())
    values = docs.values_reference()
    assert "| `operator.stallAfterSeconds` | number | `300` |" in values
