"""src/runloop/tracking.py's model helpers: pip requirements from the lock, a registry version per executed stage."""

from __future__ import annotations

import json

import pytest

from src.runloop import tracking
from src.runloop.stage import BadInput


def test_locked_requirements_come_from_pipfile_lock(tmp_path):
    lock = tmp_path / "Pipfile.lock"
    lock.write_text(json.dumps({"default": {"scikit-learn": {"version": "==1.9.1"}, "numpy": {"version": "==2.0"}}}))

    assert tracking.locked_requirements("numpy", "scikit-learn", lock=lock) == ["numpy==2.0", "scikit-learn==1.9.1"]
    with pytest.raises(
        BadInput, match=r"Pipfile.lock pins no torch, jax — add it to the Pipfile and run `pipenv lock`"
    ):
        tracking.locked_requirements("numpy", "torch", "jax", lock=lock)


def test_register_model_ties_the_version_to_the_run(project, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setattr(tracking, "ROOT", project)  # git probes in the copy, not this checkout
    uri = f"sqlite:///{tmp_path}/store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RUN_TAG", "run-unit-1")
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])

    with tracking.stage_run("train", "unit", root=tmp_path) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=tracking.locked_requirements("mlflow"))
        version = tracking.register_model(info.model_uri, "unit-model", run)

    saved = MlflowClient(tracking_uri=uri).get_model_version("unit-model", version.version)
    assert (str(saved.version), saved.run_id) == ("1", run.info.run_id)
    commit = tracking.run_tags("train")["git_commit"]
    assert saved.tags == {"run_tag": "run-unit-1", "git_commit": commit}
    assert saved.description == (
        f"Made by MLflow run {run.info.run_id} (stage train) of run tag run-unit-1, at commit {commit}."
    )
    loaded = mlflow.pyfunc.load_model("models:/unit-model/1")
    assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]
