"""The FineTuneJob API (finetune.io/v1alpha1) as pydantic models: the single source of truth.

The CRD (`finetune_cli.crd`), the API reference (`finetune_cli.apidocs`), `finetune validate` and the
trainer's config (`finetune_api.trainer`) are all derived from these models. Importable with pydantic
alone: no kopf, kubernetes or torch (an import-linter contract keeps it so).
"""

from finetune_api.errors import describe
from finetune_api.job import GROUP, KIND, PLURAL, VERSION, FineTuneJob, FineTuneJobSpec, parse
from finetune_api.presets import PRESETS, Preset
from finetune_api.status import FineTuneJobStatus

# Re-exported so that callers write `api.FineTuneJob`; the submodules stay the place where each name is defined.
__all__ = [
    "GROUP", "KIND", "PLURAL", "PRESETS", "VERSION",
    "FineTuneJob", "FineTuneJobSpec", "FineTuneJobStatus", "Preset", "describe", "parse",
]  # fmt: skip
