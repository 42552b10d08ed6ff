"""What the environment says: `.env`, the settings a run reads, where MLflow runs go, and how to print a URL."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
# Embedded MLflow store, used when no server is configured (both gitignored).
LOCAL_MLFLOW_DB = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"
# `invoke repro` sets these for the stages: the run's tag (on CI the pushed tag; locally a run tag pointing at
# HEAD) and, on CI, the CI run's page. The stages' MLflow runs record both.
RUN_TAG_ENV = "RUN_TAG"
RUN_CI_URL_ENV = "RUN_CI_URL"
# `invoke repro` sets this to the installed packages Pipfile.lock does not name; the stages' MLflow runs record it.
PYTHON_EXTRAS_ENV = "RUN_PYTHON_EXTRAS"
# Variables whose values are secrets: never printed, and cut out of any message that quotes them.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACCESS_TOKEN",
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "PUSH_APP_PRIVATE_KEY",
)
# Query-string (or fragment) parameters that carry credentials, by how their names end: ?token=, &password=, …
_SECRETISH = r"(?:token|password|passwd|pwd|secret|key|signature|sig|credentials?|auth)"
_SECRET_PARAM = re.compile(_SECRETISH + "$", re.I)
# The same in free text (a tool's error message): `user:password@` in any URL, and `…token=value` anywhere.
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@", re.I)
_TEXT_PARAM = re.compile(r"(?<![\w.-])([\w.-]*" + _SECRETISH + r"=)[^&#\s'\"<>,;)]+", re.I)
# The tools' telemetry off for the project's own runs (MLflow reads its switch when it is imported), and no
# "View run at <tracking URI>" lines from MLflow: a URI may carry credentials; tasks print redacted links. No
# progress bars from MLflow's artifact transfers either: in a CI log they are lines of noise per model logged.
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def quiet() -> None:
    """Turn the tools' telemetry off for this process and its children, unless the environment says otherwise."""
    os.environ.update({k: v for k, v in QUIET.items() if k not in os.environ})


class SettingsError(ValueError):
    """A settings file that cannot be read; the message is one line naming the file, the place and the fix."""


def dotenv_problem(root: Path | None = None) -> str | None:
    """Why `<root>/.env` cannot be read whole (the lines python-dotenv cannot parse), or None."""
    from dotenv.parser import parse_stream

    path = (root or ROOT) / ".env"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        bad = [str(b.original.line) for b in parse_stream(f) if b.error]
    if not bad:
        return None
    # Only line numbers: the line itself may hold a secret.
    return (
        f"{path} line {', '.join(bad)} cannot be parsed — write each setting as NAME=value "
        "(quote a value holding spaces or #, close every quote)"
    )


def load_dotenv(root: Path | None = None, strict: bool = True) -> None:
    """Read `<root>/.env` (the project's by default) into os.environ; variables already set win.

    A line python-dotenv cannot parse stops the run (SettingsError) instead of being skipped with a warning: a
    setting silently missing would send the run to the wrong server. `strict=False` reads what it can.
    """
    from dotenv import load_dotenv as _load

    path = (root or ROOT) / ".env"
    if strict and (problem := dotenv_problem(root)):
        raise SettingsError(problem)
    if path.is_file():
        if not strict:  # the caller reports the unparsable lines itself (invoke doctor)
            logging.getLogger("dotenv.main").setLevel(logging.ERROR)
        with open(path, encoding="utf-8") as f:
            _load(stream=f, override=False)


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a syntax error is a SettingsError naming the file and the line."""
    import yaml

    try:
        # libyaml's loader when PyYAML has it: ten times faster on dvc.lock, which repro reads on every run.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SettingsError(f"{path.name}{where} is not valid YAML ({exc.problem or exc.context}) — fix it") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path.name} is not valid YAML ({exc}) — fix it") from None


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
    """The URI without any user:password part or credential in its query (`?token=…` → `?token=***`)."""
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]  # keeps an IPv6 address's brackets and the port
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (host, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return uri
    return urlunsplit((parts.scheme, host, parts.path, query, fragment))


def _redact_params(query: str) -> str:
    def one(pair: str) -> str:
        name, eq, value = pair.partition("=")
        return f"{name}=***" if eq and value and _SECRET_PARAM.search(name.strip()) else pair

    return re.sub(r"[^&;]+", lambda m: one(m.group(0)), query)


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secrets this environment holds: the SECRET_VARIABLES and any password inside an MLflow URL."""
    env = os.environ if env is None else env
    values = [env.get(name, "").strip() for name in SECRET_VARIABLES]
    for name in ("MLFLOW_URL", "MLFLOW_TRACKING_URI"):
        try:
            values.append(urlsplit(env.get(name, "").strip()).password or "")
        except ValueError:  # not a URL at all: nothing to take from it
            continue
    return [v for v in values if len(v) >= 4]  # a shorter "secret" would blank out ordinary words


def scrub(text: str, env: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> str:
    """`text` (a tool's error message, say) with URL credentials, credential parameters and known secrets cut out."""
    text = _URL_USERINFO.sub(r"\1", text)
    text = _TEXT_PARAM.sub(r"\1***", text)
    for value in sorted({*secret_values(env), *secrets}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def one_line(text: str, limit: int = 300) -> str:
    """A tool's message as one line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
