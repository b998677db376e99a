"""The trainer: runs a FineTuneJob in a workload pod (or on a laptop via `finetune run`)."""
