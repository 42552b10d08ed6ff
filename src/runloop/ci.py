"""The CI host a run executes on: GitHub Actions. Every fact the machinery takes from the host's variables is read
here, so another host would be one more module with these names, not edits all over the package.

    on_ci(env)                  whether this process runs as a CI job
    run_tag(env)                the tag that launched the run (RUN_TAG wins: `invoke repro` passes it to stages)
    run_url(env)                the CI run's page
    attempt(env)                which attempt of the CI run this is (GitHub's "Re-run jobs" counts up)
    actor(env), sha(env)        who pushed the tag; the commit the job checked out
    summary_file(env)           where a job writes its summary (Markdown)
    temp_dir(env)               a folder the host empties after the job (the steps' logs go there)
    tool_cache(env)             a folder the runner keeps between jobs (its tool cache)
    runner(env)                 the runner that took the job: its name, and the class and labels it was sent to
    set_output(env, name, v)    a step's output, for the jobs that need this one
    add_path(env, folder)       a folder put first on PATH for the job's later steps
    repository(env, url)        owner/name of the repository
    workflow_page(url, file)    the page that lists a workflow's runs
    longest_run(workflow)       how long after its tag a run may still be going: queued, then the job's timeout
    SETTINGS, missing_settings  what a CI run needs set, and where a team sets each one

Standard library only: the failure record reads it on a runner where nothing was installed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from src.runloop import environment, push_credential

NAME = "GitHub Actions"
# Variables a CI run needs, and where a team sets each one in the repository's settings.
SETTINGS = {
    "MLFLOW_URL": "repository variable MLFLOW_URL",
    "MLFLOW_S3_ENDPOINT_URL": "repository variable MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID": "secret MINIO_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "secret MINIO_SECRET_ACCESS_KEY",
    push_credential.VARIABLE: f"secret {push_credential.VARIABLE}",
}
# What stands in for a setting that has an alternative: the push token's is a GitHub App's expiring token.
ALTERNATIVES = {
    push_credential.VARIABLE: f"or a GitHub App: repository variable {push_credential.APP_CLIENT_ID} and secret "
    f"{push_credential.APP_PRIVATE_KEY}",
}
# The host's own variables: a throwaway environment (services.isolated) drops every one of them.
PREFIX = "GITHUB_"
# What the workflow's run job gets from its route job (route.py): the runner class and its runs-on labels (JSON).
RUNNER_CLASS, RUNNER_LABELS = "RUNLOOP_RUNNER_CLASS", "RUNLOOP_RUNNER_LABELS"
# GitHub cancels a job that waited this long for a self-hosted runner; and, without `timeout-minutes`, one that ran
# this long (its documented limits).
QUEUE_HOURS = 24
JOB_MINUTES = 360
_GITHUB = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)([\w.-]+/[\w.-]+?)(?:\.git)?/?$"
)


def _value(name: str, env: Mapping[str, str] | None) -> str | None:
    return environment.env_value(name, env)


def on_ci(env: Mapping[str, str] | None = None) -> bool:
    return _value("GITHUB_ACTIONS", env) == "true"


def run_tag(env: Mapping[str, str] | None = None) -> str | None:
    """The tag that launched this run: RUN_TAG, else the pushed tag."""
    if tag := _value(environment.RUN_TAG_ENV, env):
        return tag
    if (_value("GITHUB_REF", env) or "").startswith("refs/tags/"):
        return _value("GITHUB_REF_NAME", env)
    return None


def run_url(env: Mapping[str, str] | None = None) -> str | None:
    """The CI run's page, when running as a CI job."""
    parts = [_value(n, env) for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server}/{repository}/actions/runs/{run_id}"


def attempt(env: Mapping[str, str] | None = None) -> int | None:
    value = _value("GITHUB_RUN_ATTEMPT", env) or ""
    return int(value) if value.isdigit() else None


def job_token(env: Mapping[str, str] | None = None) -> str | None:
    """The job's own token (GITHUB_TOKEN, which the workflow gives the share step alone): pushes made with it start
    no workflow, so it comments on pull requests and never pushes results."""
    return _value("GITHUB_TOKEN", env)


def actor(env: Mapping[str, str] | None = None) -> str | None:
    return _value("GITHUB_ACTOR", env)


def sha(env: Mapping[str, str] | None = None) -> str | None:
    return _value("GITHUB_SHA", env)


