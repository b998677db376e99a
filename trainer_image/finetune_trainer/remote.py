"""What the s3:// and oci:// transfers share: the error they raise and each storage role's credentials.

Used by `s3.py` and `oci.py`, which `storage.py` (models, datasets) and `output.py` (results) call. Credentials come
from the environment only: the pod gets each role's Secret under its own prefix (`credential_prefix`:
FINETUNE_OUTPUT_AWS_ACCESS_KEY_ID...) so that the model, the dataset and the output may each name a different
Secret; `finetune run` passes the plain AWS_* / DOCKER_CONFIG of the shell, the fallback for every role.
Nothing here logs or returns a secret's value.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from finetune_api.trainer import INSECURE_REGISTRIES_ENV, StorageRole, credential_prefix

"""The standard AWS variables the S3 client reads (the names AWS's own SDKs use)."""

INSECURE_REGISTRIES = INSECURE_REGISTRIES_ENV


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class StorageError(RuntimeError):
    """A model, dataset or output location cannot be read or written; the message names the URI and the cause."""


def role_env(
    role: StorageRole, names: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`names` as `role` sees them: FINETUNE_<ROLE>_<NAME> when set, else the plain <NAME>; unset ones left out."""
    env = os.environ if environ is None else environ
    prefix, found = credential_prefix(role), {}
    for name in names:
        value = env.get(prefix + name) or env.get(name)
        if value:
            found[name] = value
    return found


def docker_config(role: StorageRole, environ: Mapping[str, str] | None = None) -> Path | None:
    """`role`'s docker config.json: in its DOCKER_CONFIG folder (per role, else the plain one), else
    ~/.docker/config.json; None when there is none (anonymous pulls)."""
    folder = role_env(role, ("DOCKER_CONFIG",), environ).get("DOCKER_CONFIG")
    path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
    return path if path.is_file() else None
