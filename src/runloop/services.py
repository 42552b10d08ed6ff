"""Throwaway services on loopback for rehearsals and tests: moto's S3 server, an MLflow server, a bare git origin.

One implementation of "start it on a free port, wait until it answers, stop it as a group", used by the test
fixtures (tests/conftest.py) and by `nox -s workflow`. Every server listens on 127.0.0.1 only, runs in a process
group of its own and is killed as a group; the group's leader (processes.start) also stops it when its user dies,
even by SIGKILL, so nothing outlives its user. Everything a server or a tool would
write (HOME, caches, stores) goes under a directory the caller gives.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from src.runloop import ci, processes
from src.runloop.git import Git

BIN = Path(sys.executable).parent
MLFLOW_ARTIFACT_BUCKET = "mlflow-artifacts"
NAME, EMAIL = "Test User", "test@example.com"
# Anything that would point a tool at the developer's (or CI's) servers, credentials, repositories or config.
# Whole prefixes, so new variables such as MLFLOW_RUN_ID, AWS_DEFAULT_PROFILE or GIT_DIR are covered too.
SCRUB_PREFIXES = ("MLFLOW_", "AWS_", "DVC_", "GIT_", ci.PREFIX, "RUNNER_", "RUNLOOP_")
SCRUB_NAMES = (
    "CI",
    "ACCESS_TOKEN",
    "ACCESS_TOKEN_SET",
    "GH_TOKEN",  # the GitHub CLI's and `invoke watch`'s token: a throwaway run asks no real GitHub
    "RUN_TAG",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
)


class ServiceError(RuntimeError):
    """A service did not start; the message holds the tail of its log."""


def isolated(environ: Mapping[str, str], base: Path) -> dict[str, str]:
    """A copy of `environ` scrubbed of the developer's setup, with every HOME, cache and config under `base`."""
    env = {k: v for k, v in environ.items() if not k.startswith(SCRUB_PREFIXES) and k not in SCRUB_NAMES}
    dirs = {
        "HOME": base / "home",
        "DVC_SITE_CACHE_DIR": base / "dvc" / "site-cache",
        "DVC_GLOBAL_CONFIG_DIR": base / "dvc" / "global",
        "DVC_SYSTEM_CONFIG_DIR": base / "dvc" / "system",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env.update({k: str(v) for k, v in dirs.items()})
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": NAME,
            "GIT_AUTHOR_EMAIL": EMAIL,
            "GIT_COMMITTER_NAME": NAME,
            "GIT_COMMITTER_EMAIL": EMAIL,
            "GIT_PAGER": "cat",
            # Deliberately missing files: boto3 must not find a profile or credentials.
            "AWS_CONFIG_FILE": str(base / "aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(base / "aws" / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            # A developer's HTTP(S)_PROXY must not swallow requests to the loopback servers.
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def wait_http(url: str, expect: str | None, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    """Wait until GET `url` answers 200 (with body `expect`, if given); raise ServiceError with the log tail."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(
                f"{processes.command(proc)[0]} exited with code {proc.returncode} before {url} was ready; "
                f"log {log}:\n{tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 -- a loopback http URL built here
                body = resp.read().decode(errors="replace").strip()
                if expect is None or body == expect:
                    return
                last = f"HTTP {resp.status}: {body[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ServiceError(f"{url} not ready after {timeout:.0f}s (last: {last}); log {log}:\n{tail(log)}")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str = "testing"  # moto takes any credentials
    secret_key: str = "testing"  # noqa: S105 - not a secret: moto accepts anything
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """Environment that points boto3, DVC and the MLflow client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def ensure_bucket(self, bucket: str) -> None:
        client = self.client()
        if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
            client.create_bucket(Bucket=bucket)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    artifact_root: str

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url)


@contextmanager
def s3_server(base: Path, environ: Mapping[str, str]) -> Iterator[S3Server]:
    """moto's S3 server on loopback, with the MLflow artifact bucket already created."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = base / "moto.log"
    proc = processes.start(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], isolated(environ, base), log, base
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", None, 30, proc, log)
        server = S3Server(f"http://127.0.0.1:{port}")
        server.ensure_bucket(MLFLOW_ARTIFACT_BUCKET)
        yield server
    finally:
        processes.stop(proc)


@contextmanager
def mlflow_server(base: Path, environ: Mapping[str, str], s3: S3Server) -> Iterator[MlflowServer]:
    """An MLflow tracking server (sqlite backend) whose clients write artifacts straight to `s3`."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = base / "mlflow.log"
    artifact_root = f"s3://{MLFLOW_ARTIFACT_BUCKET}/"
    env = isolated(environ, base)
    env.update(s3.env())
    # Job execution would start a huey consumer and more processes nothing here needs.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
        "--default-artifact-root", artifact_root, "--no-serve-artifacts",
        "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    proc = processes.start(cmd, env, log, cwd=base)  # cwd: the server must not drop mlflow.db or mlruns/ anywhere else
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", "OK", 90, proc, log)
        yield MlflowServer(url=url, artifact_root=artifact_root)
    finally:
        processes.stop(proc)


def bare_origin(path: Path, source: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """A bare repository at `path`: empty (default branch main), or a mirror of `source`'s branches and tags."""
    cmd = ["clone", "--quiet", "--bare", "--no-local", str(source), str(path)] if source else None
    Git(path.parent, env).must(
        f"Making the bare repository {path}", *(cmd or ["init", "--quiet", "--bare", "-b", "main", str(path)])
    )
    return path
