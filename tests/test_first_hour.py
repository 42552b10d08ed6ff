"""What a new user meets in the first hour: the Quickstart's tree and tag-run, plain `dvc pull`, reproducing
without the remote, and what `invoke repro` prints (DVC's reminders, MLflow lines, metrics)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitrepos import clone, git, invoke, invoke_repro, local_tags, md5s, outputs, record, refs, stages

from src.runloop import lock, report, tracking

DVC = [sys.executable, "-m", "dvc"]
REMINDERS = ("To track the changes with git", "git add dvc.lock", "core.autostage", "Use `dvc push`")


def dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Plain `dvc ARGS` in `repo`, as a DVC user types it."""
    return subprocess.run(
        [*DVC, *args], cwd=repo, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )


def record_of(stage: str, run_id: str, uri: str) -> dict[str, str]:
    return {"stage": stage, "run_id": run_id, "experiment_id": "1", "tracking_uri": uri}


# -- run records: the ones dvc.yaml names ---------------------------------------------------------------------


def test_run_records_are_the_ones_dvc_yaml_names(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  fit:\n    cmd: python fit.py\n    outs:\n      - models/m.pkl\n      - runs/fit.json\n"
        "  score:\n    cmd: python score.py\n    outs:\n      - runs/score.json:\n          cache: true\n"
    )
    (tmp_path / "runs").mkdir()
    for stage in ("fit", "score", "old"):  # `old` is a stage since removed from dvc.yaml
        (tmp_path / "runs" / f"{stage}.json").write_text(json.dumps(record_of(stage, f"id-{stage}", "sqlite:///x")))

    assert [r["stage"] for r in lock.run_records(tmp_path)] == ["fit", "score"]
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert lock.run_records(tmp_path) == []
    (tmp_path / "dvc.yaml").unlink()
    assert lock.run_records(tmp_path) == []


# -- what invoke repro prints -----------------------------------------------------------------------------------


def test_mlflow_lines_one_per_run_and_how_to_browse_a_local_store_once():
    store = "sqlite:////work/p/mlflow.db"
    local = [record_of("train", "a1", store), record_of("evaluate", "b2", store)]

    assert report.mlflow_lines(local) == [
        f"MLflow (train): run a1 in {store}",
        f"MLflow (evaluate): run b2 in {store}",
        f"Browse them: mlflow ui --backend-store-uri {store}",
    ]
    server = [record_of("train", "a1", "https://mlflow.example"), record_of("evaluate", "a1", "https://mlflow.example")]
    assert report.mlflow_lines(server) == ["MLflow (train, evaluate): https://mlflow.example/#/experiments/1/runs/a1"]
    assert report.mlflow_lines([]) == []


def test_metrics_are_one_per_line_when_the_table_is_wide():
    table = "Path                  accuracy    roc_auc\nmetrics/evaluate.json  0.95      0.99"
    lines = ["metrics/evaluate.json accuracy: 0.95", "metrics/evaluate.json roc_auc: 0.99"]

    assert report.metrics_text(table, lambda: lines, 100) == table
    assert report.metrics_text(table, lambda: lines, 30) == "\n".join(f"  {line}" for line in lines)
    assert report.metrics_text("", lambda: lines, 100) == "  (no metrics)"


def changed(old: dict, new: dict) -> list[str] | None:
    return lock.Lock(yaml.safe_dump(old)).changed_outputs(lock.Lock(yaml.safe_dump(new)))


def test_changed_outputs_of_two_locks():
    def locked(model: str, record: str, seed: int = 1) -> dict:
        outs = [{"path": "models/m.pkl", "md5": model}, {"path": "runs/train.json", "md5": record}]
        return {"stages": {"train": {"cmd": "python -m t", "params": {"params.yaml": {"seed": seed}}, "outs": outs}}}

    assert changed(locked("m1", "r1"), locked("m1", "r2")) == ["runs/train.json"]
    assert changed(locked("m1", "r1"), locked("m2", "r2")) == ["models/m.pkl", "runs/train.json"]
    assert changed(locked("m1", "r1"), locked("m1", "r1")) == []
    assert changed(locked("m1", "r1"), locked("m1", "r2", seed=2)) is None  # a new result
    # A later stage that reads the run record: its dependency on it is not data in.
    score = {
        "cmd": "python -m s",
        "deps": [{"path": "runs/train.json", "md5": "r1"}, {"path": "data.csv", "md5": "d1"}],
    }
    old = {"stages": {**locked("m1", "r1")["stages"], "score": score}}
    new = {
        "stages": {
            **locked("m1", "r2")["stages"],
            "score": {**score, "deps": [{**score["deps"][0], "md5": "r2"}, {**score["deps"][1]}]},
        }
    }
    assert changed(old, new) == ["runs/train.json"]
    new["stages"]["score"]["deps"][1]["md5"] = "d2"
    assert changed(old, new) is None


@pytest.mark.slow
def test_repro_prints_no_dvc_reminders_and_reports_once(project, untouched_checkout):
    env = {"COLUMNS": "30"}  # a narrow terminal: the metrics table would not fit

    code, out = invoke_repro(project, env=env)

    assert code == 0, out
    assert [s for s in stages(project) if f"Running stage '{s}'" not in out] == []
    assert "Updating lock file 'dvc.lock'" in out  # DVC's own lines stay
    assert [r for r in REMINDERS if r in out] == []
    store = f"sqlite:///{project}/mlflow.db"
    for stage in ("train", "evaluate"):
        assert f"MLflow ({stage}): run {record(project, stage)['run_id']} in {store}" in out
    assert out.count("mlflow ui --backend-store-uri") == 1
    accuracy = json.loads((project / "metrics/evaluate.json").read_text())["accuracy"]
    assert f"\n  metrics/evaluate.json accuracy: {accuracy}\n" in out

    # A failing stage still gets DVC's own error line, and no reminder.
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("noise: 0.1", "noise: 0.7", 1))
    code, out = invoke_repro(project)
    assert code == 1
    assert f"ERROR: failed to reproduce '{stages(project)[0]}'" in out
    assert [r for r in REMINDERS if r in out] == []


