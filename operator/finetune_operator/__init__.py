"""finetune-operator: FineTuneJob custom resources in, fine-tuning workloads out.

Packages: `api` (pydantic models, the single source of truth), `builders` (pure spec → manifest functions),
`crd` and `apidocs` (generated artefacts), `cli` (the `finetune` command).
"""

__version__ = "0.1.0"
