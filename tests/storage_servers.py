"""The S3 object store and the OCI registry the storage tests talk to: real servers, on loopback, free ports.

Used by the fixtures in `tests/trainer/conftest.py`. The binaries are built from Go modules by
`hack/tools/build.sh --storage` (versions in `hack/versions.env`, cached like the other pinned tools): versitygw, an
S3 gateway over a folder (SigV4, multipart, S3's error codes), and the CNCF distribution registry with htpasswd
auth. Each server gets a folder of its own and is stopped when its context ends, so `make test` needs no setup.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "hack" / "tools" / "build.sh"
START_TIMEOUT_S = 120.0
"""Generous: on a busy 2-core machine a Go binary's first start can take seconds."""


def build() -> Path:
    """The folder holding `versitygw` and `registry` (built on first use: minutes; cached afterwards)."""
    done = subprocess.run([str(BUILD), "--storage"], check=True, stdout=subprocess.PIPE, text=True)
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(command: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run `command` until the context ends; ready once `url` answers HTTP (any status)."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{command[0]} exited with {process.returncode}: {log.read_text()[-2000:]}"
                )
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{command[0]} did not answer {url} in {START_TIMEOUT_S:g} s"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class ObjectStore:
    """A running S3 gateway and its root credentials."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self, prefix: str = "", secret_key: str | None = None) -> dict[str, str]:
        """The AWS_* variables a client of this store needs (optionally prefixed, or with another secret)."""
        values = {
            "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region,
        }  # fmt: skip
        return {prefix + name: value for name, value in values.items()}

    def client(self) -> Any:
        import minio

        host = self.endpoint.removeprefix("http://")
        return minio.Minio(host, self.access_key, self.secret_key, secure=False, region=self.region)


@dataclass(frozen=True)
class Registry:
    """A running OCI registry (host:port) and the one user its htpasswd file knows."""

    host: str
    user: str
    password: str

    def config_json(self, password: str | None = None) -> str:
        """A docker config.json for this registry (the `.dockerconfigjson` of a kubernetes.io/dockerconfigjson
        Secret)."""
        auth = base64.b64encode(f"{self.user}:{password or self.password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": auth}}})

    def client(self) -> Any:
        """oras, as a user would pull with it."""
        import oras.provider

        found = oras.provider.Registry(self.host, insecure=True, auth_backend="basic")
        found.auth.set_basic_auth(self.user, self.password)
        return found

    def docker_config(self, folder: Path, password: str | None = None) -> Path:
        """Write a DOCKER_CONFIG folder holding `config_json`; returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(self.config_json(password))
        return folder


@contextmanager
def object_store(
    binaries: Path, root: Path, read_only: bool = False, host: str = "127.0.0.1"
) -> Iterator[ObjectStore]:
    """versitygw serving the folder `root/data` (each subfolder a bucket) on `host`; `read_only` refuses every
    write."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    port = free_port()
    store = ObjectStore(f"http://{host}:{port}", "finetune-test-access", "finetune-test-secret-0123456789")
    env = {"ROOT_ACCESS_KEY": store.access_key, "ROOT_SECRET_KEY": store.secret_key}
    flags = ["--readonly"] if read_only else []
    command = [
        str(binaries / "versitygw"),
        "--port",
        f"{host}:{port}",
        *flags,
        "posix",
        str(root / "data"),
    ]
    with running(command, store.endpoint, root / "versitygw.log", env):
        yield store


@contextmanager
def registry(
    binaries: Path, root: Path, read_only: bool = False, host: str = "127.0.0.1"
) -> Iterator[Registry]:
    """The distribution registry with htpasswd auth on `host`, storing under `root`; `read_only` refuses every
    push."""
    import bcrypt

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    found = Registry(f"{host}:{port}", "finetune", "registry-test-password-0123")
    hashed = bcrypt.hashpw(found.password.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"{found.user}:{hashed}\n")
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "maintenance": {"readonly": {"enabled": read_only}, "uploadpurging": {"enabled": False}}},
        "http": {"addr": found.host},
        "auth": {"htpasswd": {"realm": "finetune-test", "path": str(root / "htpasswd")}},
    }  # fmt: skip
    (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    command = [str(binaries / "registry"), "serve", str(root / "config.yml")]
    with running(
        command, f"http://{found.host}/v2/", root / "registry.log", {"OTEL_TRACES_EXPORTER": "none"}
    ):
        yield found
