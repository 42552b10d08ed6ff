"""`invoke promote`: the model version a run made gets the alias, and `models:/<name>@<alias>` loads that model.

The runs are made by the real loop: a developer's clone tags with `invoke tag-run`, a runner's clone at the tag
runs `invoke repro` and `invoke share` against the bare origin, moto S3 and the MLflow server (or, for the
embedded store, a project runs the pipeline and commits its results as share does). The tests' own pipeline
(tests/pipeline/) logs its model as an MLflow pyfunc model and registers a version of `train.registered_model`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from gitrepos import clone, commit_file, git, invoke, lock_outs, record, refs, show, tag_run
from loop_fixtures import (
    record_by_hand,
)
from reproduce_fixtures import ok, push_dev, runner_run

import tasks
from src.runloop import record as records
from src.runloop import registry
from src.runloop.runs import Run, RunNotFound, Runs

# What the DVC-tracked model predicts on the held-out points, computed by the pipeline's own code in a clone.
HELD_OUT = (
    "import json; from src.mini import paths; from src.mini.model import probability; "
    "w = json.loads((paths.ROOT / paths.MODEL).read_text())['weights']; _, held = paths.split(paths.read_points()); "
    "print(json.dumps({'x': [p[0] for p in held], 'y': [p[1] for p in held], "
    "'p': [probability(w, p[0], p[1]) for p in held]}))"
)


def promote(repo: Path, *args: str, env: dict[str, str] | None = None, code: int = 0) -> str:
    result = invoke(repo, "promote", *args, env=env)
    assert result.returncode == code, result.stdout
    assert "Traceback" not in result.stdout
    return result.stdout


def registered_model(repo: Path) -> str:
    return yaml.safe_load((repo / "params.yaml").read_text())["train"]["registered_model"]


def name_the_model(dev: Path) -> str:
    """Give the dev clone's pipeline a registered model of its own (the MLflow server is shared by the session)."""
    name = f"mini-{uuid.uuid4().hex[:8]}"
    params = dev / "params.yaml"
    params.write_text(
        params.read_text().replace(f"registered_model: {registered_model(dev)}", f"registered_model: {name}")
    )
    push_dev(dev, "A registered model of this test's own")
    return name


