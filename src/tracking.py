"""Run-loop machinery shared by tasks.py and the pipeline's stages: environment, MLflow runs and their records.

Keep this module when you replace the example pipeline (src/example/) with yours. It is cheap to import on
purpose: tasks.py reads it on every `invoke` call, so mlflow is imported only inside `stage_run`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
# Each stage that logs to MLflow writes `runs/<stage>.json` as an output of its own: when DVC restores the
# stage from its run cache, the stage does not execute, but this record comes back with the data and still
# names the MLflow run that produced it. Keeping it apart keeps data, model and metrics byte-identical.
RUNS_DIR = Path("runs")
# Embedded MLflow store, used when no server is configured (both gitignored).
LOCAL_MLFLOW_DB = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"
# `invoke repro` sets this to the run's tag (on CI the pushed tag; locally a run tag pointing at HEAD).
RUN_TAG_ENV = "RUN_TAG"
# The tools' telemetry off for the project's own runs (MLflow reads its switch when it is imported), and no
# "View run at <tracking URI>" lines from MLflow: a URI may carry credentials; tasks print redacted links.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


# -- environment ------------------------------------------------------------------------------------------------


def quiet() -> None:
    """Turn the tools' telemetry off for this process and its children, unless the environment says otherwise."""
    os.environ.update({k: v for k, v in QUIET.items() if k not in os.environ})


def load_dotenv(root: Path | None = None) -> None:
    """Read `<root>/.env` (the project's by default) into os.environ; variables already set win."""
    from dotenv import load_dotenv as _load

    _load((root or ROOT) / ".env", override=False)


def env_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, with an empty string counted as unset (as `.env.example` leaves them)."""
    value = (os.environ if env is None else env).get(name, "").strip()
    return value or None


def embedded_tracking_uri(root: Path = ROOT) -> str:
    """The MLflow store inside the project, used when no server is configured."""
    return f"sqlite:///{root / LOCAL_MLFLOW_DB}"


def tracking_uri(env: Mapping[str, str] | None = None, root: Path = ROOT) -> str:
    """MLflow tracking URI: MLFLOW_URL (the runner's name), else MLFLOW_TRACKING_URI, else the embedded store."""
    return env_value("MLFLOW_URL", env) or env_value("MLFLOW_TRACKING_URI", env) or embedded_tracking_uri(root)


def is_local_store(uri: str) -> bool:
    """True for a store on this machine (sqlite or a folder), False for a tracking server."""
    # "databricks" alone (no scheme) is MLflow's name for the default Databricks workspace.
    return uri != "databricks" and urlsplit(uri).scheme not in ("http", "https", "databricks")


def redact(uri: str) -> str:
    """The URI without any user:password part, safe to print or store."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]  # keeps an IPv6 address's brackets and the port
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def ci_run_url(env: Mapping[str, str] | None = None) -> str | None:
    """The GitHub Actions run's page, when running on Actions."""
    parts = [env_value(n, env) for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server}/{repository}/actions/runs/{run_id}"


def run_tag(env: Mapping[str, str] | None = None) -> str | None:
    """The tag that launched this run: RUN_TAG, else the pushed tag on GitHub Actions."""
    if tag := env_value(RUN_TAG_ENV, env):
        return tag
    if (env_value("GITHUB_REF", env) or "").startswith("refs/tags/"):
        return env_value("GITHUB_REF_NAME", env)
    return None


# -- MLflow runs ------------------------------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def run_tags(stage: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags that tie an MLflow run to the code and the launch that produced it."""
    commit = _git("rev-parse", "HEAD") or env_value("GITHUB_SHA", env)
    # DVC rewrites dvc.lock between stages: that is the run's own bookkeeping, not a change to the code.
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
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


def run_records(root: Path = ROOT) -> list[dict[str, Any]]:
    """Every run record the pipeline's outputs hold (present also when DVC restored the stages)."""
    records = (read_record(p) for p in sorted((root / RUNS_DIR).glob("*.json")))
    return [r for r in records if r and {"stage", "run_id", "experiment_id", "tracking_uri"} <= r.keys()]


def _experiment_id(mlflow: Any, name: str, uri: str) -> str:
    """The id of the active experiment `name`, created when missing (also when another run creates it first)."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} is deleted at {redact(uri)} — restore it in MLflow, or name another "
                "experiment in params.yaml"
            )
        return experiment.experiment_id
    # A sqlite store would put artifacts in ./mlruns of whatever the working directory is: keep them beside the
    # database instead (for the embedded store: the project's mlartifacts/). A server decides for itself.
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / LOCAL_ARTIFACTS).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(name).experiment_id  # a concurrent run created it a moment ago


def _reachable(mlflow: Any, record: dict[str, Any] | None, uri: str) -> str | None:
    """The recorded run's id if that run lives in the current tracking store."""
    if not record or record.get("tracking_uri") != redact(uri):
        return None
    try:
        return mlflow.get_run(record["run_id"]).info.run_id
    except Exception:  # noqa: BLE001 - deleted, or a store that never had it: nothing to link to
        return None


@contextmanager
def stage_run(
    stage: str, experiment: str, root: Path = ROOT, after: str | None = None, params: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """A new MLflow run for one execution of `stage`, with `params` logged; on success it is recorded.

    `after` names the upstream stage whose run produced this stage's input (evaluate runs after train): when
    that run is in the same store, this run is nested under it, so the model's run shows its evaluations.
    """
    quiet()
    import mlflow

    uri = tracking_uri(root=root)
    mlflow.set_tracking_uri(uri)
    experiment_id = _experiment_id(mlflow, experiment, uri)
    tags = run_tags(stage)
    if after and (parent := _reachable(mlflow, read_record(root / RUNS_DIR / f"{after}.json"), uri)):
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params(dict(params or {}))
        yield run
    info = run.info
    record = {"stage": stage, "run_id": info.run_id, "experiment_id": info.experiment_id, "tracking_uri": redact(uri)}
    (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    (root / RUNS_DIR / f"{stage}.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("MLflow run %s (experiment %s) at %s", info.run_id, experiment, redact(uri))
