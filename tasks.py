"""The run loop: tag a commit, reproduce the pipeline on the runner, commit and push its results.

    invoke tag-run   tag HEAD as a run and push only that tag; the tag starts the workflow on the runner
    invoke repro     (on the runner) run the DVC pipeline; the stages log to MLflow
    invoke share     (on the runner) push the data, commit dvc.lock as "<subject>-results", push the commit

Every value that comes from outside (tag and branch names, commit subjects, URLs) reaches a command as a
quoted argument, never as shell text. Nothing here force-pushes, and data always goes out before the git ref
that points at it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from invoke import Context, Exit, task

from src.example import config

# The workflow runs for tags that start with this (its `on.push.tags` filter is TAG_PREFIX + "*").
TAG_PREFIX = "run-example"
WORKFLOW = Path(".github/workflows/github_actions_pipeline.yml")
RESULTS_SUFFIX = "-results"
# Where results go when the tag's branch moved on before they could land on it.
RESULTS_BRANCH_PREFIX = "results/"
DVC_REMOTE = "storage"  # the default remote named in .dvc/config
# Variables a CI run needs, and where a team sets each one in the repository settings.
CI_SETTINGS = {
    "MLFLOW_URL": "repository variable MLFLOW_URL",
    "MLFLOW_S3_ENDPOINT_URL": "repository variable MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID": "secret MINIO_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "secret MINIO_SECRET_ACCESS_KEY",
    "ACCESS_TOKEN": "secret ACCESS_TOKEN",
}
TRAILERS = ("Run-Tag", "Run-Commit", "MLflow-Run", "CI-Run")
DVC = [sys.executable, "-m", "dvc"]


# -- helpers ----------------------------------------------------------------------------------------------------


def _run(c: Context, *args: str, **kwargs):
    """Run a command given as arguments (quoted here, so no value is ever read as shell syntax)."""
    kwargs.setdefault("hide", True)
    kwargs.setdefault("warn", True)
    return c.run(shlex.join(args), **kwargs)


def _git(c: Context, *args: str) -> str | None:
    """Output of a git probe, or None when git says no."""
    result = _run(c, "git", *args)
    return result.stdout.strip() if result.ok else None


def _must(c: Context, what: str, *args: str, **kwargs) -> str:
    """Run a step that has to work; on failure stop with what failed and git's or DVC's own words."""
    result = _run(c, *args, **kwargs)
    if not result.ok:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
        raise Exit(f"{what} failed: {' / '.join(detail) or 'no output'}", code=1)
    return result.stdout.strip() if result.stdout else ""


def _environment() -> dict[str, str]:
    """The environment the pipeline runs in: `.env` read in (real variables win) and the tracking URI fixed."""
    config.load_dotenv()
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = config.tracking_uri(env)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    # Stages run `python`: make it this interpreter even when the venv is not activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _on_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def _require_ci_settings(env: Mapping[str, str]) -> None:
    """On GitHub Actions, stop at once if a variable or secret the run needs is missing."""
    missing = [name for name in CI_SETTINGS if not config.env_value(name, env)]
    if missing:
        where = ", ".join(f"{n} (from {CI_SETTINGS[n]})" for n in missing)
        raise Exit(
            f"Missing on this runner: {where} — set them in the repository's Settings → Secrets and variables "
            "→ Actions (see the README's environment table).",
            code=1,
        )


def _remote_settings(env: Mapping[str, str]) -> dict[str, str | None]:
    """The DVC remote's machine-specific settings, from the environment only."""
    return {
        "endpointurl": config.env_value("DVC_REMOTE_ENDPOINT_URL", env)
        or config.env_value("MLFLOW_S3_ENDPOINT_URL", env),
        "url": config.env_value("DVC_REMOTE_URL", env),
    }


def _has_remote(env: Mapping[str, str]) -> bool:
    """A DVC remote counts as configured when an S3 endpoint or S3 credentials are in the environment."""
    return bool(_remote_settings(env)["endpointurl"] or config.env_value("AWS_ACCESS_KEY_ID", env))


def _configure_remote(c: Context, env: Mapping[str, str]) -> None:
    """Write the endpoint (and any bucket override) to .dvc/config.local: untracked, and never a secret."""
    for key, value in _remote_settings(env).items():
        if value:
            _must(c, f"Setting the DVC remote's {key}", *DVC, "remote", "modify", "--local", DVC_REMOTE, key, value)
        else:
            _run(c, *DVC, "remote", "modify", "--local", "--unset", DVC_REMOTE, key)


def _head_run_tag(c: Context, env: Mapping[str, str]) -> str | None:
    """The run tag of this checkout: the pushed tag on CI, else the newest run tag pointing at HEAD."""
    from src.example.tracking import run_tag

    if tag := run_tag(env):
        return tag
    tags = _git(c, "tag", "--points-at", "HEAD", "--list", f"{TAG_PREFIX}*", "--sort=-creatordate")
    return tags.splitlines()[0] if tags else None


def _run_records() -> list[dict]:
    """The MLflow runs recorded by the pipeline's outputs (present also when DVC restored the stages)."""
    from src.example.tracking import read_record

    records = [read_record(config.ROOT / p) for p in (config.TRAIN_RUN, config.EVALUATE_RUN)]
    return [r for r in records if r]


def _run_link(record: Mapping[str, str]) -> str:
    uri = record["tracking_uri"]
    if config.is_local_store(uri):
        return f"run {record['run_id']} in {uri} (browse: mlflow ui --backend-store-uri {uri})"
    return f"{uri.rstrip('/')}/#/experiments/{record['experiment_id']}/runs/{record['run_id']}"


# -- repro ------------------------------------------------------------------------------------------------------


@task(
    help={
        "pull": "Pull cached results from the DVC remote first (default: when a remote is configured).",
        "force": "Re-run every stage, even those DVC considers up to date.",
    }
)
def repro(c: Context, pull: bool | None = None, force: bool = False) -> None:
    """Run the DVC pipeline (stages log to MLflow) and say where the results are."""
    env = _environment()
    if _on_actions(env):
        _require_ci_settings(env)
    if tag := _head_run_tag(c, env):
        env["RUN_TAG"] = tag
    remote = _has_remote(env) if pull is None else pull
    if remote:
        _configure_remote(c, env)
    cmd = [*DVC, "repro", *(["--pull"] if remote else []), *(["--force"] if force else [])]
    print(f"$ {shlex.join(['dvc', *cmd[3:]])}", flush=True)
    if not c.run(shlex.join(cmd), env=env, warn=True, pty=False).ok:
        raise Exit("The pipeline failed (DVC's message is above) — fix the failing stage and run again.", code=1)
    _report(c, env, remote)


def _report(c: Context, env: Mapping[str, str], remote: bool) -> None:
    print("\nResults")
    metrics = _run(c, *DVC, "metrics", "show", env=env)
    print(metrics.stdout.rstrip() if metrics.ok else "  (no metrics)")
    for record in _run_records():
        print(f"MLflow [{record['stage']}]: {_run_link(record)}")
    if not _run_records():
        print(f"MLflow: {config.redact(env['MLFLOW_TRACKING_URI'])}")
    where = "the DVC remote, after `invoke share`" if remote else "the local DVC cache (.dvc/cache), no remote"
    print(f"Data and models: {config.ROOT} (outputs listed in dvc.yaml); shared through {where}.")
