"""`finetune run FILE`: train a FineTuneJob manifest on this machine, with a progress bar and an end summary.

Called by the operator's CLI (`finetune_cli.main`), which passes the manifest path and flags. The manifest is
validated with the API models, turned into a `TrainerConfig` with local folders, and trained by the same
`python -m finetune_trainer` the pods run (under torchrun when `nproc` > 1). Its JSON log lines drive a rich
progress bar (a line every step) and are copied, line by line as they come, to `<output>/.local/trainer.log`; the
run's other files (config, termination message, staged data) are in `<output>/.local/` too, which digests skip.

Local stand-ins for cluster storage (also in `finetune run --help` and the README):

- `configmap://name/key`: the `key` of a ConfigMap document named `name` in the same file (`examples/tiny-lora.yaml`;
  its other keys are staged beside it, as the pod mounts them, e.g. a `task.chatTemplate` file);
- `pvc://claim/path` (dataset or model): `<data_dir>/claim/path`, else `<data_dir>/path`; `data_dir` is
  `--data-dir`, by default the manifest's folder;
- `--dataset FILE`, `--model DIR`: a local file or checkpoint folder instead of `spec.dataset` / `spec.model`. The
  manifest itself must stay valid for the cluster, so plain paths are never accepted in it.
- `s3://` and `oci://` (model, dataset, output): read and written by the trainer as in a pod, with credentials
  from this shell's environment: AWS_* for S3, DOCKER_CONFIG or ~/.docker/config.json for registries.

The trainer sees these as a pod sees its volumes: each one linked under `<output>/.local/data/<claim or name>`.

A manifest with `metadata.generateName` is named as the API server would name it, with a suffix derived from
the output folder, so that a rerun into the same folder keeps the name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import finetune_api as api
import pydantic
import yaml
from finetune_api.evaluation import before_after_table
from finetune_api.trainer import (
    CONFIG_FILE_NAME,
    ENV_TERMINATION_MESSAGE_PATH,
    ExitCode,
    TerminationMessage,
    TrainerConfig,
    TrainerPaths,
    trainer_config,
)
from finetune_api.uris import scheme_of
from rich.console import Console

from finetune_trainer import follow, storage

DEFAULT_CACHE = Path(os.environ.get("FINETUNE_CACHE", Path.home() / ".cache" / "finetune"))
"""Built tiny presets and downloads, shared by local runs (override with $FINETUNE_CACHE)."""

LOCAL_DIR = ".local"
"""Folder under the output for the run's own files; hidden, so `output.digests` leaves it out."""

LOG_FILE, PREVIOUS_LOG_FILE = "trainer.log", "trainer.log.1"
DATASET_CLAIM, MODEL_CLAIM = "local-dataset", "local-model"
"""The volumes that stand for `--dataset FILE` and `--model DIR`."""


class LocalRunError(ValueError):
    """The manifest cannot run on this machine as given; the message says what to change."""


