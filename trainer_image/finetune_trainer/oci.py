"""oci:// models and outputs as OCI artifacts, following the ORAS conventions, through the `oras` client.

Called by `storage.py` (pull a model) and `output.py` (push the result). An artifact is an OCI image manifest with:

- one layer per file, its media type by extension (`media_type`) and its relative path in the
  `org.opencontainers.image.title` annotation (what `oras pull` names the file by);
- the empty config (`application/vnd.oci.empty.v1+json`, the OCI 1.1 convention for artifacts);
- `artifactType` `ADAPTER_ARTIFACT_TYPE` for adapters, `MODEL_ARTIFACT_TYPE` for fully fine-tuned models.

The manifest goes up last, after every blob, so the tag never names a half-pushed artifact; its digest (what the
registry answers, checked against the bytes) is the run's `digest`. Pulls check each blob's size and sha256.

Registry auth: the role's docker config.json (`remote.docker_config`: the kubernetes.io/dockerconfigjson Secret the
pod mounts, or DOCKER_CONFIG / ~/.docker locally), basic or bearer-token as the registry asks. Before anything is
sent the registry is asked once for its challenge, so missing or refused credentials fail at once with a clear
reason rather than after oras's retries. Loopback registries and those in FINETUNE_INSECURE_REGISTRIES are spoken
to over plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_api.trainer import StorageRole

from finetune_trainer import remote
from finetune_trainer.remote import StorageError

ADAPTER_ARTIFACT_TYPE = "application/vnd.finetune.adapter.v1+json"
MODEL_ARTIFACT_TYPE = "application/vnd.finetune.model.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",  # sha256 of "{}"
    "size": 2,
}
TITLE = "org.opencontainers.image.title"
CHUNKED_ABOVE = 64 * 1024 * 1024
"""Blobs larger than this go up in chunks (oras's monolithic upload reads the whole file into memory)."""
CHUNK_SIZE = 16 * 1024 * 1024
_MEDIA_TYPES = {".json": "application/json", ".txt": "text/plain", ".jinja": "text/plain",
                ".safetensors": "application/vnd.safetensors", ".bin": "application/octet-stream"}  # fmt: skip


@dataclass(frozen=True)
class Reference:
    """oci://registry/repository[:tag|@sha256:digest], split."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, uri: str) -> Reference:
        rest = uri.removeprefix("oci://")
        registry, _, path = rest.partition("/")
        path, _, digest = path.partition("@")
        repository, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
        return cls(registry, repository, tag or None, digest or None)

    @property
    def target(self) -> str:
        """The reference as oras takes it (registry/repository:tag or @digest; the tag defaults to latest)."""
        return f"{self.registry}/{self.repository}" + (
            f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        )


def media_type(name: str) -> str:
    """A file's layer media type, by extension."""
    return _MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")


def plain_http(registry: str, environ: dict[str, str] | None = None) -> bool:
    """Loopback registries and those listed in FINETUNE_INSECURE_REGISTRIES are spoken to over HTTP."""
    env = os.environ if environ is None else environ
    listed = {h.strip() for h in env.get(remote.INSECURE_REGISTRIES, "").split(",") if h.strip()}
    host = registry.rsplit(":", 1)[0].strip("[]") if registry.count(":") <= 1 or "]" in registry else registry
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return loopback or registry in listed or host in listed


def basic_credentials(config: Path | None, registry: str) -> tuple[str, str] | None:
    """(user, password) for `registry` in a docker config.json, or None."""
    if config is None:
        return None
    auths = json.loads(config.read_text()).get("auths") or {}
    for key, entry in auths.items():
        host = key.split("://", 1)[-1].split("/", 1)[0]
        if host != registry:
            continue
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
        if user:
            return user, password
    return None


def _connect(ref: Reference, uri: str, role: StorageRole) -> tuple[Any, Any]:
    """(oras Registry with the role's credentials, the parsed container), after checking the registry takes them."""
    import oras.provider
    import requests

    insecure = plain_http(ref.registry)
    scheme = "http" if insecure else "https"
    credentials = basic_credentials(remote.docker_config(role), ref.registry)
    auth = requests.auth.HTTPBasicAuth(*credentials) if credentials else None
    try:
        challenge = requests.get(f"{scheme}://{ref.registry}/v2/", timeout=30)
        basic = challenge.headers.get("WWW-Authenticate", "").lower().startswith("basic")
        if basic and challenge.status_code == 401:
            if credentials is None:
                raise StorageError(
                    f"{uri}: the registry asks for credentials and the docker config has none for "
                    f"{ref.registry} (name a kubernetes.io/dockerconfigjson Secret, or `docker login` locally)"
                )
            if requests.get(f"{scheme}://{ref.registry}/v2/", auth=auth, timeout=30).status_code == 401:
                raise StorageError(f"{uri}: the registry refused the credentials for {ref.registry}")
    except requests.RequestException as exc:
        raise StorageError(f"{uri}: cannot reach registry {ref.registry}: {type(exc).__name__}") from exc
    registry = oras.provider.Registry(
        ref.registry, insecure=insecure, auth_backend="basic" if basic else "token"
    )
    if credentials is not None:
        registry.auth.set_basic_auth(*credentials)
    return registry, registry.get_container(ref.target)


def check_push(uri: str, role: StorageRole) -> None:
    """Fail early when the registry cannot be reached, wants credentials the role lacks, refuses them, or refuses
    pushes to the repository: an upload session is opened, then cancelled."""
    registry, container = _connect(Reference.parse(uri), uri, role)
    try:
        response = registry.do_request(
            f"{registry.prefix}://{container.upload_blob_url()}", "POST", headers={"Content-Length": "0"}
        )
    except Exception as exc:
        raise StorageError(f"{uri}: cannot start a push: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 202:
        raise _refused(uri, "a push", response)
    if location := response.headers.get("Location"):
        url = (
            location if location.startswith("http") else f"{registry.prefix}://{container.registry}{location}"
        )
        registry.do_request(url, "DELETE")  # cancel: the registry would expire it anyway


def _refused(uri: str, what: str, response: Any) -> StorageError:
    try:
        errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in response.json().get("errors", []))
    except ValueError:
        errors = ""
    return StorageError(
        f"{uri}: the registry refused {what}: HTTP {response.status_code} {errors or response.reason}"
    )


def push(folder: Path, names: list[str], uri: str, role: StorageRole, artifact_type: str) -> tuple[str, str]:
    """Push `names` (relative to `folder`) as one artifact; returns (oci://registry/repository@digest, digest)."""
    import oras.provider

    ref = Reference.parse(uri)
    registry, container = _connect(ref, uri, role)
    layers = []
    try:
        for name in names:
            path = folder / name
            size = path.stat().st_size
            layer = {"mediaType": media_type(name), "size": size,
                     "digest": f"sha256:{remote.sha256_of(path)}", "annotations": {TITLE: name}}  # fmt: skip
            big = size > CHUNKED_ABOVE
            response = registry.upload_blob(
                str(path), container, layer, do_chunked=big, chunk_size=CHUNK_SIZE
            )
            if response.status_code not in (200, 201, 202):
                raise _refused(uri, f"the upload of {name}", response)
            layers.append(layer)
        with oras.provider.temporary_empty_config() as empty:
            response = registry.upload_blob(empty, container, dict(EMPTY_CONFIG))
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": artifact_type,
                    "config": EMPTY_CONFIG, "layers": layers}  # fmt: skip
        response = registry.upload_manifest(manifest, container)
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"{uri}: push failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code not in (200, 201, 202):
        raise _refused(uri, "the manifest", response)
    digest = response.headers.get("Docker-Content-Digest") or _sent_digest(manifest)
    return f"oci://{ref.registry}/{ref.repository}@{digest}", digest


