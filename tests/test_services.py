"""The shared fixtures start real services and isolate each test from the developer's setup; a server's group goes
with its user, however the user ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from faults_fixtures import group_running, until
from gitrepos import ROOT, git

from src.runloop import processes, services

LEAKY = (
    "MLFLOW_URL", "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_EXPERIMENT_NAME",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "DVC_REMOTE_URL", "DVC_REMOTE_ENDPOINT_URL",
    "GITHUB_ACTIONS", "GITHUB_REF", "GITHUB_REF_NAME", "GITHUB_SHA", "GITHUB_RUN_ID",
    "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_STEP_SUMMARY", "GITHUB_ACTOR", "CI",
    "ACCESS_TOKEN",
)  # fmt: skip


def test_isolated_env_hides_developer_setup(isolated_env, tmp_path_factory, tmp_path):
    assert isolated_env.is_relative_to(tmp_path_factory.getbasetemp())
    assert os.environ["HOME"] == str(isolated_env)
    assert [name for name in LEAKY if name in os.environ] == []
    assert not Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).exists()
    # No system, global or XDG git config is visible outside a repository.
    assert git("config", "--list", "--show-origin", cwd=tmp_path) == ""


@pytest.mark.slow
def test_s3_put_and_list(s3):
    client = s3.server.client()
    client.put_object(Bucket=s3.dvc_bucket, Key="files/md5/ab/cdef", Body=b"data")
    client.put_object(Bucket=s3.dvc_bucket, Key="other", Body=b"x")

    assert s3.server.keys(s3.dvc_bucket) == ["files/md5/ab/cdef", "other"]
    assert s3.server.keys(s3.dvc_bucket, "files/") == ["files/md5/ab/cdef"]
    body = client.get_object(Bucket=s3.dvc_bucket, Key="files/md5/ab/cdef")["Body"].read()
    assert body == b"data"


@pytest.mark.slow
@pytest.mark.parametrize("turn", [1, 2])
def test_s3_bucket_is_fresh_per_test(s3, turn):
    # Whichever runs second would see the first one's object if buckets were shared.
    assert s3.server.keys(s3.dvc_bucket) == []
    s3.server.client().put_object(Bucket=s3.dvc_bucket, Key=f"turn-{turn}", Body=b"")
    assert s3.server.keys(s3.dvc_bucket) == [f"turn-{turn}"]


@pytest.mark.slow
def test_mlflow_run_logs_metric_and_artifact(mlflow_server, s3_server, monkeypatch, tmp_path):
    import mlflow

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    note = tmp_path / "note.txt"
    note.write_text("hello\n")

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("fixtures")
    with mlflow.start_run() as run:
        mlflow.log_metric("val_acc", 0.965)
        mlflow.log_artifact(str(note))

    fetched = mlflow_server.client().get_run(run.info.run_id)
    assert fetched.data.metrics == {"val_acc": 0.965}
    assert fetched.info.status == "FINISHED"

    uri = urlparse(fetched.info.artifact_uri)
    assert (uri.scheme, uri.netloc) == ("s3", "mlflow-artifacts")
    assert run.info.run_id in uri.path
    prefix = uri.path.lstrip("/")
    assert s3_server.keys("mlflow-artifacts", prefix) == [f"{prefix}/note.txt"]
    obj = s3_server.client().get_object(Bucket="mlflow-artifacts", Key=f"{prefix}/note.txt")
    assert obj["Body"].read() == b"hello\n"
    # The explicit tracking URI kept mlflow from creating a local store in the cwd.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt"]


def test_origin_is_empty_bare_repo(origin):
    assert git("rev-parse", "--is-bare-repository", cwd=origin) == "true"
    assert git("symbolic-ref", "HEAD", cwd=origin) == "refs/heads/main"
    assert git("for-each-ref", cwd=origin) == ""


def test_project_is_fresh_repo_that_pushes(project, origin):
    root = Path(__file__).resolve().parents[1]
    files = git("ls-files", cwd=project).splitlines()
    assert "tests/conftest.py" in files
    # The tests' own pipeline replaces the example, which a template user deletes.
    assert "src/mini/train.py" in files and "src/runloop/tracking.py" in files
    assert not [f for f in files if f.startswith(("src/example/", "tests/example/"))]
    assert (project / "dvc.yaml").read_bytes() == (root / "tests/pipeline/dvc.yaml").read_bytes()
    assert (root / "Pipfile").exists() == ("Pipfile" in files)
    assert not any(f.startswith(".venv/") for f in files)
    assert (project / "tests/conftest.py").read_bytes() == (root / "tests/conftest.py").read_bytes()

    assert git("status", "--porcelain", cwd=project) == ""
    assert git("log", "--format=%P|%an <%ae>|%s", cwd=project) == "|Test User <test@example.com>|Initial commit"

    git("remote", "add", "origin", str(origin), cwd=project)
    git("push", "-q", "origin", "main", cwd=project)
    assert git("rev-parse", "main", cwd=origin) == git("rev-parse", "HEAD", cwd=project)


def test_wait_http_fails_with_log_tail_when_server_dies(tmp_path):
    log = tmp_path / "server.log"
    proc = processes.start(["sh", "-c", "echo 'bind: address in use'; exit 3"], os.environ, log)
    try:
        with pytest.raises(services.ServiceError, match=r"(?s)exited with code 3.*address in use"):
            services.wait_http("http://127.0.0.1:9/", None, 10, proc, log)
    finally:
        processes.stop(proc)


def test_stop_kills_whole_group_even_if_sigterm_is_ignored(tmp_path):
    # Ignored signals stay ignored across fork and exec, so the children ignore SIGTERM too.
    script = "trap '' TERM; sleep 300 & sleep 300 & echo started; wait"
    proc = processes.start(["sh", "-c", script], os.environ, tmp_path / "log")
    deadline = time.monotonic() + 10
    while "started" not in (tmp_path / "log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    processes.stop(proc, timeout=1)
    assert proc.returncode == -signal.SIGKILL
    ps = subprocess.run(["ps", "-eo", "pgid=,stat="], check=True, capture_output=True, text=True)
    live = [line for line in ps.stdout.splitlines() if line.split()[0] == str(proc.pid)]
    assert [line for line in live if not line.split()[1].startswith("Z")] == []


def test_bare_origin_mirrors_branches_and_tags(project, tmp_path):
    git("tag", "-m", "a run", "run-x", cwd=project)
    git("branch", "side", cwd=project)

    mirror = services.bare_origin(tmp_path / "mirror.git", source=project)

    assert git("rev-parse", "--is-bare-repository", cwd=mirror) == "true"
    assert git("for-each-ref", "--format=%(refname) %(objectname)", cwd=mirror).splitlines() == [
        f"refs/heads/main {git('rev-parse', 'main', cwd=project)}",
        f"refs/heads/side {git('rev-parse', 'side', cwd=project)}",
        f"refs/tags/run-x {git('rev-parse', 'run-x', cwd=project)}",
    ]


def test_a_server_group_goes_with_its_user_even_when_the_user_is_killed(tmp_path):
    log = tmp_path / "log"
    # A user of processes.start that dies by SIGKILL: nothing of its own can stop the group.
    script = (
        "import os, sys, time; from pathlib import Path; from src.runloop import processes; "
        "cmd = ['sh', '-c', 'sleep 300 & sleep 300 & echo started; wait']; "
        "print(processes.start(cmd, os.environ, Path(sys.argv[1]), Path(sys.argv[2])).pid, flush=True); time.sleep(300)"
    )
    user = subprocess.Popen(
        [sys.executable, "-c", script, str(log), str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    group = int(user.stdout.readline())
    try:
        until(lambda: "started" in log.read_text(), 30, lambda: f"the group never started: {log.read_text()}")
        assert len(group_running(group)) == 4  # the leader, sh and its two sleeps

        user.kill()
        user.wait()

        until(lambda: not group_running(group), 30, lambda: f"group {group} outlived its user")
    finally:
        user.stdout.close()
        processes.signal_group(group, signal.SIGKILL)
