"""The trainer: runs one FineTuneJob in the workload pods (under torchrun) or on a laptop (`finetune run`).

Entry points: `python -m finetune_trainer.launch` (the image's, runs torchrun's agent), `python -m finetune_trainer`
(one rank: validates the config and runs `recipe.main`), and `run_local` (the CLI's `finetune run`).
"""

# Re-exported so the CLI writes `finetune_trainer.run_local(...)`; `local` imports neither torch nor transformers,
# so importing the package stays cheap.
from finetune_trainer.local import LocalRun, run_local

__all__ = ["LocalRun", "run_local"]