def _sent_digest(manifest: dict[str, Any]) -> str:
    """The digest of the manifest as requests serialises it (json.dumps defaults), when the registry says none."""
    return "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest()


def pull(uri: str, cache: Path, role: StorageRole) -> tuple[Path, str]:
    """Pull the artifact into cache/<digest>/ (reused when complete); returns (that folder, manifest digest)."""
    ref = Reference.parse(uri)
    registry, container = _connect(ref, uri, role)
    try:
        response = registry.do_request(
            f"{registry.prefix}://{container.manifest_url()}", "GET", headers={"Accept": MANIFEST_MEDIA_TYPE}
        )
    except Exception as exc:
        raise StorageError(f"{uri}: cannot read the manifest: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise _refused(uri, "the manifest (no such repository or tag?)", response)
    digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
    if ref.digest is not None and digest != ref.digest:
        raise StorageError(f"{uri}: the registry sent a manifest whose digest is {digest}")
    dest = cache / digest.removeprefix("sha256:")[:32]
    for layer in response.json().get("layers", []):
        _pull_layer(registry, container, layer, dest, uri)
    return dest, digest


def _pull_layer(registry: Any, container: Any, layer: dict[str, Any], dest: Path, uri: str) -> None:
    name = (layer.get("annotations") or {}).get(TITLE)
    if not name:
        raise StorageError(f"{uri}: layer {layer['digest']} has no {TITLE} annotation; push files with oras")
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise StorageError(f"{uri}: layer title {name!r} points outside the artifact's folder")
    expected = layer["digest"].removeprefix("sha256:")
    if target.is_file() and target.stat().st_size == layer["size"] and remote.sha256_of(target) == expected:
        return
    try:
        registry.download_blob(container, layer["digest"], str(target))
    except Exception as exc:
        raise StorageError(f"{uri}: cannot download {name}: {type(exc).__name__}: {exc}") from exc
    if target.stat().st_size != layer["size"] or remote.sha256_of(target) != expected:
        raise StorageError(f"{uri}: {name} does not match its layer's size and sha256 (corrupt download)")
