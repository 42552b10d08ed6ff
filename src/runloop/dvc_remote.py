"""The DVC remote: whether one is configured, and its machine-specific settings (never a credential)."""

from __future__ import annotations

from collections.abc import Mapping

from invoke import Context

from src.runloop import environment
from src.runloop.commands import DVC, must

NAME = "storage"  # the default remote named in .dvc/config


def settings(env: Mapping[str, str]) -> dict[str, str | None]:
    """The DVC remote's machine-specific settings, from the environment only."""
    return {
        "endpointurl": environment.env_value("DVC_REMOTE_ENDPOINT_URL", env)
        or environment.env_value("MLFLOW_S3_ENDPOINT_URL", env),
        "url": environment.env_value("DVC_REMOTE_URL", env),
    }


def configured(env: Mapping[str, str]) -> bool:
    """Whether a DVC remote is set up: an endpoint or remote URL in the environment, or .dvc/config.local."""
    local = environment.ROOT / ".dvc" / "config.local"
    return any(settings(env).values()) or (local.exists() and bool(local.read_text().strip()))


def configure(c: Context, env: Mapping[str, str]) -> None:
    """Write the endpoint (and any URL override) to .dvc/config.local: untracked, and never a secret.

    Only what the environment sets is written; what a user put in config.local by hand stays.
    """
    for key, value in settings(env).items():
        if value:
            must(c, f"Setting the DVC remote's {key}", *DVC, "remote", "modify", "--local", NAME, key, value, env=env)


def holds(env: Mapping[str, str], md5s: list[str]) -> set[str] | None:
    """Which of these content hashes the default DVC remote holds; None when no remote is configured."""
    if not configured(env):
        return None
    from dvc.repo import Repo

    with Repo(str(environment.ROOT)) as repo:
        return set(repo.cloud.get_remote_odb().oids_exist(md5s))
