"""Shared fixtures: an isolated environment, real S3 (moto) and MLflow servers, git repos; and the session's rules.

The servers come from src/runloop/services.py (the same starters `nox -s workflow` uses): they listen on
127.0.0.1 only, run in their own process group and are killed as a group at teardown, so nothing outlives the
session; their group's leader stops them if the session dies without a teardown (SIGKILL). Every HOME, cache and
store they write is a temp dir. Under pytest-xdist each worker has servers of its own (session fixtures are per
worker); the pipeline's DVC cache and the venvs of `nox -s reproduce` are made once for all of them.

The session's rules: a test that starts a server, act or a pipeline run is `slow` (end to end), marked or not, and
`nox -s fast` leaves it out; a test that runs the pipeline without the mark fails. Ctrl-C or SIGTERM, once or more,
stops the session and every server it started (docs/testing.md).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from gitrepos import ROOT, clone, copy_project, publish
from loop_fixtures import ACTOR, RUN_ID, SECRETS, Remote, make_pipeline_cache, prefix_of

from src.runloop import processes, runner_cache, services
from src.runloop.act import Act
from src.runloop.project import WORKFLOW
from src.runloop.services import MLFLOW_ARTIFACT_BUCKET, MlflowServer, S3Server

# What a test asks for that starts a server, act or a whole pipeline run: such a test is end to end.
END_TO_END = {"s3_server", "mlflow_server", "act", "pipeline_cache", "venv_cache"}


def pytest_configure(config: pytest.Config) -> None:
    # Ctrl-C and SIGTERM (a cancelled CI job, `kill`) both unwind the session, and its teardown stops every server;
    # SIGTERM's default would end pytest on the spot, leaving them running.
    processes.interrupt_on_signals()


def pytest_keyboard_interrupt() -> None:
    processes.ignore_signals()  # the teardown that follows stops the servers: a second Ctrl-C must not cut it short
    # What a terminal's Ctrl-C reaches: xdist's workers (a `kill -INT` reaches this process alone) and what the
    # running test started.
    processes.signal_descendants(signal.SIGINT)


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if END_TO_END & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if hasattr(config, "workerinput"):  # an xdist worker: every worker sorts the same way, as xdist requires
        # The longest first (workflows under act, then the other end-to-end tests), so that no worker is left
        # running a long test alone at the end; xdist hands them out in this order (noxfile.py: --dist load).
        items.sort(key=lambda item: 0 if "act" in getattr(item, "fixturenames", ()) else 1 if _slow(item) else 2)


def _slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


@pytest.fixture(autouse=True)
def end_to_end_is_slow(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Fail a test that ran the pipeline (DVC's run cache appeared in its temp dir) but is not marked slow."""
    yield
    if not _slow(request.node) and (ran := next(tmp_path.glob("**/.dvc/cache/runs"), None)):
        pytest.fail(
            f"this test ran the pipeline ({ran.relative_to(tmp_path)}) — mark it @pytest.mark.slow: "
            "`nox -s fast` leaves end-to-end tests to the full suite",
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
    env = services.isolated(os.environ, tmp_path_factory.mktemp("env"))
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
class S3:
    """Per-test view of the S3 server: a fresh DVC bucket and the shared MLflow bucket."""

    server: S3Server
    dvc_bucket: str
    mlflow_bucket: str

    @property
    def dvc_url(self) -> str:
        return f"s3://{self.dvc_bucket}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on loopback, with the MLflow artifact bucket already created."""
    try:
        with services.s3_server(tmp_path_factory.mktemp("moto"), os.environ) as server:
            yield server
    except services.ServiceError as exc:  # its log's tail, not a traceback into the starter
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def s3(s3_server: S3Server) -> S3:
    """A fresh DVC bucket per test; MLflow shares one bucket (filter its keys by run id)."""
    bucket = f"dvc-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    return S3(server=s3_server, dvc_bucket=bucket, mlflow_bucket=MLFLOW_ARTIFACT_BUCKET)


@pytest.fixture(scope="session")
def mlflow_server(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow tracking server (sqlite backend) whose clients write artifacts straight to S3."""
    try:
        with services.mlflow_server(tmp_path_factory.mktemp("mlflow"), os.environ, s3_server) as server:
            yield server
    except services.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


# What a pipeline run may write; none of it may appear or change in this checkout when a test runs in a copy.
LOCAL_STATE = ("mlflow.db", "mlruns", "mlartifacts", "data", "models", "metrics", "plots", "runs", "dvc.lock")


def _local_state() -> dict[str, tuple[int, int]]:
    files = {}
    for name in LOCAL_STATE:
        path = ROOT / name
        for f in [path, *path.rglob("*")] if path.is_dir() else [path] if path.exists() else []:
            stat = f.stat()
            files[str(f.relative_to(ROOT))] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.fixture
def untouched_checkout() -> Iterator[None]:
    """Fail the test if it wrote pipeline state into this checkout instead of its project copy."""
    before = _local_state()
    yield
    assert _local_state() == before


@pytest.fixture
def origin(tmp_path: Path, isolated_env: Path) -> Path:
    """An empty bare git repository to push to."""
    return services.bare_origin(tmp_path / "origin.git")


@pytest.fixture
def project(tmp_path: Path, isolated_env: Path) -> Path:
    """A copy of this project with the tests' own pipeline, as a fresh repo with one commit on main."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def dev(project: Path, origin: Path, tmp_path: Path) -> Path:
    """A developer's clone of `origin`, which holds the project's main."""
    publish(project, origin)
    return clone(origin, tmp_path / "dev")


@pytest.fixture(scope="session")
def pipeline_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DVC cache (outputs and run cache) of one pipeline run of the project, without any remote.

    Made once for all xdist workers; the tests only copy it.
    """
    base = _shared_dir(request, tmp_path_factory, "pipeline")
    with _exclusive(base / ".lock"):
        if not (base / "made").exists():
            shutil.rmtree(base / "project", ignore_errors=True)  # a run that failed half-way
            make_pipeline_cache(base)
            (base / "made").touch()
    return base / "project" / ".dvc" / "cache"


@pytest.fixture
def remote(s3: S3) -> Remote:
    """The committed remote's bucket, emptied: the act runs get no DVC setting a real runner would not have."""
    bucket, prefix = prefix_of(ROOT / ".dvc" / "config")
    client = s3.server.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    for key in s3.server.keys(bucket):
        client.delete_object(Bucket=bucket, Key=key)
    return Remote(bucket, prefix)


@pytest.fixture
def act(tmp_path: Path, s3: S3, remote: Remote, mlflow_server: MlflowServer, venv_cache: Path) -> Act:
    """act set up as a runner of the repository: the workflow's secrets and variables naming the test's services."""
    # Only what the workflow's environment block and GitHub give a runner: no DVC_REMOTE_URL, no AWS region. The
    # runner's cache is act's tool cache under the test's act HOME (DVC's cache, thrown away with the test), but
    # the venv of the lock is built once per session.
    return Act(
        tmp_path,
        WORKFLOW,
        SECRETS,
        {"MLFLOW_URL": mlflow_server.url, "MLFLOW_S3_ENDPOINT_URL": s3.server.endpoint_url},
        {
            "GITHUB_REPOSITORY": "example-org/mlproj",
            "GITHUB_RUN_ID": RUN_ID,
            "GITHUB_SERVER_URL": "https://github.example",
            runner_cache.VENVS_ENV: str(runner_cache.venvs({"XDG_CACHE_HOME": str(venv_cache)})),
        },
        actor=ACTOR,
    )


@pytest.fixture(scope="session")
def venv_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG_CACHE_HOME for the whole session: the venv of the lock is installed once and reused (by
    `nox -s reproduce` there, and by the workflow's environment step under act, through RUNLOOP_VENVS).

    Shared by the xdist workers: lock_venv holds a lock per lock hash while it builds a venv.
    """
    return _shared_dir(request, tmp_path_factory, "xdg-cache")


def _shared_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory of this session that every xdist worker sees (the workers' temp roots are its siblings)."""
    if not hasattr(request.config, "workerinput"):  # no xdist, or its controller
        return tmp_path_factory.mktemp(name, numbered=False)
    path = tmp_path_factory.getbasetemp().parent / name
    path.mkdir(exist_ok=True)
    return path


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (made if missing): one worker at a time."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
