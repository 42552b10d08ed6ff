"""Shared fixtures: an isolated environment, real S3 (moto) and MLflow servers, git repos.

Servers listen on 127.0.0.1 only, run in their own process group and are killed as a group at
teardown, so nothing outlives the session. Every HOME, cache and store they write is a temp dir.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gitrepos import clone, git, publish

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

MLFLOW_ARTIFACT_BUCKET = "mlflow-artifacts"
TEST_NAME = "Test User"
TEST_EMAIL = "test@example.com"

# Anything that would point a test at the developer's (or CI's) servers, credentials,
# repositories or config. Whole prefixes, so new variables such as MLFLOW_RUN_ID,
# AWS_DEFAULT_PROFILE or GIT_DIR (set when tests run from a git hook) are covered too.
_SCRUB_PREFIXES = ("MLFLOW_", "AWS_", "DVC_", "GIT_", "GITHUB_")
_SCRUB_NAMES = ("CI", "ACCESS_TOKEN", "RUN_TAG", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")


def _isolated(environ: dict[str, str], base: Path) -> dict[str, str]:
    """Return a copy of `environ` scrubbed of the developer's setup, with all state under `base`."""
    env = {k: v for k, v in environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES}
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
            "GIT_AUTHOR_NAME": TEST_NAME,
            "GIT_AUTHOR_EMAIL": TEST_EMAIL,
            "GIT_COMMITTER_NAME": TEST_NAME,
            "GIT_COMMITTER_EMAIL": TEST_EMAIL,
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
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start `cmd` in a new session (its own process group), output to `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _group_alive(pgid: int) -> bool:
    """True while a process in group `pgid` is running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc/self/stat").exists():
        return True
    # Killed children are re-parented to init, which may take a while to reap them.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the whole process group of `proc`, then kill what is left."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        # Workers may outlive the leader, so wait for the group, not just the leader.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.05)
    proc.wait(timeout=timeout)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _wait_http(url: str, expect: str | None, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    """Wait until GET `url` answers 200 (with body `expect`, if given); fail with the log tail."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"{proc.args[0]} exited with code {proc.returncode} before {url} was ready; log {log}:\n{_tail(log)}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 -- loopback http URL we built
                body = resp.read().decode(errors="replace").strip()
                if expect is None or body == expect:
                    return
                last = f"HTTP {resp.status}: {body[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    pytest.fail(
        f"{url} not ready after {timeout:.0f}s (last: {last}); log {log}:\n{_tail(log)}",
        pytrace=False,
    )


def _reset_mlflow() -> None:
    """Forget the tracking URI, experiment and run a test left in mlflow's module state."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    mlflow.end_run()
    mlflow.set_tracking_uri(None)
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None and hasattr(fluent, "_active_experiment_id"):
        fluent._active_experiment_id = None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run each test with a temp HOME, temp DVC config/cache and none of the developer's setup.

    Returns the temp HOME.
    """
    env = _isolated(dict(os.environ), tmp_path_factory.mktemp("env"))
    for name in set(os.environ) - set(env):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    snapshot = dict(os.environ)
    yield Path(env["HOME"])
    _reset_mlflow()
    # Variables the code under test set itself are not known to monkeypatch; drop them too.
    os.environ.clear()
    os.environ.update(snapshot)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
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


@dataclass(frozen=True)
class S3:
    """Per-test view of the S3 server: a fresh DVC bucket and the shared MLflow bucket."""

    server: S3Server
    dvc_bucket: str
    mlflow_bucket: str

    @property
    def dvc_url(self) -> str:
        return f"s3://{self.dvc_bucket}"


@dataclass(frozen=True)
class MlflowServer:
    url: str
    artifact_root: str

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on loopback, with the MLflow artifact bucket already created."""
    base = tmp_path_factory.mktemp("moto")
    port = free_port()
    log = base / "moto.log"
    proc = _start(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        _isolated(dict(os.environ), base),
        log,
        cwd=base,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/moto-api/", None, 30, proc, log)
        server = S3Server(f"http://127.0.0.1:{port}", "testing", "testing")
        server.client().create_bucket(Bucket=MLFLOW_ARTIFACT_BUCKET)
        yield server
    finally:
        _stop(proc)


@pytest.fixture
def s3(s3_server: S3Server) -> S3:
    """A fresh DVC bucket per test; MLflow shares one bucket (filter its keys by run id)."""
    bucket = f"dvc-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    return S3(server=s3_server, dvc_bucket=bucket, mlflow_bucket=MLFLOW_ARTIFACT_BUCKET)


@pytest.fixture(scope="session")
def mlflow_server(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow tracking server (sqlite backend) whose clients write artifacts straight to S3."""
    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = base / "mlflow.log"
    artifact_root = f"s3://{MLFLOW_ARTIFACT_BUCKET}/"
    env = _isolated(dict(os.environ), base)
    env.update(s3_server.env())
    # Job execution would start a huey consumer and more processes we do not need.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = _start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{base / 'mlflow.db'}",
            "--default-artifact-root",
            artifact_root,
            "--no-serve-artifacts",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        log,
        cwd=base,  # the server must not drop mlflow.db or mlruns/ anywhere else
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/health", "OK", 60, proc, log)
        yield MlflowServer(url=url, artifact_root=artifact_root)
    finally:
        _stop(proc)


@pytest.fixture
def origin(tmp_path: Path, isolated_env: Path) -> Path:
    """An empty bare git repository to push to."""
    path = tmp_path / "origin.git"
    git("init", "--bare", "-b", "main", str(path), cwd=tmp_path)
    return path


def _project_files(root: Path) -> list[str]:
    """Files git would track in `root` (tracked or not ignored), minus any virtualenv."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    # A venv inside the project is only excluded by .gitignore; never copy one.
    venvs = {p.parent.name for p in root.glob("*/pyvenv.cfg")}
    return sorted(name for name in dict.fromkeys(out.split("\0")) if name and name.split("/", 1)[0] not in venvs)


@pytest.fixture
def project(tmp_path: Path, isolated_env: Path) -> Path:
    """A copy of this project as git sees it, as a fresh repo with one commit on main."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in _project_files(ROOT):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree but still in the index
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    git("init", "-b", "main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "--no-verify", "-m", "Initial commit", cwd=dest)
    return dest


@pytest.fixture
def dev(project: Path, origin: Path, tmp_path: Path) -> Path:
    """A developer's clone of `origin`, which holds the project's main."""
    publish(project, origin)
    return clone(origin, tmp_path / "dev")
