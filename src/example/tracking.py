"""MLflow for the stages: where runs go, how they are tagged, and the run record each logging stage outputs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from src.example import config

log = logging.getLogger(__name__)

# `invoke repro` sets this to the run's tag (on CI the pushed tag; locally a run tag pointing at HEAD).
RUN_TAG_ENV = "RUN_TAG"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=config.ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def ci_run_url(env: Mapping[str, str] | None = None) -> str | None:
    """The GitHub Actions run's page, when running on Actions."""
    parts = [config.env_value(n, env) for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server}/{repository}/actions/runs/{run_id}"


def run_tag(env: Mapping[str, str] | None = None) -> str | None:
    """The tag that launched this run: RUN_TAG, else the pushed tag on GitHub Actions."""
    if tag := config.env_value(RUN_TAG_ENV, env):
        return tag
    if (config.env_value("GITHUB_REF", env) or "").startswith("refs/tags/"):
        return config.env_value("GITHUB_REF_NAME", env)
    return None


def run_tags(stage: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags that tie an MLflow run to the code and the launch that produced it."""
    commit = _git("rev-parse", "HEAD") or config.env_value("GITHUB_SHA", env)
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        "stage": stage,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "git_dirty": None if dirty is None else str(bool(dirty)).lower(),
        "run_tag": run_tag(env),
        "ci_run_url": ci_run_url(env),
    }
    return {k: v for k, v in tags.items() if v is not None}


def read_record(path: Path) -> dict[str, Any] | None:
    """A stage's run record, or None when there is none (the stage never ran here or failed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _experiment_id(mlflow: Any, name: str, uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A sqlite store would put artifacts in ./mlruns of whatever the working directory is: keep them beside the
    # database instead (for the embedded store: the project's mlartifacts/). A server decides for itself.
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / config.LOCAL_ARTIFACTS).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _resumable(
    mlflow: Any, record: dict[str, Any] | None, uri: str, params: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """(run to log into, run to nest under) for a stage that follows the run named by `record`.

    The recorded run is resumed when it lives in the current tracking store and its params agree with `params`
    (MLflow refuses to change a logged param). With other params, the stage gets a run of its own, nested
    under the recorded one; with no reachable record, a run of its own.
    """
    if not record or record.get("tracking_uri") != config.redact(uri):
        return None, None
    try:
        run = mlflow.get_run(record["run_id"])
    except Exception:  # noqa: BLE001 - deleted, or a store that never had it: log to a new run instead
        return None, None
    logged = run.data.params
    if any(name in logged and logged[name] != str(value) for name, value in params.items()):
        return None, run.info.run_id
    return run.info.run_id, None


@contextmanager
def stage_run(
    stage: str, experiment: str, record: Path, resume: Path | None = None, params: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """An MLflow run for `stage`, with `params` logged; on success its id is written to `record`.

    With `resume`, the stage logs into the run named by that earlier stage's record (evaluate adds its test
    metrics to the run that trained the model); see `_resumable` for when it gets a run of its own instead.
    """
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = config.tracking_uri()
    mlflow.set_tracking_uri(uri)
    experiment_id = _experiment_id(mlflow, experiment, uri)
    params = dict(params or {})
    run_id, parent = _resumable(mlflow, read_record(resume), uri, params) if resume else (None, None)
    tags = run_tags(stage)
    if run_id:
        tags = {f"{stage}.{k}": v for k, v in tags.items() if k != "mlflow.source.git.commit"}
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(params)
        yield run
    info = run.info
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps(
            {
                "stage": stage,
                "run_id": info.run_id,
                "experiment_id": info.experiment_id,
                "tracking_uri": config.redact(uri),
            },
            indent=2,
        )
        + "\n"
    )
    log.info("MLflow run %s (experiment %s) at %s", info.run_id, experiment, config.redact(uri))
