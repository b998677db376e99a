"""Turning the URIs of `spec.model` and `spec.dataset` into local paths the loaders can open.

Called by the recipe before it loads data or the model. Tiny presets are built by `tiny.ensure_tiny_preset`;
hf:// goes through huggingface_hub / datasets into `paths.cache_dir`; http(s) files are downloaded there after the
resolved address is checked to be public (the API only checks the literal host); pvc:// and configmap:// are
volumes the operator mounts under `paths.data_dir`; s3:// (`s3.py`) and oci:// (`oci.py`) are downloaded into
`paths.cache_dir` with the role's credentials. A model folder is checked to hold a checkpoint before anything
loads it. Failures raise `StorageError` naming the URI or folder and the cause.
"""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from finetune_api.data import DatasetSpec
from finetune_api.model import ModelSpec
from finetune_api.presets import PRESETS
from finetune_api.trainer import TrainerPaths
from finetune_api.uris import climbs, resolved_problem, scheme_of

from finetune_trainer import remote

DOWNLOAD_TIMEOUT_S = 60.0
"""Per-connection timeout for http(s) datasets: a stalled server fails the run instead of hanging it."""


StorageError = remote.StorageError
"""A model, dataset or output location cannot be read or written; the message names the URI (defined in `remote`,
which the s3:// and oci:// transfers share)."""


def _split_hf(uri: str) -> tuple[str, str | None]:
    name = uri.removeprefix("hf://")
    repo, _, revision = name.partition("@")
    return repo, revision or None


def mounted_candidates(uri: str, data_dir: Path) -> tuple[Path, Path]:
    """Where pvc://claim/path and configmap://name/key may be under `data_dir`, in the order they are tried.

    The volume may be mounted at `data_dir/<claim>` (several volumes side by side) or at `data_dir` itself (one
    volume).
    """
    volume, _, inner = uri.split("://", 1)[1].partition("/")
    return data_dir / volume / inner, data_dir / inner


def mounted(uri: str, paths: TrainerPaths) -> Path:
    """The first of `mounted_candidates` that exists; StorageError naming both otherwise."""
    if climbs(uri):  # the API refuses these; a config written by hand must not leave the volume either
        raise StorageError(f"{uri}: a '..' segment would leave the mounted volume")
    tried = mounted_candidates(uri, Path(paths.data_dir))
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise StorageError(f"{uri}: neither {tried[0]} nor {tried[1]} exists in the mounted volume")


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
    "vocab.json", "vocab.txt",
)  # fmt: skip
"""Any one of these means the folder has a tokenizer (transformers reports a half-saved one itself)."""


def check_model_dir(path: Path) -> Path:
    """`path` when it holds a Hugging Face checkpoint; else StorageError naming the folder and what it lacks."""
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise StorageError(f"model folder {path} {what}; give the folder that save_pretrained wrote")
    names = {child.name for child in path.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names & set(TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json, tokenizer.model, vocab.json + merges.txt or vocab.txt)")
    if not any(
        n.endswith(".safetensors") or (n.startswith("pytorch_model") and n.endswith(".bin")) for n in names
    ):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if missing:
        raise StorageError(
            f"model folder {path} is {'empty' if not names else 'incomplete'}: missing {'; '.join(missing)}. It "
            "must hold a Hugging Face checkpoint: the model and its tokenizer as save_pretrained writes them"
        )
    return path


def _fetch_hf_model(uri: str, paths: TrainerPaths) -> Path:
    from huggingface_hub import snapshot_download

    repo, revision = _split_hf(uri)
    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=Path(paths.cache_dir) / "hf"))
    except Exception as exc:
        raise StorageError(f"cannot fetch model {uri}: {type(exc).__name__}: {exc}") from exc


def resolve_model(model: ModelSpec, paths: TrainerPaths) -> Path:
    """A local directory holding the base checkpoint (config, weights, tokenizer) for `spec.model`."""
    if model.preset is not None:
        preset = PRESETS.get(model.preset)
        if preset is None:
            raise StorageError(f"unknown model preset {model.preset!r}; known: {', '.join(PRESETS)}")
        if preset.tiny:
            from finetune_trainer import tiny  # torch and transformers: not needed by `finetune run`'s checks

            return tiny.ensure_tiny_preset(preset.source, Path(paths.cache_dir))
        return _fetch_hf_model(preset.source, paths)
    uri = model.uri or ""
    scheme = scheme_of(uri)
    if scheme == "hf":
        return check_model_dir(_fetch_hf_model(uri, paths))
    if scheme == "pvc":
        return check_model_dir(mounted(uri, paths))
    if scheme == "s3":
        from finetune_trainer import s3

        return check_model_dir(s3.download(uri, _cache_for(uri, paths, "s3"), "model"))
    if scheme == "oci":
        from finetune_trainer import oci

        return check_model_dir(oci.pull(uri, Path(paths.cache_dir) / "oci", "model")[0])
    raise StorageError(f"model {uri}: {scheme}:// models are not supported by this trainer image")


def _cache_for(uri: str, paths: TrainerPaths, kind: str) -> Path:
    """A download folder of its own for `uri` under the cache."""
    return Path(paths.cache_dir) / kind / hashlib.sha256(uri.encode()).hexdigest()[:16]


def _check_public(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise StorageError(f"cannot reach {url}: {host!r} does not resolve ({exc.strerror or exc})") from exc
    if (problem := resolved_problem(url, (str(info[4][0]) for info in infos))) is not None:
        raise StorageError(f"refusing {url}: {problem}")


def _download(url: str, paths: TrainerPaths) -> Path:
    _check_public(url)
    name = PurePosixPath(urlsplit(url).path).name or "data"
    dest = Path(paths.cache_dir) / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise StorageError(f"cannot download {url}: {exc}") from exc
    partial.replace(dest)
    return dest


def _fetch_hf_dataset(dataset: DatasetSpec, paths: TrainerPaths) -> Path:
    import datasets

    repo, revision = _split_hf(dataset.uri)
    dest = (
        Path(paths.cache_dir) / "datasets" / repo.replace("/", "--") / f"{revision or 'main'}-{dataset.split}"
    )
    if (dest / "data.parquet").exists():
        return dest / "data.parquet"
    try:
        table = datasets.load_dataset(
            repo, revision=revision, split=dataset.split, cache_dir=str(dest / "hf")
        )
    except Exception as exc:
        raise StorageError(f"cannot fetch dataset {dataset.uri}: {type(exc).__name__}: {exc}") from exc
    table.to_parquet(str(dest / "data.parquet"))
    return dest / "data.parquet"


def resolve_dataset(dataset: DatasetSpec, paths: TrainerPaths) -> Path:
    """A local file (or parquet folder) holding the rows of `spec.dataset`."""
    scheme = scheme_of(dataset.uri)
    if scheme == "hf":
        return _fetch_hf_dataset(dataset, paths)
    if scheme in ("http", "https"):
        return _download(dataset.uri, paths)
    if scheme in ("pvc", "configmap"):
        return mounted(dataset.uri, paths)
    if scheme == "s3":
        from finetune_trainer import s3

        return s3.download(dataset.uri, _cache_for(dataset.uri, paths, "s3"), "dataset")
    raise StorageError(f"dataset {dataset.uri}: {scheme}:// datasets are not supported by this trainer image")
