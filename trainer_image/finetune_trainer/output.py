"""Writing the result: the adapter (or full model), the extra formats of `output.formats`, and `manifest.json`.

Called by the recipe's `save` on every rank (ZeRO-3 must gather weights collectively); only rank 0 writes. Adapters
are saved by peft as `adapter_model.safetensors` + `adapter_config.json`; full fine-tuning saves the whole model.
The merged model and the ONNX graph are written and checked by `export`. `manifest.json` records which run
trained what (`ownership.RunIdentity`), how, the final metrics, each export's files and checks, and the sha256 of
every file, and is the last file written: its presence means the output is complete. Its own sha256 is the
artifact's digest in the termination message.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from finetune_operator.api.trainer import TerminationMessage, TrainerConfig

from finetune_trainer import export, ownership
from finetune_trainer.distributed import is_rank_zero

MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
        "base_model": {"preset": spec.model.preset, "uri": spec.model.uri, "resolved_path": str(base_dir)},
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
    save_model(module, state_dict, tokenizer, Path(cfg.paths.output_dir))
    exports = export.publish(cfg, base_dir, tokenizer, reference)
    return write_manifest(cfg, base_dir, metrics, data, exports)
