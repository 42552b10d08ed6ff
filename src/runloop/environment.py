"""What the environment says: `.env`, the settings a run reads, where MLflow runs go, and how to print a URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
# Embedded MLflow store, used when no server is configured (both gitignored).
LOCAL_MLFLOW_DB = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"
# `invoke repro` sets this to the run's tag (on CI the pushed tag; locally a run tag pointing at HEAD).
RUN_TAG_ENV = "RUN_TAG"
# The tools' telemetry off for the project's own runs (MLflow reads its switch when it is imported), and no
# "View run at <tracking URI>" lines from MLflow: a URI may carry credentials; tasks print redacted links.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


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
