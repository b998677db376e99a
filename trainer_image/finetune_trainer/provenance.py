"""What a result was trained from, in names that still resolve once the output leaves the pod.

A base model is named as a user can fetch it again (`base_reference`): presets and hf:// models by their Hugging
Face id (plus the revision an hf:// URI pins), tiny presets by their tiny:// source (built in code by
`finetune_trainer.tiny`), every other model by the job's own URI (pvc://claim/path, s3://bucket/prefix,
oci://registry/repository@sha256:…), and a local run's `--model DIR` by its path. The adapter's
`adapter_config.json` and the model card name the base that way, never the cache folder the pod loaded it from.
The manifest adds digests of what was read: the base's weight files and the dataset's files, so a result can be
reproduced and audited (`sha256sum` gives the same numbers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetune_api.data import DatasetSpec
from finetune_api.model import ModelSpec
from finetune_api.presets import PRESETS

from finetune_trainer.remote import sha256_of

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")
"""The files of a checkpoint that hold (or index) its weights: what the base's digest covers."""


@dataclass(frozen=True)
class BaseReference:
    """A base model as `from_pretrained` or a serving runtime is told to load it."""

    name: str
    """The Hugging Face id (org/name), a tiny:// source, or the job's model URI."""
    revision: str | None = None
    """The revision an hf:// URI pinned (`@revision`); None for the default branch and other schemes."""


def base_reference(model: ModelSpec, origins: Mapping[str, str] | None = None) -> BaseReference:
    """How the result names its base: see the module docstring; `origins` (`TrainerConfig.origins`) names a local
    run's `--model DIR` by its path."""
    uri = PRESETS[model.preset].source if model.preset is not None else model.uri or ""
    uri = (origins or {}).get(uri, uri)
    if not uri.startswith("hf://"):
        return BaseReference(uri)
    name, _, revision = uri.removeprefix("hf://").partition("@")
    return BaseReference(name, revision or None)


def _tree_digest(files: dict[str, str]) -> str:
    """One sha256 for a set of files: of the sorted `sha256  name` lines (`sha256sum` prints the same lines)."""
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def weight_digests(base_dir: Path) -> dict[str, str]:
    """sha256 of each weight file at the top of a checkpoint folder (symlinks followed, as loaders do)."""
    return {
        path.name: sha256_of(path)
        for path in sorted(base_dir.iterdir())
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES)
    }


def base_identity(model: ModelSpec, base_dir: Path, origins: Mapping[str, str]) -> dict[str, Any]:
    """The manifest's `base_model`: preset, URI, the reference the adapter names, and its weights' digests."""
    files = weight_digests(base_dir)
    return {
        "preset": model.preset,
        "uri": origins.get(model.uri or "", model.uri),
        **asdict(base_reference(model, origins)),
        "weights": files,
        "weights_digest": _tree_digest(files),
    }


def dataset_identity(
    dataset: DatasetSpec, path: Path, rows: int, origins: Mapping[str, str]
) -> dict[str, Any]:
    """The manifest's dataset block: its URI, the rows read and the digest of the file (or folder) they came from."""
    files = (
        {str(p.relative_to(path)): sha256_of(p) for p in sorted(path.rglob("*")) if p.is_file()}
        if path.is_dir()
        else {path.name: sha256_of(path)}
    )
    return {
        "uri": origins.get(dataset.uri, dataset.uri),
        "rows": rows,
        "files": files,
        "digest": _tree_digest(files),
    }


def point_at_base(output_dir: Path, reference: BaseReference) -> None:
    """Make a saved adapter name its base by `reference` instead of the folder it was loaded from."""
    config_path = output_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        return  # full fine-tuning: the output is a whole model
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = reference.name
    config["revision"] = reference.revision
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
