"""Which run a checkpoint or an output folder belongs to, and the check that refuses another run's.

Called by the recipe's `setup` (`check`, before anything is loaded), by `checkpoint.save` (`write`, into every
checkpoint) and by `output.write_manifest` (the identity goes into `manifest.json`). A run is identified by the job
(namespace, name, and `uid` when the operator set one) and a sha256 of what defines the training: the spec fields in
`FineTuneJobSpec.immutable` and `max_steps_override`. A checkpoint or manifest of any other run, or one that
records no identity (written by an older trainer), is refused with `CheckpointMismatch`: resuming it would continue
someone else's training, and saving would overwrite someone else's result. The same job restarted (pod lost,
`finetune run` run again with the same manifest) has the same identity and resumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetune_api.job import FineTuneJobSpec
from finetune_api.trainer import TrainerConfig

FILE = "identity.json"
"""The identity's file in every checkpoint folder."""

MANIFEST_KEY = "job"
"""The identity's key in `manifest.json`."""


class CheckpointMismatch(RuntimeError):  # noqa: N818 - the name is the termination message's `reason`
    """A checkpoint or output folder belongs to another run; the message names both runs and the way out."""


@dataclass(frozen=True)
class RunIdentity:
    """The run a checkpoint belongs to."""

    namespace: str
    name: str
    uid: str | None
    spec_sha256: str

    @classmethod
    def of(cls, cfg: TrainerConfig) -> RunIdentity:
        """This run's identity."""
        defining = cfg.spec.model_dump(mode="json", by_alias=True, include=set(FineTuneJobSpec.immutable))
        defining["maxStepsOverride"] = cfg.max_steps_override
        canonical = json.dumps(defining, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return cls(cfg.namespace, cfg.name, cfg.uid, digest)

    @classmethod
    def from_dict(cls, recorded: Any) -> RunIdentity | None:
        """The identity recorded as `asdict(identity)`; None when `recorded` is not one."""
        try:
            return cls(**recorded)
        except TypeError:
            return None

    def describe(self) -> str:
        """`job ns/name (uid …, spec sha256 …)`, short enough for one line."""
        return (
            f"job {self.namespace}/{self.name} (uid {self.uid or '-'}, spec sha256 {self.spec_sha256[:12]})"
        )


def write(identity: RunIdentity, folder: Path) -> None:
    """Record `identity` in `folder` (a checkpoint being written)."""
    (folder / FILE).write_text(json.dumps(asdict(identity)))


def _recorded(path: Path, key: str | None) -> RunIdentity | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return RunIdentity.from_dict(document.get(key) if key and isinstance(document, dict) else document)


def _refuse(what: Path, recorded: RunIdentity | None, mine: RunIdentity, discard: Path) -> CheckpointMismatch:
    owner = recorded.describe() if recorded else "a run that recorded no identity (an older trainer)"
    return CheckpointMismatch(
        f"{what} belongs to {owner}, not to this run, {mine.describe()}: write this run to another folder "
        f"(spec.output.uri, or `finetune run --output`), or delete {discard} to discard the other run"
    )


def check(mine: RunIdentity, checkpoints: list[Path], manifest: Path) -> None:
    """Raise CheckpointMismatch unless every checkpoint and the output's manifest (if any) belong to `mine`."""
    for folder in checkpoints:
        recorded = _recorded(folder / FILE, None)
        if recorded != mine:
            raise _refuse(folder, recorded, mine, discard=folder.parent)
    if manifest.exists():
        recorded = _recorded(manifest, MANIFEST_KEY)
        if recorded != mine:
            raise _refuse(manifest, recorded, mine, discard=manifest.parent)
