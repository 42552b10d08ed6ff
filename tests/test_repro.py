"""`invoke repro` end to end: the tests' own pipeline in a copy of the project, on embedded stores or real servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from gitrepos import experiment, git, invoke_repro, lock_outs, md5s, outputs, record, stages

import tasks


@pytest.mark.slow
def test_repro_on_embedded_defaults_then_force(project, untouched_checkout):
    from mlflow.tracking import MlflowClient

    code, out = invoke_repro(project)

    assert code == 0, out
    assert re.findall(r"Running stage '(\w+)'", out) == stages(project)
    assert [p for p in outputs(project) if not (project / p).is_file()] == []
    store = f"sqlite:///{project}/mlflow.db"
    saved = record(project, "train")
    run_id = saved["run_id"]
    assert (saved["stage"], saved["tracking_uri"]) == ("train", store)
    evaluation_id = record(project, "evaluate")["run_id"]
    assert evaluation_id != run_id  # each execution of a stage is a run of its own
    # The report says where everything is.
    assert f"MLflow (train): run {run_id} in {store}" in out
    assert f"MLflow (evaluate): run {evaluation_id} in {store}" in out
    accuracy = json.loads((project / "metrics/evaluate.json").read_text())["accuracy"]
    assert re.search(rf"^metrics/evaluate\.json +{accuracy} ", out, flags=re.MULTILINE), out
    assert f"Data and models: {project} " in out

    client = MlflowClient(tracking_uri=store)
    run, evaluation = client.get_run(run_id), client.get_run(evaluation_id)
    head = git("rev-parse", "HEAD", cwd=project)
    expected = {"git_commit": head, "git_dirty": "false", "stage": "train"}
    assert {k: run.data.tags.get(k) for k in expected} == expected
    assert "run_tag" not in run.data.tags and "ci_run_url" not in run.data.tags
    assert (
        run.data.metrics["train_accuracy"] == json.loads((project / "metrics/train.json").read_text())["train_accuracy"]
    )
    expected = {"git_commit": head, "git_dirty": "false", "stage": "evaluate", "mlflow.parentRunId": run_id}
    assert {k: evaluation.data.tags.get(k) for k in expected} == expected  # nested under the model's run
    assert evaluation.data.metrics["test_accuracy"] == accuracy
    assert Path(urlparse(run.info.artifact_uri).path).is_relative_to(project / "mlartifacts")
    # The model MLflow loads (logged by the run, registered as a version) holds the DVC output's bytes.
    (version,) = client.search_model_versions(f"run_id='{run_id}'")
    model = Path(urlparse(client.get_logged_model(version.source.removeprefix("models:/")).artifact_location).path)
    assert model.is_relative_to(project / "mlartifacts")
    assert (model / "artifacts" / "model.json").read_bytes() == (project / "models/model.json").read_bytes()

    # Outputs, mlflow.db and mlartifacts are ignored: only dvc.lock is new (tag-run names it when it refuses).
    assert git("status", "--porcelain", cwd=project) == "?? dvc.lock"

    # Re-running every stage gives the same bytes; only the MLflow run record is new.
    data = [p for p in outputs(project) if not p.startswith("runs/")]
    before = md5s(project, data)
    code, out = invoke_repro(project, "--force")
    assert code == 0, out
    assert re.findall(r"Running stage '(\w+)'", out) == stages(project)
    assert md5s(project, data) == before
    rerun_id = record(project, "train")["run_id"]
    assert rerun_id != run_id
    assert client.get_run(rerun_id).data.tags["git_commit"] == head


@pytest.mark.slow
def test_repro_restores_every_stage_from_the_s3_run_cache(project, s3, tmp_path, untouched_checkout):
    env = {**s3.server.env(), "DVC_REMOTE_URL": s3.dvc_url}
    code, out = invoke_repro(project, env=env)
    assert code == 0, out
    assert "$ dvc repro --pull" in out
    pushed = subprocess.run(
        [sys.executable, "-m", "dvc", "push", "--run-cache"],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert pushed.returncode == 0, pushed.stderr

    keys = s3.server.keys(s3.dvc_bucket)
    outs = lock_outs((project / "dvc.lock").read_text())
    assert sorted(outs) == sorted(outputs(project))
    assert [p for p, md5 in outs.items() if f"files/md5/{md5[:2]}/{md5[2:]}" not in keys] == []
    model = outs["models/model.json"]
    body = s3.server.client().get_object(Bucket=s3.dvc_bucket, Key=f"files/md5/{model[:2]}/{model[2:]}")["Body"]
    assert body.read() == (project / "models/model.json").read_bytes()
    run_cache = {k.rsplit("/", 1)[0] for k in keys if k.startswith("runs/")}
    assert len(run_cache) == len(stages(project)), keys

    data = outputs(project)
    # A second machine checks out the tagged commit, which has no dvc.lock: every stage comes from the run cache.
    fresh = tmp_path / "fresh"
    git("clone", "-q", str(project), str(fresh), cwd=tmp_path)
    assert not (fresh / "dvc.lock").exists()
    code, out = invoke_repro(fresh, env=env)

    assert code == 0, out
    assert "Running stage" not in out
    for stage in stages(project):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in out
    assert md5s(fresh, data) == md5s(project, data)
    assert lock_outs((fresh / "dvc.lock").read_text()) == outs
    assert record(fresh, "train") == record(project, "train")  # names the MLflow run that made the model
    assert not (fresh / "mlflow.db").exists()  # nothing ran, so nothing was logged

    # With the results committed, a clone pulls exactly the outputs dvc.lock names.
    git("add", "dvc.lock", cwd=project)
    git("commit", "-q", "-m", "Results", cwd=project)
    locked = tmp_path / "locked"
    git("clone", "-q", str(project), str(locked), cwd=tmp_path)
    code, out = invoke_repro(locked, env=env)

    assert code == 0, out
    assert "Running stage" not in out
    for stage in stages(project):
        assert f"Pulling data for stage: '{stage}'" in out
    assert "Data and pipelines are up to date." in out
    assert md5s(locked, data) == md5s(project, data)
    assert git("status", "--porcelain", cwd=locked) == ""


@pytest.mark.slow
def test_repro_logs_to_the_mlflow_server_and_s3(project, s3, mlflow_server, monkeypatch, untouched_checkout):
    git("tag", f"{tasks.TAG_PREFIX}-test", cwd=project)  # repro finds the run tag on HEAD and passes it on
    env = {
        **s3.server.env(),
        "DVC_REMOTE_URL": s3.dvc_url,
        # Credentials in the URL (as a team's proxy may need) must never reach the output or the run record.
        "MLFLOW_URL": mlflow_server.url.replace("http://", "http://ci:pw-secret-42@"),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/example",
        "GITHUB_RUN_ID": "4242",
    }
    code, out = invoke_repro(project, env=env)

    assert code == 0, out
    assert "pw-secret-42" not in out
    saved = record(project, "train")
    assert saved["tracking_uri"] == mlflow_server.url
    client = mlflow_server.client()
    experiment_id = client.get_experiment_by_name(experiment(project)).experiment_id
    run = client.get_run(saved["run_id"])
    assert run.info.experiment_id == experiment_id == saved["experiment_id"]
    assert f"{mlflow_server.url}/#/experiments/{experiment_id}/runs/{run.info.run_id}" in out
    tags = run.data.tags
    assert tags["git_commit"] == git("rev-parse", "HEAD", cwd=project)
    assert tags["run_tag"] == f"{tasks.TAG_PREFIX}-test"
    assert tags["ci_run_url"] == "https://github.com/acme/example/actions/runs/4242"
    evaluation = client.get_run(record(project, "evaluate")["run_id"])
    assert evaluation.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert {k: evaluation.data.tags[k] for k in ("run_tag", "git_commit")} == {
        "run_tag": f"{tasks.TAG_PREFIX}-test",
        "git_commit": tags["git_commit"],
    }
    train_metrics = json.loads((project / "metrics/train.json").read_text())
    assert 0 <= evaluation.data.metrics["test_accuracy"] <= 1
    assert run.data.metrics["train_accuracy"] == train_metrics["train_accuracy"]
    test_metrics = json.loads((project / "metrics/evaluate.json").read_text())
    assert evaluation.data.metrics["test_accuracy"] == test_metrics["accuracy"]
    assert run.data.params["epochs"] == str(yaml.safe_load((project / "params.yaml").read_text())["train"]["epochs"])

    artifacts = urlparse(run.info.artifact_uri)
    assert (artifacts.scheme, artifacts.netloc) == ("s3", s3.mlflow_bucket)
    (version,) = client.search_model_versions(f"run_id='{run.info.run_id}'")
    model = urlparse(client.get_logged_model(version.source.removeprefix("models:/")).artifact_location)
    assert (model.scheme, model.netloc) == ("s3", s3.mlflow_bucket)
    key = f"{model.path.strip('/')}/artifacts/model.json"
    assert key in s3.server.keys(s3.mlflow_bucket, model.path.strip("/"))
    body = s3.server.client().get_object(Bucket=s3.mlflow_bucket, Key=key)["Body"].read()
    assert body == (project / "models/model.json").read_bytes()
    # The server took the runs and S3 the artifacts: no embedded store was created.
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()


def test_repro_on_actions_names_every_missing_secret(project, untouched_checkout):
    code, out = invoke_repro(project, env={"GITHUB_ACTIONS": "true", "MLFLOW_URL": "http://127.0.0.1:9"})

    assert code == 1
    for name, source in [
        ("MLFLOW_S3_ENDPOINT_URL", "repository variable MLFLOW_S3_ENDPOINT_URL"),
        ("AWS_ACCESS_KEY_ID", "secret MINIO_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "secret MINIO_SECRET_ACCESS_KEY"),
        (
            "ACCESS_TOKEN",
            "secret ACCESS_TOKEN, or a GitHub App: repository variable PUSH_APP_CLIENT_ID and secret "
            "PUSH_APP_PRIVATE_KEY",
        ),
    ]:
        assert f"{name} (from {source})" in out
    assert "MLFLOW_URL (from" not in out and "$ dvc repro" not in out


def test_repro_on_actions_refuses_another_python_than_the_locked_one(project, untouched_checkout):
    pipfile = project / "Pipfile"
    pipfile.write_text(pipfile.read_text().replace('python_version = "3.11"', 'python_version = "3.10"'))
    env = {"GITHUB_ACTIONS": "true", "MLFLOW_URL": "http://127.0.0.1:9", "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    env |= {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "ACCESS_TOKEN": "t"}

    code, out = invoke_repro(project, env=env)

    assert code == 1
    assert "This runner's Python is 3.11, but Pipfile.lock was made for 3.10" in out
    assert "$ dvc repro" not in out


def test_repro_on_actions_stops_at_once_without_mlflow_url(project, untouched_checkout):
    env = {
        "GITHUB_ACTIONS": "true",
        "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "supersecret123",
        "ACCESS_TOKEN": "ghp_tokenvalue456",
    }
    code, out = invoke_repro(project, env=env)

    assert code != 0
    assert "MLFLOW_URL (from repository variable MLFLOW_URL)" in out
    assert "Settings → Secrets and variables → Actions" in out
    assert "AWS_SECRET_ACCESS_KEY (from" not in out and "ACCESS_TOKEN (from" not in out
    assert "supersecret123" not in out and "ghp_tokenvalue456" not in out
    assert "$ dvc repro" not in out and "Traceback" not in out
    assert not (project / "dvc.lock").exists() and not (project / "data").exists()


@pytest.mark.slow
def test_repro_with_bad_params_fails_with_the_stage_message(project, untouched_checkout):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("noise: 0.1", "noise: 0.7", 1))
    code, out = invoke_repro(project)

    assert code != 0
    assert "data.noise is 0.7: it must lie in [0, 0.5) — fix params.yaml" in out
    assert "The pipeline failed (DVC's message is above) — fix the failing stage and run again." in out
    assert "Running stage 'train'" not in out
    assert not (project / "models").exists()


@pytest.mark.parametrize(
    ("env", "local_config", "args", "pulls"),
    [
        ({}, "", [], False),  # a fresh clone: embedded defaults, no remote
        ({"AWS_ACCESS_KEY_ID": "someone-elses-aws-key"}, "", [], False),  # keys alone point nowhere
        ({"MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, "", [], True),
        ({"DVC_REMOTE_URL": "/srv/dvc-store"}, "", [], True),
        ({}, "['remote \"storage\"']\n    endpointurl = http://127.0.0.1:9\n", [], True),  # set by hand
        ({"MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, "", ["--no-pull"], False),
    ],
)
def test_repro_pulls_only_from_a_configured_remote(project, env, local_config, args, pulls):
    if local_config:
        (project / ".dvc" / "config.local").write_text(local_config)

    code, out = invoke_repro(project, "--dry-run", *args, env=env)

    assert code == 0, out
    assert ("$ dvc repro --pull\n" if pulls else "$ dvc repro\n") in out
    where = "pull from the DVC remote" if pulls else "use no DVC remote"
    assert f"Would log to MLflow at sqlite:///{project}/mlflow.db and {where}." in out
    # A dry run changes nothing: no config written, no output, no store.
    local = project / ".dvc" / "config.local"
    assert (local.read_text() if local.exists() else "") == local_config
    assert not (project / "mlflow.db").exists() and not (project / "dvc.lock").exists()