def summary_file(env: Mapping[str, str] | None = None) -> str | None:
    return _value("GITHUB_STEP_SUMMARY", env)


def temp_dir(env: Mapping[str, str] | None = None) -> Path | None:
    value = _value("RUNNER_TEMP", env)
    return Path(value) if value else None


def tool_cache(env: Mapping[str, str] | None = None) -> Path | None:
    """The runner's tool cache: a folder it keeps from one job to the next (GitHub's RUNNER_TOOL_CACHE)."""
    value = _value("RUNNER_TOOL_CACHE", env)
    return Path(value) if value else None


@dataclass(frozen=True)
class Runner:
    """The runner that took the job: its name, and the runner class and labels the route job sent the run to."""

    name: str | None = None
    runner_class: str | None = None
    labels: tuple[str, ...] = ()


def runner(env: Mapping[str, str] | None = None) -> Runner:
    """The runner of this job, as far as the host and the route job tell (nothing of it off CI)."""
    if not on_ci(env):
        return Runner()
    text = _value(RUNNER_LABELS, env) or ""
    try:
        labels = json.loads(text) if text.startswith("[") else [label.strip() for label in text.split(",")]
    except ValueError:
        labels = []
    return Runner(
        _value("RUNNER_NAME", env),
        _value(RUNNER_CLASS, env),
        tuple(str(label) for label in labels if str(label).strip()),
    )


def set_output(env: Mapping[str, str], name: str, value: str) -> None:
    """Set the running step's output `name` (the job's outputs pass it on to the jobs that need it)."""
    path = _value("GITHUB_OUTPUT", env)
    if not path:
        return
    if "\n" in value or "\r" in value:
        raise ValueError(f"a step output is one line, not {value!r}")
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{name}={value}\n")


def add_path(env: Mapping[str, str], folder: Path) -> None:
    """Put `folder` first on PATH for the job's later steps (this step's own PATH stays as it is)."""
    if path := _value("GITHUB_PATH", env):
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{folder}\n")


def repository(env: Mapping[str, str] | None, remote_url: str | None) -> str | None:
    """owner/name of the repository: GITHUB_REPOSITORY, else the remote's URL on github.com."""
    if named := _value("GITHUB_REPOSITORY", env):
        return named
    match = _GITHUB.match(remote_url or "")
    return match.group(1) if match else None


def workflow_page(remote_url: str | None, workflow: str) -> str | None:
    """The page listing `workflow`'s runs, for a remote on github.com (https or ssh form), else None."""
    match = _GITHUB.match(remote_url or "")
    return f"https://github.com/{match.group(1)}/actions/workflows/{workflow}" if match else None


def longest_run(workflow: Path) -> float:
    """Seconds a run may still be going after its tag was pushed: queued for a runner, then its jobs' timeout (the
    longest `timeout-minutes` of the workflow file, or GitHub's default)."""
    try:
        text = workflow.read_text(encoding="utf-8")
    except OSError:
        text = ""
    minutes = [int(m) for m in re.findall(r"^\s*timeout-minutes:\s*(\d+)\s*(?:#.*)?$", text, flags=re.MULTILINE)]
    return QUEUE_HOURS * 3600 + max(minutes or [JOB_MINUTES]) * 60


def missing_settings(env: Mapping[str, str]) -> str | None:
    """The message naming every variable and secret a CI run needs that is not set, or None."""
    missing = [name for name in SETTINGS if not _is_set(name, env)]
    if not missing:
        return None
    where = ", ".join(f"{n} (from {SETTINGS[n]}{', ' + ALTERNATIVES[n] if n in ALTERNATIVES else ''})" for n in missing)
    return (
        f"Missing on this runner: {where} — set them in the repository's Settings → Secrets and variables "
        "→ Actions (docs/environment.md lists them)."
    )


def settings_named(kind: str) -> list[str]:
    """The names a team gives in the host's settings, of one kind: "secret" or "repository variable"."""
    return [where.removeprefix(f"{kind} ") for where in SETTINGS.values() if where.startswith(f"{kind} ")]


def _is_set(name: str, env: Mapping[str, str]) -> bool:
    # The push token is the one setting repro may not see: the workflow tells it whether the secret is set.
    return push_credential.is_set(env) if name == push_credential.VARIABLE else bool(_value(name, env))