# -- the Quickstart's tree, and tag-run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_tree_and_tag_run_say_exactly_what_to_do(dev, origin):
    code, out = invoke_repro(dev)
    assert code == 0, out
    plots = dvc(dev, "plots", "show")
    assert plots.returncode == 0, plots.stderr
    assert (dev / "dvc_plots" / "index.html").is_file()

    assert git("status", "--porcelain", cwd=dev) == "?? dvc.lock"  # dvc_plots/ is ignored
    result = invoke(dev, "tag-run")
    assert result.returncode == 1
    assert "the runner makes its own from the tagged commit: delete it: rm dvc.lock" in result.stdout
    assert local_tags(dev) == []

    (dev / "dvc.lock").unlink()
    result = invoke(dev, "tag-run")
    assert result.returncode == 0, result.stdout
    (tag,) = local_tags(dev)
    assert f"refs/tags/{tag}" in refs(origin)


def test_tag_run_names_a_modified_dvc_lock_and_every_dirty_file(dev, origin):
    (dev / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git("add", "dvc.lock", cwd=dev)
    git("commit", "--quiet", "-m", "A lock", cwd=dev)
    git("push", "--quiet", "origin", "main", cwd=dev)
    (dev / "dvc.lock").write_text("schema: '2.0'\nstages: {x: {}}\n")

    result = invoke(dev, "tag-run")

    assert result.returncode == 1
    assert "restore it: git checkout HEAD -- dvc.lock (or commit and push it), then tag again" in result.stdout

    for name in ("notes one.txt", "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt"):
        (dev / name).write_text("x\n")
    result = invoke(dev, "tag-run")

    assert result.returncode == 1
    assert (
        "The working tree has uncommitted or untracked changes (dvc.lock, a.txt, b.txt, c.txt, d.txt, e.txt and 2 more)"
        in result.stdout
    )
    assert local_tags(dev) == []


# -- reproducing a results commit without the remote --------------------------------------------------------------


@pytest.mark.slow
def test_reproducing_without_the_remote_leaves_the_tree_clean(project, tmp_path, untouched_checkout):
    code, out = invoke_repro(project)
    assert code == 0, out
    git("add", "dvc.lock", cwd=project)
    git("commit", "--quiet", "-m", "Results", cwd=project)
    committed = (project / "dvc.lock").read_text()
    data = [p for p in outputs(project) if not tracking.is_run_record(p)]

    # Another machine, no remote: the stages execute; only the run records come out differently.
    other = clone(project, tmp_path / "other")
    code, out = invoke_repro(other)

    assert code == 0, out
    assert [s for s in stages(project) if f"Running stage '{s}'" not in out] == []
    assert md5s(other, data) == md5s(project, data)
    assert "dvc.lock: every output is byte for byte what HEAD's records, except the MLflow run records" in out
    assert (other / "dvc.lock").read_text() == committed
    assert git("status", "--porcelain", cwd=other) == ""

    # When an output does come out differently, dvc.lock keeps the new hash and the report names the output.
    model = md5s(project, ["models/model.json"])["models/model.json"]
    lock = committed.replace(model, "deadbeef" * 4, 1)  # the train stage's out, not evaluate's dependency
    assert lock != committed
    (project / "dvc.lock").write_text(lock)
    git("commit", "--quiet", "-am", "Results from elsewhere", cwd=project)
    third = clone(project, tmp_path / "third")
    code, out = invoke_repro(third)

    assert code == 0, out
    assert "dvc.lock: same code, params and data in, but these outputs differ from HEAD's: models/model.json." in out
    assert git("status", "--porcelain", cwd=third) == "M dvc.lock"


# -- plain dvc pull in a fresh clone ------------------------------------------------------------------------------


@pytest.mark.slow
def test_plain_dvc_pull_works_after_one_invoke_repro(project, s3, tmp_path, untouched_checkout):
    env = {**s3.server.env(), "DVC_REMOTE_URL": s3.dvc_url}
    code, out = invoke_repro(project, env=env)
    assert code == 0, out
    pushed = dvc(project, "push", "--run-cache", env=env)
    assert pushed.returncode == 0, pushed.stderr
    git("add", "dvc.lock", cwd=project)
    git("commit", "--quiet", "-m", "Results", cwd=project)
    data = outputs(project)

    fresh = clone(project, tmp_path / "fresh")
    code, out = invoke_repro(fresh, env=env)  # the README's one command

    assert code == 0, out
    assert "Running stage" not in out and "Data and pipelines are up to date." in out
    local = (fresh / ".dvc" / "config.local").read_text()
    assert s3.dvc_url in local and s3.server.endpoint_url in local
    assert s3.server.secret_key not in local  # credentials stay in the environment
    for folder in ("data", "models", "metrics", "plots", "runs"):
        shutil.rmtree(fresh / folder, ignore_errors=True)

    pulled = dvc(fresh, "pull", env=s3.server.env())  # plain DVC, without DVC_REMOTE_URL

    assert pulled.returncode == 0, pulled.stderr
    assert md5s(fresh, data) == md5s(project, data)
    assert git("status", "--porcelain", cwd=fresh) == ""
