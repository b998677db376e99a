"""The `finetune` command: validate manifests offline, regenerate the CRD, run a job locally.

`validate` applies the admission webhook's rules (`admission.review`: the CRD's rules and the GPU-fit verdict, both
from `api/`, and the resolved addresses of http(s) hosts); only the Secret lookups need a cluster. Everything
printed that comes from a file, a path or a schema goes through `rich.markup.escape`, so `[a-z0-9]` stays as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import finetune_api as api
import typer
import yaml
from finetune_api import fit
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_api.training import TrainingSpec
from finetune_operator.admission import Resolve, Review, resolve_host, review
from rich.console import Console
from rich.markup import escape

from finetune_cli import apidocs, crd

app = typer.Typer(
    help="finetune-operator: fine-tune LLMs on Kubernetes with FineTuneJob resources.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

LOCAL_STORAGE = (
    "Cluster storage maps to local files: configmap://NAME/KEY is the KEY of a ConfigMap named NAME in the same "
    "file; pvc://CLAIM/PATH (dataset or model) is DATA_DIR/CLAIM/PATH, else DATA_DIR/PATH; hf:// and https:// are "
    "downloaded into $FINETUNE_CACHE (default ~/.cache/finetune). --dataset FILE and --model DIR train on a local "
    "file or checkpoint folder instead of spec.dataset and spec.model; the manifest itself keeps URIs a cluster can "
    "read."
)
"""How `finetune run` reads cluster storage; in its --help and the README."""


def ok(line: str) -> None:
    """Print a success line; `line` is shown verbatim."""
    console.print(f"[green]✓[/green] {escape(line)}", highlight=False, soft_wrap=True)


def fail(line: str) -> None:
    """Print an error line on stderr; `line` is shown verbatim."""
    err.print(f"[red]✗[/red] {escape(line)}", highlight=False, soft_wrap=True)


def note(line: str) -> None:
    """Print a line worth knowing that is not an error; `line` is shown verbatim."""
    console.print(f"[yellow]![/yellow] {escape(line)}", highlight=False, soft_wrap=True)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of `path`; raises ValueError on YAML that is not a mapping."""
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ValueError(f"document {index + 1} is not a mapping")
    return docs


def validate_file(path: Path, gpu_fit: bool = True, resolve: Resolve | None = resolve_host) -> Review:
    """The admission verdict on every FineTuneJob in `path`, each line naming the file, the document and the field.

    Offline, Secrets are not looked up; http(s) hosts are resolved with `resolve` (None skips that check).
    """
    try:
        docs = load_documents(path)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        return Review([f"{path}: {exc}"])
    jobs = [(i, d) for i, d in enumerate(docs) if d.get("kind") == api.KIND]
    if not jobs:
        return Review(
            [f"{path}: no FineTuneJob found (kind: {api.KIND}, apiVersion: {api.GROUP}/{api.VERSION})"]
        )
    found = Review()
    for index, doc in jobs:
        where = f"{path}" + (f"[{index + 1}]" if len(docs) > 1 else "")
        namespace = doc.get("metadata", {}).get("namespace") or "default"
        verdict = review(doc, namespace, secret_keys=None, resolve=resolve, gpu_fit=gpu_fit)
        found.problems.extend(f"{where}: {line}" for line in verdict.problems)
        found.warnings.extend(f"{where}: {line}" for line in verdict.warnings)
    return found


def fit_notes(path: Path) -> list[str]:
    """The GPU-fit estimate of each job in `path` (a valid file), one line each."""
    notes = []
    for doc in load_documents(path):
        if doc.get("kind") != api.KIND or (verdict := fit.verdict(api.parse(doc).spec)) is None:
            continue
        name = doc.get("metadata", {}).get("name") or "the job"
        usage = f"{name}: about {verdict.estimate.gib:.1f} GiB per GPU"
        if verdict.capacity_gib is None:
            notes.append(f"{usage}; set resources.gpu.minMemoryGiB or product to check that it fits")
        else:
            notes.append(f"{usage}, fits {verdict.capacity_gib:g} GiB ({verdict.capacity_field})")
    return notes


@app.command()
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Manifests to check (YAML, multi-document).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A local dataset file to check with the trainer's row checks, read as the manifest's "
            "spec.dataset and spec.task say (defaults without a manifest)."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="With --data: a local folder with the model's tokenizer, to count rows longer than "
            "training.maxSeqLength (loads transformers; without it lengths are not checked)."
        ),
    ] = None,
) -> None:
    """Check FineTuneJob manifests offline with the rules of the CRD and the webhook, and (--data) a dataset file."""
    files = files or []
    if data is None and not files:
        fail("give manifests to check, or --data FILE (with at most one manifest)")
        raise typer.Exit(code=2)
    failed = False
    for path in files:
        verdict = validate_file(path)
        failed |= bool(verdict.problems)
        for line in verdict.problems:
            fail(line)
        if verdict.problems:
            continue
        ok(str(path))
        for line in verdict.warnings:
            note(line)
        for line in fit_notes(path):
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if data is not None:
        failed |= _validate_data(data, files, model) if not failed else True
    raise typer.Exit(code=1 if failed else 0)