_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters the API server appends to a generateName prefix (no vowels, no look-alikes)."""


@dataclass
class LocalRun:
    """The outcome of `run_local`."""

    returncode: int
    summary: TerminationMessage | None
    """The termination message (None if the trainer wrote none, or one this version cannot read)."""
    output_dir: Path
    name: str = ""
    artifact: str = "adapter"
    """What `output_dir` holds: `adapter`, or `model` for full fine-tuning."""
    seconds: float = 0.0
    first_loss: float | None = None
    """Training loss of the first step of this run (the bar's first reading)."""
    tokens_per_second: float | None = None
    """Throughput from the first to the last step of this run."""


def _read_job(manifest: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    documents = [d for d in yaml.safe_load_all(manifest.read_text(encoding="utf-8")) if isinstance(d, dict)]
    jobs = [d for d in documents if d.get("kind") == api.KIND]
    if len(jobs) != 1:
        raise LocalRunError(
            f"{manifest} holds {len(jobs)} {api.KIND}s; `finetune run` trains exactly one: put each in its own file "
            "(`finetune validate` checks several at once)"
        )
    return jobs[0], documents


Links = dict[str, tuple[str, Path]]
"""Volume name → (the one entry in it, the local file or folder that entry links to)."""


def _with_local_files(
    job: api.FineTuneJob, dataset: Path | None, model: Path | None
) -> tuple[api.FineTuneJob, Links]:
    """`job` with `--dataset FILE` and `--model DIR` in place of its dataset and model, re-validated."""
    if dataset is None and model is None:
        return job, {}
    spec, links = job.spec.to_wire(), {}
    if dataset is not None:
        if not dataset.exists():
            raise LocalRunError(f"--dataset {dataset}: no such file")
        kept = {k: v for k, v in spec["dataset"].items() if k in ("columns", "validationSplit", "maxSamples")}
        if job.spec.dataset.format not in (None, "hf"):  # hf:// is read as parquet; a file by its suffix
            kept["format"] = job.spec.dataset.format
        # The file's own name, as errors then name it; a fixed one where it holds what a URI may not, e.g. spaces.
        name = (
            dataset.name
            if re.fullmatch(r"[\w.-]+", dataset.name)
            else "dataset" + (dataset.suffix if re.fullmatch(r"\.\w+", dataset.suffix) else "")
        )
        links[DATASET_CLAIM] = (name, dataset)
        spec["dataset"] = {**kept, "uri": f"pvc://{DATASET_CLAIM}/{name}"}
    if model is not None:
        _check_model_dir(model)
        links[MODEL_CLAIM] = ("model", model)
        spec["model"] = {
            "uri": f"pvc://{MODEL_CLAIM}/model",
            "trustRemoteCode": job.spec.model.trust_remote_code,
        }
    try:
        return api.parse({**job.to_wire(), "spec": spec}), links
    except pydantic.ValidationError as exc:
        raise LocalRunError(f"with --dataset/--model: {'; '.join(api.describe(exc))}") from None


def _materialise_configmap(
    documents: list[dict[str, Any]], named: str, uri: str, manifest: Path, stage: Path
) -> None:
    name, _, key = uri.removeprefix("configmap://").partition("/")
    for doc in documents:
        if doc.get("kind") == "ConfigMap" and (doc.get("metadata") or {}).get("name") == name:
            value = (doc.get("data") or {}).get(key)
            if not isinstance(value, str):
                raise LocalRunError(f"{manifest}: ConfigMap {name!r} has no data key {key!r} ({named} {uri})")
            (stage / name).mkdir(parents=True, exist_ok=True)
            for each, text in (
                doc.get("data") or {}
            ).items():  # all keys, as the pod mounts the whole ConfigMap
                if isinstance(text, str):
                    (stage / name / each).write_text(text, encoding="utf-8")
            return
    raise LocalRunError(
        f"{named} {uri}: ConfigMap {name!r} is not in {manifest}; add it there as another YAML document "
        f"(kind: ConfigMap, metadata.name: {name}, data: {{{key}: ...}}) or pass --dataset FILE"
    )


def _find_volume(uri: str, named: str, data_dir: Path) -> Path:
    """The local folder that stands for the claim of `uri`: `data_dir/claim` or `data_dir` itself."""
    tried = storage.mounted_candidates(uri, data_dir)
    claim = uri.removeprefix("pvc://").partition("/")[0]
    for candidate, volume in ((tried[0], data_dir / claim), (tried[1], data_dir)):
        if candidate.exists():
            if named == "spec.model.uri":
                _check_model_dir(candidate)
            return volume
    flag = "--model DIR" if named == "spec.model.uri" else "--dataset FILE"
    raise LocalRunError(
        f"{named} {uri}: neither {tried[0]} nor {tried[1]} exists; pvc://CLAIM/PATH is read from "
        f"DATA_DIR/CLAIM/PATH or DATA_DIR/PATH (--data-dir, now {data_dir}), or pass {flag}"
    )


def _check_model_dir(path: Path) -> None:
    try:
        storage.check_model_dir(path)
    except storage.StorageError as exc:
        raise LocalRunError(str(exc)) from None


def _stage_volumes(job: api.FineTuneJob, documents: list[dict[str, Any]], manifest: Path, data_dir: Path,
                   links: Links, stage: Path) -> None:  # fmt: skip
    """Lay out `stage` as the pod's data volumes: ConfigMap keys as files, claims as links to local folders."""
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for claim, (name, target) in links.items():
        (stage / claim).mkdir()
        (stage / claim / name).symlink_to(target.resolve())
    volumes: dict[str, Path] = {}
    spec = job.spec
    for named, uri in (("spec.dataset.uri", spec.dataset.uri), ("spec.model.uri", spec.model.uri or ""),
                       ("spec.evaluation.datasetUri", spec.evaluation.dataset_uri or "")):  # fmt: skip
        scheme = scheme_of(uri)
        if scheme == "configmap":
            _materialise_configmap(documents, named, uri, manifest, stage)
        elif scheme == "pvc":
            claim = uri.removeprefix("pvc://").partition("/")[0]
            if claim in links and uri == f"pvc://{claim}/{links[claim][0]}":
                continue
            volume = _find_volume(uri, named, data_dir)
            if volumes.setdefault(claim, volume) != volume or (stage / claim).is_dir():
                raise LocalRunError(f"pvc://{claim} stands for two local folders here; rename one claim")
    for claim, volume in volumes.items():
        (stage / claim).symlink_to(volume.resolve(), target_is_directory=True)


def local_name(job: api.FineTuneJob, output_dir: Path) -> str:
    """The job's name; for a generateName manifest, the prefix and 5 characters derived from `output_dir`."""
    if job.metadata.name:
        return job.metadata.name
    digest = hashlib.sha256(str(output_dir).encode()).digest()
    suffix = "".join(_NAME_SUFFIX_ALPHABET[b % len(_NAME_SUFFIX_ALPHABET)] for b in digest[:5])
    return f"{job.metadata.generate_name}{suffix}"


def stage_local_config(
    manifest: Path,
    output_dir: Path,
    max_steps: int | None,
    data_dir: Path | None = None,
    dataset: Path | None = None,
    model: Path | None = None,
) -> TrainerConfig:
    """The TrainerConfig for running `manifest` here; stages its data volumes under `output_dir/.local/data`."""
    document, documents = _read_job(manifest)
    job, links = _with_local_files(api.parse(document), dataset, model)
    stage = output_dir / LOCAL_DIR / "data"
    _stage_volumes(job, documents, manifest, data_dir or manifest.parent, links, stage)
    paths = TrainerPaths(
        output_dir=str(output_dir), checkpoint_dir=str(output_dir / "checkpoints"), cache_dir=str(DEFAULT_CACHE),
        data_dir=str(stage), termination_message_path=str(output_dir / LOCAL_DIR / "termination-log"),
    )  # fmt: skip
    named = job.metadata.model_copy(update={"name": local_name(job, output_dir)})
    cfg = trainer_config(job.model_copy(update={"metadata": named}), paths)
    origins = {f"pvc://{claim}/{name}": str(target.resolve()) for claim, (name, target) in links.items()}
    return cfg.model_copy(
        update={"max_steps_override": max_steps, "metrics_port": 0, "origins": origins or None}
    )


def _command(config_file: Path, nproc: int) -> list[str]:
    trainer = ["-m", "finetune_trainer", "--config", str(config_file)]
    if nproc == 1:
        return [sys.executable, *trainer]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *trainer,
    ]


def run_local(
    manifest: Path,
    output_dir: Path,
    max_steps: int | None = None,
    nproc: int = 1,
    console: Console | None = None,
    data_dir: Path | None = None,
    dataset: Path | None = None,
    model: Path | None = None,
) -> LocalRun:
    """Train `manifest` here into `output_dir`; raises LocalRunError (one line) when it cannot start."""
    console = console or Console(stderr=True)
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = stage_local_config(manifest.resolve(), output_dir, max_steps, data_dir, dataset, model)
    config_file = output_dir / LOCAL_DIR / CONFIG_FILE_NAME
    config_file.write_text(cfg.model_dump_json(by_alias=True, indent=2))
    termination = Path(cfg.paths.termination_message_path)
    termination.unlink(missing_ok=True)
    env = {**os.environ, ENV_TERMINATION_MESSAGE_PATH: str(termination), "PYTHONUNBUFFERED": "1"}
    started, log_path = time.monotonic(), output_dir / LOCAL_DIR / LOG_FILE
    if log_path.exists():
        log_path.replace(log_path.with_name(PREVIOUS_LOG_FILE))  # a rerun keeps the previous run's log, once
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(_command(config_file, nproc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=env)  # fmt: skip
        follower = follow.Follower(log)
        assert process.stdout is not None
        follower.follow(process.stdout, console)
        returncode = process.wait()
    if returncode not in (
        ExitCode.SUCCEEDED,
        ExitCode.INVALID_CONFIG,
    ):  # a bad config or data: the reason says it
        console.print(follow.log_tail(log_path), markup=False, highlight=False)
    return LocalRun(
        returncode, follow.read_summary(termination), output_dir, name=cfg.name, seconds=time.monotonic() - started,
        artifact="adapter" if cfg.spec.method.type != "full" else "model",
        first_loss=follower.steps[0]["loss"] if follower.steps else None,
        tokens_per_second=follower.tokens_per_second(),
    )  # fmt: skip


def _manifest_digest(run: LocalRun) -> str | None:
    """sha256 of manifest.json: from the termination message, else computed here."""
    if run.summary is not None and run.summary.digest:
        return run.summary.digest.removeprefix("sha256:")
    manifest = run.output_dir / "manifest.json"
    if not manifest.exists():
        return None
    with manifest.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def describe(run: LocalRun) -> list[str]:
    """The end summary of a successful run, plain text: steps, time, losses, throughput, before → after evaluation
    scores (`spec.evaluation`), result and digest."""
    metrics = run.summary.metrics if run.summary is not None else {}
    step, loss, eval_loss = metrics.get("step"), metrics.get("loss"), metrics.get("eval_loss")
    facts: list[str | None] = [(f"{step:.0f} steps " if step is not None else "") + f"in {run.seconds:.1f} s"]
    if loss is not None:
        facts.append(
            f"loss {run.first_loss:.4f} → {loss:.4f}" if run.first_loss is not None else f"loss {loss:.4f}"
        )
    facts.append(f"eval loss {eval_loss:.4f}" if eval_loss is not None else None)
    facts.append(f"{run.tokens_per_second:,.0f} tokens/s" if run.tokens_per_second is not None else None)
    lines = [f"trained {run.name}: " + ", ".join(f for f in facts if f)]
    lines += before_after_table(metrics)
    published = (
        run.summary.output if run.summary is not None and "://" in (run.summary.output or "") else None
    )
    lines.append(f"{run.artifact}: {published or run.output_dir}")
    digest = _manifest_digest(run)
    if digest is not None:
        what = "the OCI manifest" if published and published.startswith("oci://") else "manifest.json"
        lines.append(f"digest: sha256:{digest} ({what}, which lists every file's digest)")
    return lines
