"""s3:// models, datasets and outputs, on AWS S3 or any S3-compatible store (MinIO, Ceph RGW, R2, versitygw).

Called by `storage.py` (download a model folder or a dataset file or prefix) and `output.py` (upload the result).
The client is the `minio` SDK: SigV4 signing, multipart uploads for large files and retries of failed requests
with backoff (5 tries on connection errors and 5xx) are its own. boto3 would do as well, but its botocore pins
python-dateutil below 3, which the rest of this environment has outgrown (see the trainer README).

Credentials and endpoint are the standard AWS variables, per role (`remote.role_env`): AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (an S3-compatible store; AWS S3
when unset), AWS_REGION or AWS_DEFAULT_REGION. Without keys, requests are anonymous (public buckets).

Integrity: every download is checked against the size listed by the store, and a folder holding `manifest.json`
against the sha256 it records (`verify_manifest`). An upload deletes the destination's old `manifest.json` first
and writes the new one last, so a reader who waits for the manifest never takes a half-written result for a
complete one.
"""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from finetune_api.references import S3_VARIABLES
from finetune_api.trainer import StorageRole

from finetune_trainer import remote
from finetune_trainer.remote import StorageError

PART_SIZE = 16 * 1024 * 1024
"""Multipart part size: files larger than this go up in parts (S3's minimum part is 5 MiB)."""
MANIFEST = "manifest.json"
WRITE_PROBE = ".finetune-write-check"
"""The empty object `check_writable` puts under an output prefix and removes."""
_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


def split(uri: str) -> tuple[str, str]:
    """(bucket, key or prefix without slashes at its ends) of s3://bucket/key."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def client(role: StorageRole, environ: Mapping[str, str] | None = None) -> Any:
    """A `minio.Minio` for `role`'s endpoint and credentials (see the module docstring)."""
    import minio

    env = remote.role_env(role, S3_VARIABLES, environ)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "https://s3.amazonaws.com"
    parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise StorageError(f"AWS_ENDPOINT_URL {endpoint!r} is not an http(s)://host[:port] URL")
    return minio.Minio(
        parts.netloc,
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        secure=parts.scheme == "https",
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )


def describe_failure(uri: str, exc: Exception) -> StorageError:
    """A StorageError naming `uri` and why the store refused (never a credential: S3 errors carry none)."""
    return StorageError(f"{uri}: {_cause(uri, exc)}")


def _cause(uri: str, exc: Exception) -> str:
    from minio.error import S3Error

    if not isinstance(exc, S3Error):
        return f"{type(exc).__name__}: {exc}"
    cause = {
        "NoSuchBucket": f"bucket {split(uri)[0]!r} does not exist",
        "NoSuchKey": "no such object",
    }.get(exc.code or "", f"{exc.code}: {exc.message}")
    if exc.code in _AUTH_CODES:
        cause += " (check the Secret's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    return cause


def check_bucket(uri: str, role: StorageRole) -> None:
    """Fail early when the bucket is missing or the credentials are refused."""
    bucket = split(uri)[0]
    try:
        found = client(role).bucket_exists(bucket)
    except StorageError:
        raise
    except Exception as exc:
        raise describe_failure(uri, exc) from exc
    if not found:
        raise StorageError(f"{uri}: bucket {bucket!r} does not exist; create it or fix the URI")


def check_writable(uri: str, role: StorageRole) -> None:
    """Before training: the bucket exists, takes the credentials and accepts a write under the prefix (an empty
    probe object, removed at once), so a read-only key fails the run now rather than after training."""
    check_bucket(uri, role)
    bucket, key = split(uri)
    probe, store = _join(key, WRITE_PROBE), client(role)
    need = "the output's credentials need s3:PutObject and s3:DeleteObject under this prefix"
    try:
        store.put_object(bucket, probe, io.BytesIO(b""), 0)
    except Exception as exc:
        raise StorageError(f"{uri}: the store refused a write ({_code(exc)}); {need}") from exc
    try:
        store.remove_object(bucket, probe)
    except Exception as exc:
        raise StorageError(f"{uri}: the store refused to delete {probe!r} ({_code(exc)}); {need}") from exc


def _code(exc: Exception) -> str:
    from minio.error import S3Error

    return (exc.code or "error") if isinstance(exc, S3Error) else f"{type(exc).__name__}: {exc}"


def target_in(dest: Path, relative: str, uri: str) -> Path:
    """Where object `relative` (its key under the prefix) is written: under `dest`, or StorageError for a key whose
    `..` segments would leave it (a crafted key must not write anywhere else in the pod)."""
    target = (dest / relative).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise StorageError(
            f"{uri}: object key {relative!r} points outside the download folder; not downloaded"
        )
    return target


def download(uri: str, dest: Path, role: StorageRole) -> Path:
    """The object `uri` (a file: returns dest/<name>) or every object under the prefix `uri` (returns `dest`),
    sizes checked; a folder's manifest.json digests are checked too. Already complete `dest`s are reused."""
    bucket, key = split(uri)
    store = client(role)
    try:
        objects = [o for o in store.list_objects(bucket, prefix=key, recursive=True) if not o.is_dir]
        single = [o for o in objects if o.object_name == key]
        inside = [o for o in objects if key == "" or o.object_name.startswith(key + "/")]
        chosen, base = (single, key.rpartition("/")[0]) if single else (inside, key)
        if not chosen:
            raise StorageError(f"{uri}: no such object, and no objects under it")
        for item in chosen:
            relative = item.object_name[len(base) :].lstrip("/")
            target = target_in(dest, relative, uri)
            if not (target.is_file() and target.stat().st_size == item.size):
                store.fget_object(bucket, item.object_name, str(target))
            if target.stat().st_size != item.size:
                raise StorageError(
                    f"{uri}: {relative} is {target.stat().st_size} bytes, the store lists {item.size}"
                )
    except StorageError:
        raise
    except Exception as exc:
        raise describe_failure(uri, exc) from exc
    if single:
        return dest / key.rpartition("/")[2]
    verify_manifest(dest, uri)
    return dest


def verify_manifest(folder: Path, uri: str) -> None:
    """When `folder` holds a finetune manifest.json, every file it lists must have the sha256 it records."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return
    listed = json.loads(manifest.read_text()).get("digests") or {}
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file() or remote.sha256_of(path) != digest:
            raise StorageError(
                f"{uri}: {name} does not match the sha256 in manifest.json (corrupt or incomplete)"
            )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def upload(folder: Path, names: Iterable[str], uri: str, role: StorageRole) -> str:
    """Upload `names` (relative to `folder`, `manifest.json` among them) under the prefix `uri`: the old manifest
    removed first, the new one written last. Returns the prefix's URI."""
    bucket, key = split(uri)
    store = client(role)
    files = sorted(names, key=lambda name: name == MANIFEST)  # the manifest last
    try:
        check_bucket(uri, role)
        store.remove_object(bucket, _join(key, MANIFEST))
        for name in files:
            store.fput_object(bucket, _join(key, name), str(folder / name), part_size=PART_SIZE)
    except StorageError:
        raise
    except Exception as exc:
        raise describe_failure(uri, exc) from exc
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