def held_out(repo: Path) -> dict[str, list[float]]:
    """The held-out points and what the DVC-tracked model (models/model.json here) predicts for them."""
    done = subprocess.run([sys.executable, "-c", HELD_OUT], cwd=repo, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def assert_loads_and_predicts_as_dvc_model(store: str, name: str, alias: str, repo: Path, results_lock: str) -> None:
    """`models:/<name>@<alias>` predicts exactly what the model file dvc.lock names predicts on the held-out data."""
    import mlflow
    import pandas as pd

    model_file = repo / "models" / "model.json"
    assert hashlib.md5(model_file.read_bytes()).hexdigest() == lock_outs(results_lock)["models/model.json"]  # noqa: S324
    expected = held_out(repo)
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(registry.uri(name, alias))
    predicted = loaded.predict(pd.DataFrame({"x": expected["x"], "y": expected["y"]}))
    assert len(expected["p"]) == 40
    assert list(predicted) == expected["p"]


def model_lines(out: str) -> list[str]:
    """The model-version lines `invoke runs --run` prints."""
    return out.split("Model versions (MLflow Model Registry):\n", 1)[1].splitlines()


# -- the real loop, an MLflow server with S3 artifacts --------------------------------------------------------------


@pytest.mark.slow
def test_promote_a_shared_run_then_the_runs_that_restored_its_model(
    dev, origin, s3, mlflow_server, tmp_path, monkeypatch
):
    name = name_the_model(dev)
    env = {**os.environ, **s3.server.env(), "DVC_REMOTE_URL": s3.dvc_url, "MLFLOW_URL": mlflow_server.url}
    first = tag_run(dev, "--message", "Baseline")
    runner = runner_run(origin, tmp_path / "runner", first, env)
    user = clone(origin, tmp_path / "user")
    results = git("rev-parse", "origin/main", cwd=user)
    client = mlflow_server.client()
    (version,) = client.search_model_versions(f"name='{name}'")
    trained = record(runner, "train")["run_id"]
    assert (version.version, version.run_id) == ("1", trained)
    assert version.tags == {"run_tag": first, "git_commit": git("rev-parse", f"{first}^{{commit}}", cwd=user)}
    # The logged model's files, its weights among them, are in the MLflow bucket: the DVC output's bytes.
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    prefix = logged.artifact_location.removeprefix(f"s3://{s3.mlflow_bucket}/")
    weights = s3.server.client().get_object(Bucket=s3.mlflow_bucket, Key=f"{prefix}/artifacts/model.json")["Body"]
    assert weights.read() == (runner / "models" / "model.json").read_bytes()

    plan = promote(user, "--run", first, "--dry-run", env=env)

    assert plan.splitlines()[-1] == (
        f"Would point alias 'champion' at {name} version 1 (MLflow run {trained}; results {results[:12]} on main); "
        "it is on no version now."
    )
    assert client.get_registered_model(name).aliases == {}
    assert client.get_model_version(name, "1").tags.keys() == {"run_tag", "git_commit"}

    out = promote(user, "--run", first, env=env)

    assert out.splitlines()[-2:] == [
        f"Alias 'champion' now points at {name} version 1 (MLflow run {trained}; results {results[:12]} on main); "
        "it was on no version.",
        f"models:/{name}@champion",
    ]
    promoted = client.get_model_version_by_alias(name, "champion")
    assert promoted.version == "1"
    assert {k: promoted.tags[k] for k in ("results_commit", "results_branch")} == {
        "results_commit": results,
        "results_branch": "main",
    }
    for key, value in s3.server.env().items():  # the model's files come from S3, as a deployment would read them
        monkeypatch.setenv(key, value)
    assert_loads_and_predicts_as_dvc_model(mlflow_server.url, name, "champion", runner, show(user, results, "dvc.lock"))
    chain = ok(invoke(user, "runs", "--run", first, "--no-fetch", env=env))
    assert model_lines(chain) == [f"  {name} version 1  aliases: champion  (MLflow run {trained}; models:/{name}/1)"]

    # A second tag of the same commit: every stage restored, no new version; share records the same results.
    second = tag_run(dev, "--name", "second")
    again = clone(origin, tmp_path / "again", f"refs/tags/{second}")
    repro = ok(invoke(again, "repro", env=env))
    assert "Running stage" not in repro
    shared = ok(invoke(again, "share", "--tag", second, env=env))
    assert f"The same results as {results[:12]} (the results of run {first})." in shared
    same = refs(origin)[f"refs/heads/results/{second}"]
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]

    out = promote(user, "--run", second, "--alias", "staging", env=env)

    assert f"(MLflow run {trained}; results {same[:12]} on results/{second})" in out
    assert out.splitlines()[-1] == f"models:/{name}@staging"
    assert client.get_model_version_by_alias(name, "staging").version == "1"
    chain = ok(invoke(user, "runs", "--run", second, env=env))
    assert model_lines(chain)[-1] == (
        f"  {name} version 1  aliases: champion, staging  (MLflow run {trained}; models:/{name}/1)"
    )

    # A new commit that changes only the evaluation: train is restored, its record names the first run.
    git("pull", "--quiet", "--ff-only", cwd=dev)
    evaluate = dev / "src" / "mini" / "evaluate.py"
    commit_file(dev, "src/mini/evaluate.py", evaluate.read_text() + "# tuned\n", "Tune the evaluation")
    git("push", "--quiet", "origin", "main", cwd=dev)
    third = tag_run(dev, "--name", "tuned")
    tuned = runner_run(origin, tmp_path / "tuned", third, env)
    assert record(tuned, "train")["run_id"] == trained

    out = promote(user, "--run", third, env=env)  # fetches the new results first

    newest = git("rev-parse", "origin/main", cwd=user)
    assert newest != results
    assert out.splitlines()[-1] == f"models:/{name}@champion"
    assert f"{name} version 1 (MLflow run {trained}; results {newest[:12]} on main); it was on version 1." in out
    assert client.get_model_version(name, "1").tags["results_commit"] == newest
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]


# -- the embedded store -------------------------------------------------------------------------------------------


