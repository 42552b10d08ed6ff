"""What a run needs on the CI runner: its settings, the locked Python, and the environment the pipeline runs in."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from invoke import Exit

from src.runloop import environment, packages, push_credential

# Variables a CI run needs, and where a team sets each one in the repository settings.
CI_SETTINGS = {
    "MLFLOW_URL": "repository variable MLFLOW_URL",
    "MLFLOW_S3_ENDPOINT_URL": "repository variable MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID": "secret MINIO_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "secret MINIO_SECRET_ACCESS_KEY",
    "ACCESS_TOKEN": "secret ACCESS_TOKEN",
}


def at_root() -> None:
    """Work from the project's root, wherever invoke was started (it finds tasks.py from subfolders too)."""
    os.chdir(environment.ROOT)


def pipeline_environment(strict: bool = True) -> dict[str, str]:
    """The environment the pipeline runs in: `.env` read in (real variables win), the tracking URI fixed, and
    never the push token (ACCESS_TOKEN_SET says whether there is one).

    A `.env` line that cannot be parsed stops here, naming the file and the line (`strict=False`: read the rest).
    """
    try:
        environment.load_dotenv(strict=strict)
    except environment.SettingsError as exc:
        raise Exit(str(exc), code=1) from None
    push_credential.withhold()
    env = {**environment.QUIET, **os.environ}
    env["MLFLOW_TRACKING_URI"] = environment.tracking_uri(env)
    # Stages run `python`: make it this interpreter even when the venv is not activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def on_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def missing_ci_settings(env: Mapping[str, str]) -> str | None:
    """The message naming every variable and secret a CI run needs that is not set, or None."""
    missing = [name for name in CI_SETTINGS if not _is_set(name, env)]
    if not missing:
        return None
    where = ", ".join(f"{n} (from {CI_SETTINGS[n]})" for n in missing)
    return (
        f"Missing on this runner: {where} — set them in the repository's Settings → Secrets and variables "
        "→ Actions (see the README's environment table)."
    )


def require_ci_settings(env: Mapping[str, str]) -> None:
    """On GitHub Actions, stop at once if a variable or secret the run needs is missing, or Python is another."""
    if problem := packages.python_mismatch() or missing_ci_settings(env):
        raise Exit(problem, code=1)


def _is_set(name: str, env: Mapping[str, str]) -> bool:
    # The push token is the one setting repro may not see: the workflow tells it whether the secret is set.
    return push_credential.is_set(env) if name == push_credential.VARIABLE else bool(environment.env_value(name, env))
