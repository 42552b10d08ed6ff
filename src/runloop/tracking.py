"""MLflow runs of the pipeline's stages, and the records that name them (`runs/<stage>.json`).

A stage that logs to MLflow does so inside `with stage_run("<stage>", "<experiment>"):`. mlflow is imported only
there, so tasks.py can read the records on every `invoke` call without paying for the import. Each run is tagged
with what made it (the commit, the launch, the machine and the runner that took the job) and logs MLflow's system
metrics while the stage runs (CPU, memory, disk, network; GPU utilisation where nvidia-ml-py is installed).
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from src.runloop import environment, machine
from src.runloop.environment import ROOT, redact
from src.runloop.git import Git
from src.runloop.stage import BadInput

log = logging.getLogger(__name__)

# Each stage that logs to MLflow writes `runs/<stage>.json` as an output of its own: when DVC restores the
# stage from its run cache, the stage does not execute, but this record comes back with the data and still
# names the MLflow run that produced it. Keeping it apart keeps data, model and metrics byte-identical.
RUNS_DIR = Path("runs")
# `invoke repro` sets these for the stages on CI: the runner that took the job and the class and labels the route
# job sent it to (ci.runner). Each becomes the MLflow tag it is listed under.
RUNNER_TAGS = {
    "runner.class": "RUN_RUNNER_CLASS",
    "runner.name": "RUN_RUNNER_NAME",
    "runner.labels": "RUN_RUNNER_LABELS",
}
# MLflow's own switch for system metrics: on unless this says "false" (MLflow samples every 10 s by default,
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL; a stage shorter than that logs none).
SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"


def run_tags(stage: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags that tie an MLflow run to the code and the launch that produced it."""
    git = Git(ROOT)
    commit = git("rev-parse", "HEAD")
    # DVC rewrites dvc.lock between stages: that is the run's own bookkeeping, not a change to the code.
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
    tags = {
        "stage": stage,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "git_dirty": None if dirty is None else str(bool(dirty)).lower(),
        # What `invoke repro` says of the launch: the run's tag and its CI run's page (none for a local run).
        "run_tag": environment.env_value(environment.RUN_TAG_ENV, env),
        "ci_run_url": environment.env_value(environment.RUN_CI_URL_ENV, env),
        # Packages the runner has beyond Pipfile.lock (left there by other jobs), as `invoke repro` found them.
        "python_extras": (environment.env_value(environment.PYTHON_EXTRAS_ENV, env) or "")[:5000] or None,
        # The machine the stage ran on: why a reproduction's bytes may differ (see machine.py).
        **{f"env.{key}": value for key, value in machine.describe().items()},
        **{tag: environment.env_value(name, env) for tag, name in RUNNER_TAGS.items()},
    }
    return {k: v for k, v in tags.items() if v is not None}


def runner_variables(runner: Any) -> dict[str, str]:
    """The RUNNER_TAGS variables for the stages, from a runner's name, class and labels (ci.Runner)."""
    values = {
        "RUN_RUNNER_CLASS": runner.runner_class,
        "RUN_RUNNER_NAME": runner.name,
        "RUN_RUNNER_LABELS": ", ".join(runner.labels),
    }
    return {name: value for name, value in values.items() if value}


def _system_metrics(env: Mapping[str, str] | None = None) -> bool:
    return (environment.env_value(SYSTEM_METRICS_ENV, env) or "true").lower() not in ("false", "0", "no")


def locked_requirements(*names: str, lock: Path | None = None) -> list[str]:
    """`name==version` of each distribution as Pipfile.lock pins it: a logged model's pip requirements.

    MLflow would otherwise guess them by importing the model's modules: slow, and not the locked versions.
    """
    packages = json.loads((lock or ROOT / "Pipfile.lock").read_text())["default"]
    missing = [n for n in names if n not in packages]
    if missing:
        raise BadInput(f"Pipfile.lock pins no {', '.join(missing)} — add it to the Pipfile and run `pipenv lock`")
    return [f"{n}{packages[n]['version']}" for n in names]