def local_run(project: Path, tag: str) -> str:
    """Tag HEAD as a run, run the pipeline here (embedded MLflow store) and commit its results as share does."""
    annotation = records.annotation(records.Launch("Local run", "main"))
    git("tag", "--annotate", "--cleanup=verbatim", "-m", annotation, tag, cwd=project)
    tagged = git("rev-parse", "HEAD", cwd=project)
    ok(invoke(project, "repro"))
    runs = tuple(record(project, stage)["run_id"] for stage in ("evaluate", "train"))
    git("add", "dvc.lock", cwd=project)
    message = records.message(records.Outcome(records.RESULTS, tag, tagged, "Local", mlflow_runs=runs))
    git("commit", "--quiet", "--cleanup=verbatim", "-m", message, cwd=project)
    return git("rev-parse", "HEAD", cwd=project)


@pytest.mark.slow
def test_promote_on_the_embedded_store_and_refusals_once_the_version_is_gone(project):
    from mlflow.tracking import MlflowClient

    tag = f"{tasks.TAG_PREFIX}-main-20260101-000000-local"
    results = local_run(project, tag)
    name, store = registered_model(project), f"sqlite:///{project}/mlflow.db"
    trained = record(project, "train")["run_id"]

    out = promote(project, "--no-fetch")  # no RUN: the branch's newest run with results

    assert out.splitlines()[-1] == f"models:/{name}@champion"
    client = MlflowClient(tracking_uri=store)
    promoted = client.get_model_version_by_alias(name, "champion")
    assert (str(promoted.version), promoted.run_id, promoted.tags["results_commit"]) == ("1", trained, results)
    assert_loads_and_predicts_as_dvc_model(store, name, "champion", project, show(project, results, "dvc.lock"))

    # The version deleted: the run registered none that is left.
    client.delete_model_version(name, "1")

    out = promote(project, "--no-fetch", "--run", tag, code=1)

    ids = f"{record(project, 'evaluate')['run_id']}, {trained}"
    assert out.strip() == (
        f"{tag}'s MLflow runs ({ids})"
        f" registered no model version in MLflow at {store} — its pipeline registers none (a stage calls "
        "tracking.register_model when it executes), or the version was deleted: promote a run that registered one "
        "(`invoke runs --run RUN` shows its versions)."
    )

    # The registered model deleted: named, with the logged model to register again.
    client.delete_registered_model(name)
    (logged,) = client.search_logged_models(
        experiment_ids=[client.get_run(trained).info.experiment_id], filter_string=f"source_run_id='{trained}'"
    )

    out = promote(project, "--no-fetch", code=1)

    assert out.strip() == (
        f"Registered model {name!r} (params.yaml train.registered_model) is not in MLflow at {store}: deleted, with "
        f"{tag}'s version — register its logged model {logged.model_uri} as {name!r} again (mlflow.register_model), "
        "or promote another run."
    )
    chain = ok(invoke(project, "runs", "--run", tag, "--no-fetch"))
    assert model_lines(chain) == [f"  not shown: {out.strip()}"]


# -- refusals before any pipeline runs ----------------------------------------------------------------------------


def test_promote_refuses_an_unknown_run_and_one_without_results(dev, origin, tmp_path):
    waiting = tag_run(dev, "--name", "waiting")
    user = clone(origin, tmp_path / "user")

    unknown = promote(user, "--run", "run-nope", code=1)
    without = promote(user, "--run", waiting, code=1)
    default = promote(user, code=1)
    alias = promote(user, "--alias", "v2", code=1)

    assert "'run-nope' is neither a run tag nor a commit here — `invoke runs` lists the runs" in unknown
    assert without.strip() == (
        f"Run {waiting} has no results (waiting for results) — `invoke watch --run {waiting}` follows it; or name "
        "another run."
    )
    assert "No run of branch 'main' has results yet — name one (`invoke runs` lists them)" in default
    assert alias.strip() == (
        "'v2' cannot be an MLflow alias — use letters, digits, '_' and '-' (not 'latest' or 'v<number>', which "
        "MLflow reserves), e.g. champion or staging."
    )
    chain = ok(invoke(user, "runs", "--run", waiting, "--no-fetch"))
    assert model_lines(chain) == [
        f"  not shown: Run {waiting} has no results (waiting for results) — `invoke watch --run {waiting}` follows "
        "it; or name another run."
    ]


