"""finetune-operator: FineTuneJob custom resources in, fine-tuning workloads out.

Layers, top to bottom (kept by `.importlinter`): `main`, `health`, `handlers` (Kopf's triggers), `poller`,
`reconciler`, `provisioning`, `kube` (the only module that talks to the API server), `status` and `admission`,
`observed`, `progress` and `karpenter`, `builders` (pure spec → manifests), `names`, `config` and `metrics`. The API
they implement is `finetune_api`; the `finetune` command is `finetune_cli`.
"""

__version__ = "0.1.0"
