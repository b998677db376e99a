"""Writing the result: the adapter (or full model), the extra formats of `output.formats`, and `manifest.json`.

Called by the recipe's `save` on every rank (ZeRO-3 must gather weights collectively); only rank 0 writes. Adapters
are saved by peft as `adapter_model.safetensors` + `adapter_config.json`; full fine-tuning saves the whole model.
The merged model and the ONNX graph are written and checked by `export`. `manifest.json` records which run
trained what (`ownership.RunIdentity`), how, the final metrics, each export's files and checks, and the sha256 of
every file, what the run read (`provenance`: the base's weight digests, the dataset's), and is the last file
written: its presence means the output is complete. Its own sha256 is the artifact's digest in the termination
message. The adapter names its base as a user resolves it (`provenance.point_at_base`) and `card` writes README.md.

An s3:// or oci:// output is written to the output folder first (the pod's output volume, which also holds the
checkpoints, so a restarted pod resumes), then published (`publish`): uploaded with the manifest last (`s3.py`) or
pushed as one OCI artifact (`oci.py`). The termination message then names the exact location written and, for
OCI, the manifest digest to pull by. `check_destination` fails a run whose destination refuses it before training.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from finetune_api.output import OutputSpec
from finetune_api.trainer import TerminationMessage, TrainerConfig
from finetune_api.uris import scheme_of

from finetune_trainer import card, export, ownership, provenance
from finetune_trainer.distributed import is_rank_zero
from finetune_trainer.remote import sha256_of

MANIFEST = "manifest.json"


def digests(output_dir: Path, skip: Path) -> dict[str, str]:
    """sha256 of every file under `output_dir` except the manifest, hidden paths and `skip` (checkpoints)."""
    found = {}
    for path in sorted(p for p in output_dir.rglob("*") if p.is_file()):
        hidden = any(part.startswith(".") for part in path.relative_to(output_dir).parts)
        if path.name == MANIFEST or hidden or path.is_relative_to(skip):
            continue
        found[str(path.relative_to(output_dir))] = sha256_of(path)
    return found


def save_model(
    module: Any, state_dict: dict[str, torch.Tensor] | None, tokenizer: Any, output_dir: Path
) -> None:
    """The adapter (peft models) or the whole model, plus the tokenizer, into `output_dir` (rank 0 only)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if state_dict is None:
        module.save_pretrained(output_dir)
    else:
        module.save_pretrained(output_dir, state_dict=state_dict)
    tokenizer.save_pretrained(output_dir)


def write_manifest(
    cfg: TrainerConfig,
    base_dir: Path,
    metrics: dict[str, Any],
    data: dict[str, Any],
    exports: dict[str, Any] | None = None,
) -> TerminationMessage:
    """Write `manifest.json` last and return the Succeeded termination message; `data` describes the rows read
    (e.g. the causal-lm row shape and where it came from), `exports` the checked formats (`export.publish`)."""
    output_dir, spec = Path(cfg.paths.output_dir), cfg.spec
    files = digests(output_dir, skip=Path(cfg.paths.checkpoint_dir))
    adapter = spec.method.type != "full"
    manifest = {
        ownership.MANIFEST_KEY: asdict(ownership.RunIdentity.of(cfg)),
        "base_model": provenance.base_identity(spec.model, base_dir, cfg.origins or {}),
        "method": spec.method.to_wire(),
        "task": spec.task.to_wire(),
        "data": data,
        "hyperparameters": spec.training.to_wire(),
        "distributed": spec.distributed.to_wire(),
        "artifacts": {
            "kind": "adapter" if adapter else "model",
            "weights": "adapter_model.safetensors" if adapter else "model.safetensors",
            "merged": export.MERGED_DIR if (output_dir / export.MERGED_DIR).is_dir() else None,
        },
        "exports": {
            fmt: {**found, "files": {k: v for k, v in files.items() if k.startswith(found["path"] + "/")}}
            for fmt, found in (exports or {}).items()
        },
        "metrics": metrics,
        "digests": files,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return TerminationMessage(
        status="Succeeded",
        output=spec.output.uri or str(output_dir),
        digest=f"sha256:{sha256_of(output_dir / MANIFEST)}",
        metrics=metrics,
        digests=files,
    )


def save_artifacts(
    cfg: TrainerConfig,
    module: Any,
    state_dict: dict[str, torch.Tensor] | None,
    tokenizer: Any,
    base_dir: Path,
    metrics: dict[str, Any],
    data: dict[str, Any],
    reference: export.Reference | None = None,
) -> TerminationMessage | None:
    """Rank 0: model/adapter, the checked formats of `output.formats` (`reference`: the trained model's outputs
    they must reproduce), manifest. Returns the run summary (None on other ranks)."""
    if not is_rank_zero():
        return None
    output_dir, reference_of_base = (
        Path(cfg.paths.output_dir),
        provenance.base_reference(cfg.spec.model, cfg.origins or {}),
    )
    save_model(module, state_dict, tokenizer, output_dir)
    provenance.point_at_base(output_dir, reference_of_base)
    exports = export.publish(cfg, base_dir, tokenizer, reference)
    card.write_card(cfg.spec, reference_of_base, base_dir, output_dir, metrics, data)
    return publish(cfg, write_manifest(cfg, base_dir, metrics, data, exports))


def check_destination(output: OutputSpec) -> None:
    """Before training: an s3:// bucket must exist, take the credentials and accept a write under the prefix; an
    oci:// registry must take them and accept a push to the repository."""
    uri = output.uri or ""
    if scheme_of(uri) == "s3":
        from finetune_trainer import s3

        s3.check_writable(uri, "output")
    elif scheme_of(uri) == "oci":
        from finetune_trainer import oci

        oci.check_push(uri, "output")


def publish(cfg: TrainerConfig, summary: TerminationMessage) -> TerminationMessage:
    """Upload or push the written output (the files manifest.json lists, then the manifest) for s3:// and oci://;
    the summary names the location written and the digest to fetch it by. pvc:// outputs are returned as they are."""
    uri, output_dir = cfg.spec.output.uri or "", Path(cfg.paths.output_dir)
    names = [*(summary.digests or {}), MANIFEST]
    if scheme_of(uri) == "s3":
        from finetune_trainer import s3

        return summary.model_copy(update={"output": s3.upload(output_dir, names, uri, "output")})
    if scheme_of(uri) == "oci":
        from finetune_trainer import oci

        kind = oci.MODEL_ARTIFACT_TYPE if cfg.spec.method.type == "full" else oci.ADAPTER_ARTIFACT_TYPE
        location, digest = oci.push(output_dir, names, uri, "output", kind)
        return summary.model_copy(update={"output": location, "digest": digest})
    return summary
