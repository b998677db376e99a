"""The `finetune` command: the thin layer above the operator and the trainer.

`main` holds the commands (`validate`, `run`, `operator`, `crd`); `crd` and `apidocs` generate `crds/` and
`docs/api.md` from the API models (`finetune_api`).
"""
