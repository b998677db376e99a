"""Invalid FineTuneJobs, each with the field its error must name.

Shared by the unit suite (pydantic, `finetune validate`) and the integration suite (the real API server, for the
cases with `server_enforced`: everything the CRD's schema and CEL rules can express; the rest is the webhook's).
"""

from tests.invalid_specs.base import DELETE, InvalidSpec, merge, minimal_job
from tests.invalid_specs.model_and_data import MODEL_AND_DATA
from tests.invalid_specs.run_and_output import RUN_AND_OUTPUT

INVALID_SPECS: list[InvalidSpec] = MODEL_AND_DATA + RUN_AND_OUTPUT

__all__ = ["DELETE", "INVALID_SPECS", "InvalidSpec", "merge", "minimal_job"]