def test_promote_refuses_a_store_that_is_not_there_or_lacks_the_runs(dev, origin, tmp_path):
    from mlflow.tracking import MlflowClient

    tag = tag_run(dev)
    record_by_hand(origin, tmp_path / "runner", tag, "refs/heads/main", ["metrics/eval.json acc: 0.9"])
    user = clone(origin, tmp_path / "user")
    down = {**os.environ, "MLFLOW_TRACKING_URI": "http://ci:pw-secret-42@127.0.0.1:9"}

    unreachable = promote(user, "--run", tag, env=down, code=1)
    no_store = promote(user, "--run", tag, code=1)
    MlflowClient(tracking_uri=f"sqlite:///{user}/mlflow.db").search_experiments()  # an empty embedded store
    elsewhere = promote(user, "--run", tag, code=1)

    assert unreachable.strip() == (
        "MLflow at http://127.0.0.1:9 is unreachable ([Errno 111] Connection refused) — check MLFLOW_TRACKING_URI "
        "and that the tracking server is up."
    )
    assert "pw-secret-42" not in unreachable
    assert no_store.strip() == (
        f"There is no MLflow store at sqlite:///{user}/mlflow.db (no run logged to this clone's embedded store) — "
        "set MLFLOW_TRACKING_URI to the tracking server the runner logs to (see .env.example)."
    )
    assert elsewhere.strip() == (
        f"MLflow at sqlite:///{user}/mlflow.db has none of {tag}'s MLflow runs (0123456789abcdef0123456789abcdef) — "
        "point MLFLOW_URL (or MLFLOW_TRACKING_URI) at the tracking server its runner logged to."
    )
    chain = ok(invoke(user, "runs", "--run", tag, "--no-fetch", env=down))
    assert model_lines(chain) == [f"  not shown: {unreachable.strip()}"]
    assert "pw-secret-42" not in chain


# -- which results a run's model version belongs to ---------------------------------------------------------------


def _run(tag: str, commit: str, results: str | None = None, where: str | None = None) -> Run:
    outcome = records.Outcome(records.RESULTS, tag, commit) if results else None
    launch = records.Launch("", "main")
    return Run(tag, "2026-01-01T00:00:00+00:00", commit, launch, outcome, results=results, where=where)


def test_a_run_of_an_older_template_without_results_of_its_own_borrows_those_holding_them():
    first = _run("run-a", "c1", results="r1", where="main")
    second = _run("run-b", "c1")  # the same commit: share found main holding its results
    on_results = _run("run-c", "r1")  # tagged on first's results commit: dvc.lock unchanged
    elsewhere = _run("run-d", "c2")
    aside = _run("run-e", "c3", results="r3", where="results/run-e")
    late = _run("run-f", "c3")  # its branch never took run-e's results: they are not its own
    failed = Run("run-g", "", "c1", records.Launch("", "main"), records.Outcome(records.FAILED, "run-g", "c1"))
    runs = Runs(prefix="run-", known=[failed, late, aside, elsewhere, on_results, second, first])
    said: list[str] = []

    assert runs.with_results("run-a", say=said.append) is first
    assert runs.with_results("run-b", say=said.append) is first
    assert runs.with_results("run-c", say=said.append) is first
    assert said == [
        "run-b has no results commit of its own: run-a's (r1) holds its results",
        "run-c has no results commit of its own: run-a's (r1) holds its results",
    ]
    for tag, why in (("run-d", "waiting for results"), ("run-f", "waiting for results"), ("run-g", "failed")):
        with pytest.raises(RunNotFound, match=re.escape(f"Run {tag} has no results ({why}) — ")):
            runs.with_results(tag)


@pytest.mark.parametrize("alias", ["champion", "staging", "prod_2", "A-b"])
def test_check_alias_takes_what_mlflow_takes(alias):
    registry.check_alias(alias)


@pytest.mark.parametrize("alias", ["", "latest", "Latest", "v1", "V12", "has space", "a/b", "é", "x" * 256])
def test_check_alias_refuses_what_mlflow_would(alias):
    with pytest.raises(registry.Refused, match=re.escape(f"{alias!r} cannot be an MLflow alias — use letters")):
        registry.check_alias(alias)
