"""The MLflow Model Registry seen from a run: the model versions its MLflow runs registered, and promoting one.

A stage registers a version only when it executes (tracking.register_model); restored from the run cache it
registers nothing, and its record names the MLflow run whose version it is. The results commit's `MLflow-Run`
trailers copy those records, so the versions of a run are the versions MLflow links to the runs they name, found
the same way whether the run computed its model or restored it.

    check_alias(alias)                      refuse an alias MLflow would refuse, before anything is asked
    connect(env)                            a client of the configured store, after a check with a short timeout
    produced(client, run, git, env)         the newest version of each registered model the run's MLflow runs made
    promote(client, version, alias, run)    tag the version with the results commit, then point the alias at it
    section(runs, env, run)                 `invoke runs --run`: the run's model versions and their aliases

Every failure is a `Refused` whose message is one line, safe to print: what is wrong, and what to do.
mlflow is imported inside the functions: `invoke --list` never pays for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from src.runloop import environment, mlflow_server
from src.runloop.git import Git
from src.runloop.refusal import Refused as _Refused
from src.runloop.runs import Run, RunNotFound, Runs

DEFAULT_ALIAS = "champion"
# The params.yaml key naming a stage's registered model (params.yaml's `train: registered_model:`).
PARAM = "registered_model"
# Tags promote puts on the version: where the results it belongs to are in git.
RESULTS_COMMIT, RESULTS_BRANCH = "results_commit", "results_branch"
# MLflow's rules for an alias (letters, digits, `_`, `-`; `latest` and `v<N>` are its own), in ASCII.
ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
RESERVED = re.compile(r"latest|[vV]\d+", re.IGNORECASE)
RUN_ID = re.compile(r"[0-9a-zA-Z_-]{1,64}")
# The client's retries, once the store has answered a check: a few, not MLflow's four minutes of them.
CLIENT_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class Refused(_Refused):
    """Why there is nothing to promote or show, and what to do (one line, no secret)."""


def check_alias(alias: str) -> None:
    if not ALIAS.fullmatch(alias) or RESERVED.fullmatch(alias):
        raise Refused(
            f"{alias!r} cannot be an MLflow alias — use letters, digits, '_' and '-' (not 'latest' or 'v<number>', "
            "which MLflow reserves), e.g. champion or staging."
        )


@contextmanager
def speaking(env: Mapping[str, str]) -> Iterator[None]:
    """Turn what MLflow raises (its messages quote URLs, credentials included) into a Refused line."""
    try:
        yield
    except _Refused:  # already one line: this module's, or the machinery's (a store's, a run's)
        raise
    except Exception as exc:  # noqa: BLE001 - MlflowException, requests' errors, boto's: each becomes one line
        said = environment.one_line(environment.scrub(str(exc), env), 240)
        raise Refused(
            f"MLflow at {shown(env)} failed: {said} — check the server (and its log), then try again."
        ) from None


def shown(env: Mapping[str, str]) -> str:
    return environment.redact(environment.tracking_uri(env))


def connect(env: Mapping[str, str]) -> Any:
    """An MlflowClient for the store MLflow runs are logged to, once a check shows it is there and answers."""
    uri = environment.tracking_uri(env)
    where = "MLFLOW_URL" if environment.env_value("MLFLOW_URL", env) else "MLFLOW_TRACKING_URI"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise Refused(
            f"There is no MLflow store at {uri} (no run logged to this clone's embedded store) — set {where} to the "
            "tracking server the runner logs to (see .env.example)."
        )
    if uri.startswith(("http://", "https://")):
        try:
            mlflow_server.check(uri, [], env, create=False)
        except mlflow_server.Unusable as exc:
            raise Refused(str(exc) + ".") from None
    environment.quiet()
    for name, value in CLIENT_SETTINGS.items():
        os.environ.setdefault(name, value)
    with speaking(env):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri)


def produced(client: Any, run: Run, git: Git, env: Mapping[str, str]) -> list[Any]:
    """The newest version of each registered model that `run`'s MLflow runs registered; Refused says why none."""
    ids = [i for i in run.mlflow_runs if RUN_ID.fullmatch(i)]
    if not ids:
        raise Refused(
            f"The results commit {run.results[:12]} of {run.tag} names no MLflow run (no MLflow-Run trailer): its "
            "stages logged nothing to MLflow, so no model version comes from it — promote a run whose stages do."
        )
    with speaking(env):
        if not any(_has_run(client, i) for i in ids):
            raise Refused(
                f"MLflow at {shown(env)} has none of {run.tag}'s MLflow runs ({', '.join(ids)}) — point MLFLOW_URL "
                "(or MLFLOW_TRACKING_URI) at the tracking server its runner logged to."
            )
        found = [v for i in ids for v in client.search_model_versions(f"run_id='{i}'")]
        if not found:
            raise Refused(_why_none(client, run, git, env, ids))
        newest: dict[str, Any] = {}
        for v in found:
            if v.name not in newest or int(v.version) > int(newest[v.name].version):
                newest[v.name] = v
        return [newest[name] for name in sorted(newest)]


