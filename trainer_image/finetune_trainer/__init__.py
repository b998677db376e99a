"""The trainer: runs one FineTuneJob in the workload pods (under torchrun) or on a laptop (`finetune run`).

Entry points: `python -m finetune_trainer.launch` (the image's, runs torchrun's agent), `python -m finetune_trainer`
(one rank: validates the config and runs `recipe.main`), and `local.run_local` (the CLI's `finetune run`). Importing
the package imports nothing else, so a worker does not load what only the CLI needs.
"""
