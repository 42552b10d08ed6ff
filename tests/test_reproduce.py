"""`nox -s reproduce`: a past run recomputed in a worktree and a venv of its own lock, and the verdict.

The end-to-end tests make their runs for real (the act workflow, or `invoke repro` + `invoke share` against the
bare origin and moto S3), reproduce them from a fresh clone, and read the verdict, the exit status and what was
left behind. The venv of the lock is installed once per test session (`venv_cache`) and reused after that.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import gitrepos
import pytest
import yaml
from gitrepos import clone, dvc_key, git, invoke, lock_outs, show, tag_run
from loop_fixtures import ran
from reproduce_fixtures import (
    first_output,
    metrics_stage,
    ok,
    push_dev,
    reproduce,
    runner_run,
    s3_env,
    stages,
)

import tasks
from src.runloop import lock, machine, reproduction
from src.runloop import record as records

# -- the verdict, from hashes and DVC's metrics diff ---------------------------------------------------------------

LOCK = """
schema: '2.0'
stages:
  train:
    cmd: python -m train
    outs:
    - path: models/model.pkl
      md5: {model}
    - path: runs/train.json
      md5: {record}
    - path: metrics/train.json
      md5: 0d8f
"""


def test_lock_hashes_leave_out_the_mlflow_records():
    assert lock.Lock(LOCK.format(model="aa", record="r1")).hashes() == {
        "models/model.pkl": "aa",
        "metrics/train.json": "0d8f",
    }


def test_same_hashes_are_bit_identical_whatever_the_records_say():
    recorded = lock.Lock(LOCK.format(model="aa", record="r1")).hashes()
    new = lock.Lock(LOCK.format(model="aa", record="r2")).hashes()
    assert reproduction.differing(recorded, new) == []
    assert reproduction.judge([], {}).name == "bit-identical"


def test_bytes_differ_but_metrics_within_tolerance_is_equivalent():
    outputs = reproduction.differing({"models/model.pkl": "aa"}, {"models/model.pkl": "bb"})
    diff = {"metrics/train.json": {"acc": {"old": 0.9649122807017544, "new": 0.9649122807017545}}}

    verdict = reproduction.judge(outputs, diff, rtol=1e-9, atol=0)

    assert (verdict.name, verdict.outputs, verdict.metrics) == ("numerically equivalent", outputs, [])


def test_a_metric_beyond_tolerance_is_different_with_its_row():
    outputs = [("models/model.pkl", "aa", "bb")]
    diff = {"metrics/train.json": {"acc": {"old": 0.96, "new": 0.95}, "n": {"old": 3, "new": 3}}}

    verdict = reproduction.judge(outputs, diff, rtol=1e-3, atol=0)

    assert verdict.name == "different"
    assert verdict.metrics == [("metrics/train.json acc", "0.96", "0.95", "-0.01")]


def test_an_unreadable_recorded_metric_is_different_and_said():
    verdict = reproduction.judge([("m.json", "aa", "bb")], {"m.json": {"acc": {"old": None, "new": 0.9}}})

    assert verdict.name == "different"
    assert verdict.notes == ["m.json: the recorded value of acc could not be read."]


def test_bad_tolerance_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        reproduction.parse(["--rtol", "-1"])
    assert exc.value.code == 2
    assert "--rtol and --atol must be zero or positive" in capsys.readouterr().err


def test_a_run_that_is_not_there_or_has_no_results_cannot_be_reproduced(project):
    tag = f"{tasks.TAG_PREFIX}-main-20260101-000000-waiting"
    git("tag", "--annotate", "-m", "Waiting\n\nBranch: main\n", tag, cwd=project)

    missing = reproduce(project, "run-nope", env=dict(os.environ), nox=True)  # nox hands on the exit status
    waiting = reproduce(project, tag, env=dict(os.environ))
    nothing = reproduce(project, env=dict(os.environ))

    assert (missing.returncode, waiting.returncode, nothing.returncode) == (2, 2, 2)
    assert "Could not reproduce: 'run-nope' is neither a run tag nor a commit here" in missing.stdout
    assert (
        f"Could not reproduce: Run {tag} has no results (waiting for results) — `invoke watch --run {tag}` follows "
        "it; or name another run." in waiting.stdout
    )
    assert "Could not reproduce: No run of branch 'main' has results yet" in nothing.stdout
    assert "Traceback" not in missing.stdout + waiting.stdout + nothing.stdout
    assert "Worktree:" not in missing.stdout + waiting.stdout + nothing.stdout


# -- end to end ------------------------------------------------------------------------------------------------------


def add_input_stage(dev: Path, env: dict[str, str]) -> tuple[str, str]:
    """Give the pipeline an input of its own: a file added with `dvc add`, pushed, read by a new stage."""
    data = dev / "inputs" / "measurements.csv"
    data.parent.mkdir()
    data.write_text("id,value\n" + "".join(f"{i},{i * i % 17}\n" for i in range(200)))
    for args in (
        ["remote", "modify", "--local", "storage", "url", env["DVC_REMOTE_URL"]],
        ["remote", "modify", "--local", "storage", "endpointurl", env["MLFLOW_S3_ENDPOINT_URL"]],
        ["add", "inputs/measurements.csv"],
        ["push", "inputs/measurements.csv.dvc"],
    ):
        ok(_dvc(dev, env, *args))
    pipeline = yaml.safe_load((dev / "dvc.yaml").read_text())
    pipeline["stages"]["summarize_input"] = {
        "cmd": "python -c \"import shutil; shutil.copy('inputs/measurements.csv', 'data/measurements-copy.csv')\"",
        "deps": ["inputs/measurements.csv"],
        "outs": ["data/measurements-copy.csv"],
    }
    (dev / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (dev / ".dvc" / "config.local").unlink()
    push_dev(dev, "Read our own measurements")
    return "inputs/measurements.csv", hashlib.md5(data.read_bytes()).hexdigest()  # noqa: S324 - DVC's hash


def _dvc(cwd: Path, env: dict[str, str], *args: str):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dvc", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_run_reading_a_dvc_added_input_reproduces_and_its_venv_is_reused(dev, origin, s3, venv_cache, tmp_path):
    env = s3_env(s3, venv_cache)
    path, md5 = add_input_stage(dev, env)
    tag = tag_run(dev, "--message", "Our own data")
    runner_run(origin, tmp_path / "runner", tag, env)
    user = clone(origin, tmp_path / "user")

    first = reproduce(user, tag, env=env)

    assert first.returncode == 0, first.stdout
    results = git("rev-parse", "origin/main", cwd=user)
    assert f"Reproducing {tag}: results commit {results[:12]} on main." in first.stdout
    assert re.search(rf"^  {re.escape(path)} +{md5} +{re.escape(path)}\.dvc$", first.stdout, re.MULTILINE)
    assert "Verdict: bit-identical" in first.stdout
    assert "$ dvc repro --force --no-run-cache" in first.stdout
    assert len(re.findall(r"Running stage '", first.stdout)) == len(stages(user))  # every stage, the new one too
    assert "Traceback" not in first.stdout
    # None of DVC's reminders, which contradict the flow: nothing of a reproduction is committed or pushed.
    assert "To track the changes with git" not in first.stdout and "git add dvc.lock" not in first.stdout
    assert "Use `dvc push` to send your updates" not in first.stdout
    (venv,) = [p for p in (venv_cache / "runloop" / "venvs").iterdir() if p.is_dir()]
    marker = venv / reproduction.MARKER
    installed = marker.stat().st_mtime_ns
    # Nothing is left behind: the worktree is gone, git forgot it, the user's checkout is as cloned.
    worktree = Path(re.search(r"^Worktree: (\S+)$", first.stdout, re.MULTILINE).group(1))
    assert not worktree.exists() and not worktree.parent.exists()
    assert git("worktree", "list", "--porcelain", cwd=user).count("worktree ") == 1
    assert git("status", "--porcelain", cwd=user) == ""

    second = reproduce(user, env=env)  # no RUN: the newest run of the branch with results

    assert second.returncode == 0, second.stdout
    assert f"Reusing the environment for lock {venv.name} ({venv})." in second.stdout
    assert "Installing the environment" not in second.stdout
    assert marker.stat().st_mtime_ns == installed
    assert "Verdict: bit-identical" in second.stdout

    chain = ok(invoke(user, "runs", "--run", tag, "--no-fetch", env=env))
    assert re.search(rf"^  {re.escape(path)} +{md5} +{re.escape(path)}\.dvc +yes$", chain, re.MULTILINE), chain

    # The input's data is deleted from the remote: the run can no longer be reproduced, and it says why.
    s3.server.client().delete_object(Bucket=s3.dvc_bucket, Key=dvc_key(md5))

    gone = reproduce(clone(origin, tmp_path / "user-2"), tag, env=env)

    assert gone.returncode == 2, gone.stdout
    assert "Could not reproduce: The run's input data could not be pulled from the DVC remote" in gone.stdout
    assert "push it from a clone that has it (`dvc push`)" in gone.stdout
    assert "Traceback" not in gone.stdout
    chain = ok(invoke(user, "runs", "--run", tag, "--no-fetch", env=env))
    assert re.search(rf"^  {re.escape(path)} +{md5} +{re.escape(path)}\.dvc +NO$", chain, re.MULTILINE), chain


TAMPERED = "deadbeef" * 4
NOISE = (
    "import json, random; p = {path!r}; d = json.load(open(p)); "
    "k = next(k for k, v in d.items() if isinstance(v, float)); d[k] += 0.01 + random.random() / 10; "
    "json.dump(d, open(p, 'w'))"
)


def local_run(project: Path, tag: str, tamper: dict[str, str] | None = None) -> str:
    """Tag HEAD as a run, run the pipeline here and commit its results as share does (`tamper`: path → md5)."""
    annotation = records.annotation(records.Launch("Local run", "main"))
    git("tag", "--annotate", "--cleanup=verbatim", "-m", annotation, tag, cwd=project)
    tagged = git("rev-parse", "HEAD", cwd=project)
    ok(invoke(project, "repro"))
    lock = (project / "dvc.lock").read_text()
    for path, md5 in (tamper or {}).items():
        lock = lock.replace(lock_outs(lock)[path], md5)
    (project / "dvc.lock").write_text(lock)
    message = records.message(records.Outcome(records.RESULTS, tag, tagged, "Local"))
    git("add", "dvc.lock", cwd=project)
    git("commit", "--quiet", "-m", message, "--cleanup=verbatim", cwd=project)
    return git("rev-parse", "HEAD", cwd=project)


def rows(out: str, title: str) -> list[list[str]]:
    """The rows of a table the reproduction printed under `title` (header left out)."""
    block = out.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0]
    return [line.split() for line in block.splitlines()[1:]]


@pytest.mark.slow
def test_a_non_deterministic_stage_and_a_tampered_hash_are_different(project, venv_cache):
    stage, metrics = metrics_stage(project)
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    command = pipeline["stages"][stage]["cmd"]
    pipeline["stages"][stage]["cmd"] = f'{command} && python -c "{NOISE.format(path=metrics)}"'
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    git("commit", "--quiet", "-am", "A stage that adds noise to its metric", cwd=project)
    first = first_output(project)
    tag = f"{tasks.TAG_PREFIX}-main-20260101-000000-noisy"
    results = local_run(project, tag, tamper={first: TAMPERED})
    recorded_lock = lock_outs(show(project, results, "dvc.lock"))
    real_first = hashlib.md5((project / first).read_bytes()).hexdigest()  # noqa: S324 - DVC's hash of a file
    recorded_metrics = json.loads((project / metrics).read_text())

    env = {**os.environ, "XDG_CACHE_HOME": str(venv_cache)}
    out = reproduce(project, tag, "--keep", "--rtol", "0", "--atol", "0.001", env=env)

    assert out.returncode == 1, out.stdout
    assert "Verdict: different — from what" in out.stdout
    kept = Path(re.search(r"^Kept the worktree: (\S+) ", out.stdout, re.MULTILINE).group(1))
    try:
        new_lock = lock_outs((kept / "dvc.lock").read_text())
        new_metrics = json.loads((kept / metrics).read_text())
        key = next(k for k, v in recorded_metrics.items() if isinstance(v, float))
        assert sorted(rows(out.stdout, "Outputs whose bytes differ:")) == sorted(
            [[first, TAMPERED, new_lock[first]], [metrics, recorded_lock[metrics], new_lock[metrics]]]
        )
        assert new_lock[first] == real_first
        delta = new_metrics[key] - recorded_metrics[key]
        assert rows(out.stdout, "Metrics beyond the tolerance:") == [
            [metrics, key, str(recorded_metrics[key]), str(new_metrics[key]), f"{delta:+.6g}"]
        ]
        assert "the run's runner" in out.stdout and "this machine" in out.stdout
        assert "Traceback" not in out.stdout
    finally:
        git("worktree", "remove", "--force", str(kept), cwd=project)


@pytest.mark.slow
def test_a_run_made_by_the_workflow_reproduces_bit_identical_in_a_fresh_clone(
    dev,
    origin,
    act,
    s3,
    remote,
    mlflow_server,
    venv_cache,
    tmp_path,
):
    tag = tag_run(dev, "--message", "Baseline on the runner")
    ran(act.run(clone(origin, tmp_path / "runner", f"refs/tags/{tag}"), tag))
    user = clone(origin, tmp_path / "user")
    results = git("rev-parse", "origin/main", cwd=user)
    # The runner's machine is part of the record: in the results commit, and as tags of the stages' MLflow runs.
    recorded = dict(records.parse_outcome(git("log", "-1", "--format=%B", results, cwd=user)).machine)
    # act ran the workflow here, in the venv of this lock; the runner was sent there with the default class's labels.
    assert recorded.pop("labels") == "self-hosted, igz, cpu"
    assert recorded == machine.describe()
    assert "Compared with: nothing (no earlier run of main has results)." in git(
        "log", "-1", "--format=%B", results, cwd=user
    )
    client = mlflow_server.client()
    experiment = client.get_experiment_by_name(gitrepos.experiment(user))
    stage_runs = client.search_runs([experiment.experiment_id], f"tags.run_tag = '{tag}'")
    assert stage_runs and all(
        {k.removeprefix("env."): v for k, v in r.data.tags.items() if k.startswith("env.")} == recorded
        for r in stage_runs
    )
    env = {**os.environ, **s3.server.env(), "XDG_CACHE_HOME": str(venv_cache)}  # the remote .dvc/config names

    first = reproduce(user, tag, env=env, nox=True)

    assert first.returncode == 0, first.stdout
    assert "Verdict: bit-identical" in first.stdout
    assert f"Reproducing {tag}: results commit {results[:12]} on main." in first.stdout
    # Logged to a throwaway store: the server has no run of the reproduction.
    assert "in a throwaway store, removed with the worktree" in first.stdout
    assert client.search_runs([experiment.experiment_id], "tags.reproduction_of != ''") == []

    second = reproduce(user, tag, "--keep", env=env, nox=True)

    assert second.returncode == 0, second.stdout
    (venv,) = [p for p in (venv_cache / "runloop" / "venvs").iterdir() if p.is_dir()]
    assert f"Reusing the environment for lock {venv.name} ({venv})." in second.stdout
    assert "Installing the environment" not in second.stdout
    kept = Path(re.search(r"^Kept the worktree: (\S+) ", second.stdout, re.MULTILINE).group(1))
    try:
        # The kept store's runs are the reproduction's, tagged as such (the throwaway one's are not worth tagging).
        from mlflow.tracking import MlflowClient

        kept_store = MlflowClient(f"sqlite:///{kept.parent / 'mlflow.db'}")
        reproduced = kept_store.search_runs(
            [e.experiment_id for e in kept_store.search_experiments()], f"tags.reproduction_of = '{tag}'"
        )
        made = sorted(r["run_id"] for r in lock.run_records(kept))
        assert made and sorted(r.info.run_id for r in reproduced) == made
        # Which run made this model file? And this MLflow run? `invoke runs --find` answers from git.
        outs = lock_outs(show(user, results, "dvc.lock"))
        model = next((p for p in outs if p.startswith("models/")), next(iter(outs)))
        found = ok(invoke(user, "runs", "--find", str(kept / model), env=env))
        stage = next(
            n
            for n, st in yaml.safe_load(show(user, results, "dvc.lock"))["stages"].items()
            if any(o["path"] == model for o in st.get("outs", []))
        )
        assert found.splitlines() == [f"{tag}  results {results[:12]} on main: {model} ({stage})"]
        mlflow_run = stage_runs[0].info.run_id
        found = ok(invoke(user, "runs", "--find", mlflow_run, "--no-fetch", env=env))
        assert found.splitlines() == [f"{tag}  results {results[:12]} on main: MLflow run {mlflow_run}"]
    finally:
        git("worktree", "remove", "--force", str(kept), cwd=user)

    chain = ok(invoke(user, "runs", "--run", tag, "--no-fetch", env=env))

    assert f"  results      {results} on main\n" in chain
    assert "Baseline on the runner" in chain and "CI run       https://github.example/" in chain
    for path, md5 in outs.items():
        assert re.search(rf"^  {re.escape(path)} +{md5} +\S+ +yes$", chain, re.MULTILINE), path
    assert f"  python: {recorded['python']}" in chain and f"  blas: {recorded['blas']}" in chain


@pytest.mark.slow
def test_ctrl_c_removes_the_worktree(project, venv_cache):
    tag = f"{tasks.TAG_PREFIX}-main-20260101-000000-interrupted"
    local_run(project, tag)
    env = {**os.environ, "XDG_CACHE_HOME": str(venv_cache), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "src.runloop.reproduction", tag]
    proc = subprocess.Popen(  # its own process group, as a terminal's Ctrl-C reaches the command and its children
        cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("$ dvc repro"):  # the venv is ready, the stages are starting
            break
    worktree = Path(next(line for line in seen if line.startswith("Worktree: ")).split(" ", 1)[1].strip())
    assert worktree.is_dir()

    os.killpg(proc.pid, signal.SIGINT)

    out = "".join(seen) + proc.stdout.read()
    assert proc.wait(timeout=120) == 130, out
    assert "Interrupted: the worktree is removed; nothing of the run was changed." in out
    assert not worktree.exists() and not worktree.parent.exists()
    assert git("worktree", "list", "--porcelain", cwd=project).count("worktree ") == 1
