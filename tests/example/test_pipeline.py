"""The example pipeline end to end through `invoke repro`: every stage, its MLflow runs, byte-identical reruns."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from gitrepos import copy_project, git, invoke_repro, md5s, outputs, record

STAGES = ("query", "prepare", "train", "evaluate")
EXPERIMENT = "breast-cancer-example"
REGISTERED = "breast-cancer-classifier"


def assert_same_predictions(example: Path, store: str, model_uri: str) -> None:
    """The MLflow model at `model_uri` predicts exactly what the DVC-tracked pickle predicts on the test split."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(store)
    features = pd.read_csv(example / "data/prepared/test.csv").drop(columns="target")
    with open(example / "models/model.pkl", "rb") as f:
        pickled = pickle.load(f)  # noqa: S301 - the test's own pipeline output
    assert (mlflow.pyfunc.load_model(model_uri).predict(features) == pickled.predict(features)).all()
    requirements = mlflow.pyfunc.get_model_dependencies(model_uri)
    assert "scikit-learn==1.9.1" in Path(requirements).read_text().splitlines()  # from Pipfile.lock


@pytest.fixture
def example(tmp_path: Path, isolated_env: Path) -> Path:
    """A copy of the project with the example pipeline itself."""
    return copy_project(tmp_path / "example", example=True)


@pytest.mark.slow
def test_example_on_embedded_defaults_then_force(example, untouched_checkout):
    from mlflow.tracking import MlflowClient

    code, out = invoke_repro(example)

    assert code == 0, out
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    missing = [p for p in outputs(example) if not (example / p).is_file()]
    assert missing == []
    store = f"sqlite:///{example}/mlflow.db"
    assert (example / "mlflow.db").is_file()
    saved = record(example, "train")
    run_id = saved["run_id"]
    assert (saved["stage"], saved["tracking_uri"]) == ("train", store)
    evaluation_id = record(example, "evaluate")["run_id"]
    assert evaluation_id != run_id  # each execution of a stage is a run of its own
    # The report says where everything is.
    assert f"MLflow (train): run {run_id} in {store}" in out
    assert f"MLflow (evaluate): run {evaluation_id} in {store}" in out
    assert re.search(r"^metrics/evaluate\.json +[0-9.]+ ", out, flags=re.MULTILINE), out
    assert "best_val_accuracy" in out
    assert f"Data and models: {example} " in out

    run = MlflowClient(tracking_uri=store).get_run(run_id)
    train_metrics = json.loads((example / "metrics/train.json").read_text())
    test_metrics = json.loads((example / "metrics/evaluate.json").read_text())
    head = git("rev-parse", "HEAD", cwd=example)
    tags = run.data.tags
    expected = {"git_commit": head, "git_dirty": "false", "stage": "train"}
    assert {k: tags.get(k) for k in expected} == expected
    assert "run_tag" not in tags and "ci_run_url" not in tags
    assert run.data.metrics["best_val_accuracy"] == train_metrics["best_val_accuracy"]
    evaluation = MlflowClient(tracking_uri=store).get_run(evaluation_id)
    expected = {"git_commit": head, "git_dirty": "false", "stage": "evaluate", "mlflow.parentRunId": run_id}
    assert {k: evaluation.data.tags.get(k) for k in expected} == expected  # nested under the model's run
    assert evaluation.data.metrics["test_accuracy"] == test_metrics["accuracy"]
    assert run.data.params["best_model"] == max(train_metrics["val_accuracy"], key=train_metrics["val_accuracy"].get)
    artifacts = Path(urlparse(run.info.artifact_uri).path)
    assert artifacts.is_relative_to(example / "mlartifacts")
    assert (Path(urlparse(evaluation.info.artifact_uri).path) / "plots" / "evaluation.png").is_file()
    # The model is an MLflow sklearn model, registered as version 1 of train.registered_model, tied to its run.
    client = MlflowClient(tracking_uri=store)
    (version,) = client.search_model_versions(f"name='{REGISTERED}'")
    assert (str(version.version), version.run_id) == ("1", run_id)
    assert version.tags == {"git_commit": head}
    assert f"Made by MLflow run {run_id} (stage train)" in version.description
    assert_same_predictions(example, store, f"models:/{REGISTERED}/1")

    # Outputs, mlflow.db and mlartifacts are ignored: only dvc.lock is new (tag-run names it when it refuses).
    assert git("status", "--porcelain", cwd=example) == "?? dvc.lock"

    # Re-running every stage gives the same bytes; only the MLflow run record is new.
    data = [p for p in outputs(example) if not p.startswith("runs/")]
    before = md5s(example, data)
    code, out = invoke_repro(example, "--force")
    assert code == 0, out
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    assert md5s(example, data) == before
    rerun_id = record(example, "train")["run_id"]
    assert rerun_id != run_id
    assert MlflowClient(tracking_uri=store).get_run(rerun_id).data.tags["git_commit"] == head
    # Each executed train registers a version of its own.
    versions = client.search_model_versions(f"name='{REGISTERED}'")
    assert sorted((str(v.version), v.run_id) for v in versions) == [("1", run_id), ("2", rerun_id)]


@pytest.mark.slow
def test_example_with_bad_params_fails_with_the_stage_message(example, untouched_checkout):
    params = example / "params.yaml"
    params.write_text(params.read_text().replace("test_size: 0.2", "test_size: 1.5", 1))
    code, out = invoke_repro(example)

    assert code != 0
    assert "prepare.test_size is 1.5: it must be a share between 0 and 1 — fix params.yaml" in out
    assert "The pipeline failed (DVC's message is above) — fix the failing stage and run again." in out
    assert "Running stage 'train'" not in out
    assert not (example / "models/model.pkl").exists()