def register_model(model_uri: str, name: str, run: Any) -> Any:
    """A new version of registered model `name` from `model_uri`, tied to `run`'s tag and commit.

    Called only when the stage executes: a stage restored from the run cache registers nothing, and its record
    (runs/<stage>.json) names the run whose version it is (MLflow links a version to its run).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    tags = run.data.tags
    wanted = {"run_tag": tags.get("run_tag"), "git_commit": tags.get("git_commit")}
    version = mlflow.register_model(model_uri, name, tags={k: v for k, v in wanted.items() if v})
    launch = f"run tag {wanted['run_tag']}" if wanted["run_tag"] else "a run without a tag (a local `invoke repro`)"
    ci = f"; CI run {tags['ci_run_url']}" if tags.get("ci_run_url") else ""
    description = (
        f"Made by MLflow run {run.info.run_id} (stage {tags.get('stage')}) of {launch}, "
        f"at commit {wanted['git_commit']}{ci}."
    )
    MlflowClient().update_model_version(name, version.version, description=description)
    log.info("Registered model %s version %s", name, version.version)
    return version


def read_record(path: Path) -> dict[str, Any] | None:
    """A stage's run record, or None when there is none (the stage never ran here or failed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_run_record(path: str) -> bool:
    """Whether an output path is a stage's run record, `runs/<stage>.json`."""
    parts = Path(path).parts
    return len(parts) == 2 and parts[0] == RUNS_DIR.name and parts[1].endswith(".json")


def _experiment_id(mlflow: Any, name: str, uri: str) -> str:
    """The id of the active experiment `name`, created when missing (also when another run creates it first)."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise BadInput(
                f"MLflow experiment {name!r} is deleted at {redact(uri)} — restore it in MLflow, or name another "
                "experiment in params.yaml"
            )
        return experiment.experiment_id
    # A sqlite store would put artifacts in ./mlruns of whatever the working directory is: keep them beside the
    # database instead (for the embedded store: the project's mlartifacts/). A server decides for itself.
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / environment.LOCAL_ARTIFACTS).as_uri()
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


def _end_killed(mlflow: Any) -> None:
    """Mark the active run KILLED (Ctrl-C, or a cancelled job's SIGINT/SIGTERM) instead of leaving it RUNNING."""
    # A second signal (GitHub sends SIGTERM after SIGINT) must not cut this last request short.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    try:
        mlflow.end_run(status="KILLED")
    except Exception as exc:  # noqa: BLE001 - the server may be what went away; the interrupt is the news
        log.warning("Could not mark the MLflow run KILLED: %s", environment.one_line(environment.scrub(str(exc))))


@contextmanager
def stage_run(
    stage: str, experiment: str, root: Path = ROOT, after: str | None = None, params: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """A new MLflow run for one execution of `stage`, with `params` logged; on success it is recorded.

    `after` names the upstream stage whose run produced this stage's input (evaluate runs after train): when
    that run is in the same store, this run is nested under it, so the model's run shows its evaluations.
    """
    environment.quiet()
    import mlflow

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop lines: noise per stage

    uri = environment.tracking_uri(root=root)
    mlflow.set_tracking_uri(uri)
    experiment_id = _experiment_id(mlflow, experiment, uri)
    tags = run_tags(stage)
    if after and (parent := _reachable(mlflow, read_record(root / RUNS_DIR / f"{after}.json"), uri)):
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment_id, tags=tags, log_system_metrics=_system_metrics()) as run:
        try:
            mlflow.log_params(dict(params or {}))
            yield run
        except KeyboardInterrupt:
            _end_killed(mlflow)
            raise
    info = run.info
    record = {"stage": stage, "run_id": info.run_id, "experiment_id": info.experiment_id, "tracking_uri": redact(uri)}
    (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    (root / RUNS_DIR / f"{stage}.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("MLflow run %s (experiment %s) at %s", info.run_id, experiment, redact(uri))