def _has_run(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _why_none(client: Any, run: Run, git: Git, env: Mapping[str, str], ids: list[str]) -> str:
    """Why the run's MLflow runs have no version: a deleted registered model params.yaml names, or none made."""
    from mlflow.exceptions import MlflowException

    for key, name in registered_names(git, run.commit).items():
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            logged = _logged_models(client, ids)
            again = f"register its logged model {logged[0]} as {name!r} again" if logged else "run the pipeline again"
            return (
                f"Registered model {name!r} (params.yaml {key}) is not in MLflow at {shown(env)}: deleted, with "
                f"{run.tag}'s version — {again} (mlflow.register_model), or promote another run."
            )
    return (
        f"{run.tag}'s MLflow runs ({', '.join(ids)}) registered no model version in MLflow at {shown(env)} — its "
        "pipeline registers none (a stage calls tracking.register_model when it executes), or the version was "
        "deleted: promote a run that registered one (`invoke runs --run RUN` shows its versions)."
    )


def _logged_models(client: Any, ids: list[str]) -> list[str]:
    """The `models:/<id>` URIs of the models the MLflow runs logged (what a registered version points at)."""
    found = []
    for i in (i for i in ids if _has_run(client, i)):
        experiment = client.get_run(i).info.experiment_id
        found += client.search_logged_models(experiment_ids=[experiment], filter_string=f"source_run_id='{i}'")
    return [m.model_uri for m in found]


def registered_names(git: Git, commit: str) -> dict[str, str]:
    """The registered models params.yaml names at `commit`: `<section>.registered_model` → the model's name."""
    import yaml

    try:
        params = yaml.safe_load(git("show", f"{commit}:params.yaml") or "") or {}
    except yaml.YAMLError:
        return {}
    sections = params.items() if isinstance(params, dict) else []
    named = {f"{key}.{PARAM}": values.get(PARAM) for key, values in sections if isinstance(values, dict)}
    return {key: name for key, name in named.items() if isinstance(name, str) and name}


def previous_holder(client: Any, name: str, alias: str) -> str | None:
    """The version `alias` points at now, if any."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def promote(client: Any, version: Any, alias: str, run: Run) -> None:
    """Tag `version` with the results commit and its branch, then point `alias` at it.

    The tags go first: the alias never points at a version that does not say which results it belongs to.
    """
    client.set_model_version_tag(version.name, version.version, RESULTS_COMMIT, run.results)
    client.set_model_version_tag(version.name, version.version, RESULTS_BRANCH, run.where or "")
    client.set_registered_model_alias(version.name, alias, version.version)


def uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def section(runs: Runs, env: Mapping[str, str], run: Run) -> str:
    """`invoke runs --run`: the run's model versions with their aliases, or why they cannot be shown."""
    head = "Model versions (MLflow Model Registry):"
    lines = [head]
    try:
        shared = runs.with_results(run.tag, say=lambda text: lines.append(f"  ({text})"))
        client = connect(env)
        versions = produced(client, shared, runs.git, env)
        with speaking(env):
            rows = [(v, client.get_model_version(v.name, v.version)) for v in versions]
    except (Refused, RunNotFound) as exc:
        return "\n".join([*lines, f"  not shown: {exc}"])
    for v, full in rows:
        aliases = ", ".join(sorted(full.aliases)) or "no alias"
        lines.append(
            f"  {v.name} version {v.version}  aliases: {aliases}  (MLflow run {v.run_id}; models:/{v.name}/{v.version})"
        )
    return "\n".join(lines)
