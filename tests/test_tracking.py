"""src/runloop/environment.py and tracking.py: the settings, where MLflow runs go, how they are tagged and recorded."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.runloop import ci, environment, lock, machine, tracking
from src.runloop.stage import BadInput

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"MLFLOW_TRACKING_URI": "http://tracking:5000"}, "http://tracking:5000"),
        ({"MLFLOW_URL": "https://url.example", "MLFLOW_TRACKING_URI": "http://tracking:5000"}, "https://url.example"),
        ({"MLFLOW_URL": "", "MLFLOW_TRACKING_URI": "http://tracking:5000"}, "http://tracking:5000"),
        ({"MLFLOW_URL": "  ", "MLFLOW_TRACKING_URI": ""}, None),
    ],
)
def test_tracking_uri_precedence(tmp_path, env, expected):
    assert environment.tracking_uri(env, root=tmp_path) == (expected or f"sqlite:///{tmp_path}/mlflow.db")


def test_tracking_uri_defaults_to_the_project_root_and_reads_the_environment(monkeypatch):
    assert environment.ROOT == ROOT
    assert environment.tracking_uri() == f"sqlite:///{ROOT}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert environment.tracking_uri() == "http://from-env:5000"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://user:s3cret@mlflow.example.com:8443/p?x=1#f", "https://mlflow.example.com:8443/p?x=1#f"),
        ("https://token@mlflow.example.com/", "https://mlflow.example.com/"),
        ("http://user:@127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://mlflow.example.com", "https://mlflow.example.com"),
        ("sqlite:////tmp/project/mlflow.db", "sqlite:////tmp/project/mlflow.db"),
        ("http://user:pw@[::1]:5000/", "http://[::1]:5000/"),
    ],
)
def test_redact_strips_credentials(uri, expected):
    assert environment.redact(uri) == expected


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("sqlite:////tmp/mlflow.db", True),
        ("file:///tmp/mlruns", True),
        ("/tmp/mlruns", True),
        ("http://127.0.0.1:5000", False),
        ("https://mlflow.example.com", False),
        ("databricks://profile", False),
        ("databricks", False),
    ],
)
def test_is_local_store(uri, local):
    assert environment.is_local_store(uri) is local


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RUN_TAG": "run-example-a"}, "run-example-a"),
        ({"RUN_TAG": "run-example-a", "GITHUB_REF": "refs/tags/b", "GITHUB_REF_NAME": "b"}, "run-example-a"),
        ({"GITHUB_REF": "refs/tags/run-example-b", "GITHUB_REF_NAME": "run-example-b"}, "run-example-b"),
        ({"RUN_TAG": "", "GITHUB_REF": "refs/tags/run-example-b", "GITHUB_REF_NAME": "run-example-b"}, "run-example-b"),
        ({"GITHUB_REF": "refs/heads/main", "GITHUB_REF_NAME": "main"}, None),
        ({"GITHUB_REF": "refs/pull/7/merge", "GITHUB_REF_NAME": "7/merge"}, None),
        ({}, None),
    ],
)
def test_run_tag(env, expected):
    assert ci.run_tag(env) == expected


def test_ci_run_url():
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/example", "GITHUB_RUN_ID": "42"}
    assert ci.run_url(env) == "https://github.com/acme/example/actions/runs/42"
    assert ci.run_url({**env, "GITHUB_RUN_ID": ""}) is None
    assert ci.run_url({k: v for k, v in env.items() if k != "GITHUB_REPOSITORY"}) is None


def test_run_tags_name_the_commit_and_the_launch():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True)
    env = {"RUN_TAG": "run-example-x", "RUN_CI_URL": "https://github.com/a/b/actions/runs/1"}  # as repro sets them
    runner = ci.runner({"GITHUB_ACTIONS": "true", "RUNNER_NAME": "gpu-box-1", ci.RUNNER_CLASS: "gpu",
                        ci.RUNNER_LABELS: '["self-hosted", "igz", "gpu"]'})  # fmt: skip
    env.update(tracking.runner_variables(runner))
    tags = tracking.run_tags("train", env)
    assert tags.pop("git_dirty") in ("true", "false")
    recorded = {key.removeprefix("env."): tags.pop(key) for key in list(tags) if key.startswith("env.")}
    assert recorded == machine.describe() and recorded["python"].endswith(platform.python_version())
    commit = head.stdout.strip()
    assert tags == {
        "stage": "train",
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "run_tag": "run-example-x",
        "ci_run_url": "https://github.com/a/b/actions/runs/1",
        "runner.class": "gpu",
        "runner.name": "gpu-box-1",
        "runner.labels": "self-hosted, igz, gpu",
    }
    assert ci.runner({"RUNNER_NAME": "laptop"}) == ci.Runner()  # off CI: no runner to speak of


def test_a_stage_run_logs_system_metrics_unless_turned_off(project, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient, fluent

    monkeypatch.setattr(tracking, "ROOT", project)
    uri = f"sqlite:///{tmp_path}/store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # MLflow's own setting (default 10 s)

    with tracking.stage_run("train", "unit", root=tmp_path) as run:
        monitor = fluent.run_id_to_system_metrics_monitor[run.info.run_id]
        deadline = time.monotonic() + 60
        while monitor._logging_step < 1:  # one sample taken and queued: what a stage of a second or more gets
            assert time.monotonic() < deadline, "MLflow's system metrics monitor never took a sample"
            time.sleep(0.1)

    logged = MlflowClient(uri).get_run(run.info.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= logged.keys()
    assert tracking._system_metrics({}) and not tracking._system_metrics({tracking.SYSTEM_METRICS_ENV: "false"})


def test_read_record(tmp_path):
    record = tmp_path / "train.json"
    assert tracking.read_record(record) is None
    record.write_text("{not json")
    assert tracking.read_record(record) is None
    record.write_text('{"run_id": "abc"}')
    assert tracking.read_record(record) == {"run_id": "abc"}


def test_stage_run_records_each_run_and_nests_evaluate_under_train(project, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(tracking, "ROOT", project)  # git probes in the copy, not this checkout
    uri = f"sqlite:///{tmp_path}/store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RUN_TAG", "run-example-unit")

    with tracking.stage_run("train", "unit", root=tmp_path) as trained:
        mlflow.log_metric("best_val_accuracy", 0.9)
    saved = json.loads((tmp_path / "runs" / "train.json").read_text())
    assert saved == {
        "stage": "train",
        "run_id": trained.info.run_id,
        "experiment_id": trained.info.experiment_id,
        "tracking_uri": uri,
    }
    evaluations = []
    for threshold in (0.5, 0.7):  # a re-evaluation with other params is a run of its own, never a clash
        with tracking.stage_run(
            "evaluate", "unit", root=tmp_path, after="train", params={"threshold": threshold}
        ) as run:
            mlflow.log_metric("test_accuracy", threshold)
        evaluations.append(run.info.run_id)
    assert json.loads((tmp_path / "runs" / "evaluate.json").read_text())["run_id"] == evaluations[-1]
    (tmp_path / "dvc.yaml").write_text((project / "dvc.yaml").read_text())  # the records are those it names
    assert [r["stage"] for r in lock.run_records(tmp_path)] == ["evaluate", "train"]

    client = MlflowClient(tracking_uri=uri)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True, text=True)
    assert len({trained.info.run_id, *evaluations}) == 3
    for run_id, threshold in zip(evaluations, ("0.5", "0.7"), strict=True):
        data = client.get_run(run_id).data
        assert data.tags["mlflow.parentRunId"] == trained.info.run_id
        assert (data.tags["stage"], data.tags["run_tag"]) == ("evaluate", "run-example-unit")
        assert data.tags["git_commit"] == head.stdout.strip()
        assert data.params == {"threshold": threshold}
        assert data.metrics == {"test_accuracy": float(threshold)}
    assert client.get_run(trained.info.run_id).data.metrics == {"best_val_accuracy": 0.9}
    experiment = client.get_experiment(trained.info.experiment_id)
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()  # beside the store, not ./mlruns

    # A train record from another store links to nothing: evaluate still logs, unnested.
    record = tmp_path / "runs" / "train.json"
    record.write_text(json.dumps({**saved, "tracking_uri": "sqlite:////elsewhere/mlflow.db"}))
    with tracking.stage_run("evaluate", "unit", root=tmp_path, after="train") as lone:
        pass
    assert "mlflow.parentRunId" not in client.get_run(lone.info.run_id).data.tags


def _dotenv_uri(project: Path, **env: str) -> str:
    code = "from src.runloop import environment as e; e.load_dotenv(); print(e.tracking_uri())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env={**os.environ, **env}, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def test_dotenv_is_read_and_real_variables_win(project):
    assert _dotenv_uri(project) == f"sqlite:///{project}/mlflow.db"
    (project / ".env").write_text("MLFLOW_URL=\nMLFLOW_TRACKING_URI=http://from-dotenv:5000\n")
    assert _dotenv_uri(project) == "http://from-dotenv:5000"
    assert _dotenv_uri(project, MLFLOW_TRACKING_URI="http://from-env:5000") == "http://from-env:5000"
    assert _dotenv_uri(project, MLFLOW_URL="http://runner:5000") == "http://runner:5000"
    # .env is gitignored: secrets written there never show up as a change to commit.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, check=True, capture_output=True, text=True)
    assert status.stdout == ""


def test_stage_run_refuses_a_deleted_experiment_and_survives_a_creation_race(project, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(tracking, "ROOT", project)
    uri = f"sqlite:///{tmp_path}/store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    existing = client.create_experiment("raced")
    # Another run creates the experiment between this run's look-up and its create_experiment.
    lookup = mlflow.get_experiment_by_name
    calls = []
    monkeypatch.setattr(
        mlflow, "get_experiment_by_name", lambda name: calls.append(name) or (lookup(name) if len(calls) > 1 else None)
    )
    with tracking.stage_run("train", "raced", root=tmp_path) as run:
        pass
    assert run.info.experiment_id == existing
    monkeypatch.setattr(mlflow, "get_experiment_by_name", lookup)

    client.delete_experiment(existing)
    with pytest.raises(BadInput, match="MLflow experiment 'raced' is deleted at sqlite:///.* — restore it in MLflow"):
        with tracking.stage_run("train", "raced", root=tmp_path):
            pass


def test_git_dirty_ignores_dvc_lock_but_not_code_or_params(project, monkeypatch):
    monkeypatch.setattr(tracking, "ROOT", project)
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run(["git", "add", "dvc.lock"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "lock"], cwd=project, check=True)

    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # what DVC does between stages
    assert tracking.run_tags("train")["git_dirty"] == "false"
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "# edited\n")
    assert tracking.run_tags("train")["git_dirty"] == "true"


def test_tasks_start_without_heavy_imports():
    """`invoke --list` must stay instant: tasks.py and src/runloop import no mlflow, dvc, sklearn or pandas."""
    code = "import sys, tasks; print(sorted(m for m in ('mlflow', 'dvc', 'sklearn', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
