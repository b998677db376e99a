"""Invalid FineTuneJobs, each with the field its error must name.

Shared by the unit suite (pydantic, `finetune validate`) and the integration suite (the real API server, for the
cases with `server_enforced`: everything the CRD's schema and CEL rules can express; the rest is the webhook's),
with the valid specs right next to a rule that both must accept (`EDGE_SPECS`).
"""

from typing import Any

from tests.invalid_specs.base import DELETE, InvalidSpec, merge, minimal_job
from tests.invalid_specs.model_and_data import MODEL_AND_DATA
from tests.invalid_specs.run_and_output import RUN_AND_OUTPUT

INVALID_SPECS: list[InvalidSpec] = MODEL_AND_DATA + RUN_AND_OUTPUT

EDGE_SPECS: dict[str, dict[str, Any]] = {
    "tiny-preset-ranks-on-cpu": merge(minimal_job(), {"spec": {"distributed": {"processesPerNode": 4}}}),
    "real-preset-one-process-on-its-default-gpu": merge(
        minimal_job(),
        {"spec": {"model": {"preset": "phi-3-mini-4k-instruct"}, "distributed": {"processesPerNode": 1}}},
    ),
    "model-uri-one-process-per-gpu": merge(
        minimal_job(),
        {
            "spec": {
                "model": {"preset": DELETE, "uri": "hf://org/model"},
                "distributed": {"processesPerNode": 4},
                "resources": {"gpu": {"count": 4}},
            }
        },
    ),
}
"""Valid FineTuneJobs at the edge of the processesPerNode rule (effective GPUs per node)."""

__all__ = ["DELETE", "EDGE_SPECS", "INVALID_SPECS", "InvalidSpec", "merge", "minimal_job"]