def _validate_data(path: Path, manifests: list[Path], model: Path | None) -> bool:
    """Check `path` as the (single) manifest's job reads it; True when a row is bad or the file unreadable."""
    from finetune_trainer.check import check_data, describe  # no torch: see finetune_trainer.check
    from finetune_trainer.data import DataError

    jobs = [api.parse(d) for m in manifests for d in load_documents(m) if d.get("kind") == api.KIND]
    if len(jobs) > 1:
        fail(
            f"--data is read as one job's spec.dataset and spec.task; give one manifest, not {len(jobs)} jobs"
        )
        return True
    spec = jobs[0].spec if jobs else None
    dataset = spec.dataset if spec else DatasetSpec(uri=f"pvc://local/{path.name}")
    task = spec.task if spec else TaskSpec()
    max_len = spec.training.max_seq_length if spec else TrainingSpec().max_seq_length
    try:
        report = check_data(path, task, dataset, max_len, model)
    except (DataError, OSError) as exc:
        said = str(exc)  # errors about the whole file start with its name already
        fail(
            said.replace(f"{path.name}: ", f"{path}: ", 1)
            if said.startswith(f"{path.name}: ")
            else f"{path}: {said}"
        )
        return True
    for kind, line in describe(report, path):
        {"bad": fail, "ok": ok, "note": note}[kind](line)
    return bool(report.problems)


@app.command(
    help=f"""Train a FineTuneJob on this machine with the same trainer the pods run.

{LOCAL_STORAGE}

The trainer's log is written to OUTPUT/.local/trainer.log as it runs: follow it with tail -f."""
)
def run(
    file: Annotated[
        Path, typer.Argument(help="A FineTuneJob manifest (ConfigMaps for configmap:// data may follow).")
    ],
    output: Annotated[
        Path, typer.Option(help="Folder for the adapter or model, manifest.json and checkpoints.")
    ] = Path("finetune-output"),
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many optimizer steps.")
    ] = None,
    nproc: Annotated[
        int, typer.Option(min=1, help="Processes (through torchrun), e.g. to try DeepSpeed.")
    ] = 1,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="DATA_DIR: where pvc://CLAIM/PATH is read, as DATA_DIR/CLAIM/PATH or DATA_DIR/PATH. "
                     "Default: the manifest's folder."),
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Train on this local file (jsonl, json, csv, parquet) instead of spec.dataset.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Start from this local Hugging Face checkpoint folder instead of spec.model.")
    ] = None,
) -> None:  # fmt: skip
    # It trains on this machine, not on the GPUs the spec asks for: no GPU-fit verdict.
    problems = validate_file(file, gpu_fit=False).problems
    for line in problems:
        fail(line)
    if problems:
        raise typer.Exit(code=1)
    # Imported here: `finetune validate` and `crd` do not need the trainer package.
    from finetune_trainer.local import LOCAL_DIR, LOG_FILE, LocalRunError, describe, run_local

    try:
        result = run_local(file, output, max_steps=max_steps, nproc=nproc, data_dir=data_dir, dataset=dataset,
                           model=model)  # fmt: skip
    except (LocalRunError, OSError) as exc:
        fail(f"{file}: {exc}" if isinstance(exc, OSError) else str(exc))
        raise typer.Exit(code=1) from None
    if result.returncode == 0:
        first, *rest = describe(result)
        ok(first)
        for line in rest:
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    else:
        summary = result.summary
        reason = (
            f"{summary.reason}: {summary.message}" if summary and summary.message else "see the log above"
        )
        fail(f"failed ({reason}); log: {result.output_dir / LOCAL_DIR / LOG_FILE}")
    raise typer.Exit(code=result.returncode)


@app.command("operator")
def operator_command() -> None:
    """Run the operator against the current kubeconfig (or the in-cluster config); settings from FINETUNE_* env."""
    # Imported here: the operator extra (kopf, kubernetes) is only needed to run the operator.
    from finetune_operator import config, main

    try:
        settings = config.from_env()
    except ValueError as exc:
        err.print(f"[red]✗[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    raise typer.Exit(code=main.main(settings))


@app.command("crd")
def crd_command(
    output_dir: Annotated[Path, typer.Option(help="Folder to write the CRD into.")] = Path("crds"),
    api_docs: Annotated[
        Path | None,
        typer.Option(help="Also write the API reference (Markdown) to this file, e.g. docs/api.md."),
    ] = None,
) -> None:
    """Regenerate the CustomResourceDefinition (and optionally the API reference) from the models."""
    console.print(f"wrote {escape(str(crd.write_crds(output_dir)))}", highlight=False, soft_wrap=True)
    if api_docs is not None:
        changed = apidocs.write_reference(api_docs)
        state = "updated" if changed else "unchanged"
        console.print(f"{state} {escape(str(api_docs))}", highlight=False, soft_wrap=True)
