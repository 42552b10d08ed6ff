"""What the environment says: `.env`, the settings a run reads, where MLflow runs go, and how to print a URL."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple
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


# What a `.env` line can be wrong with (what the line has, the fix); a message names the lines, never their text.
_DOTENV_FAULTS = {
    "nul": ("holds a NUL byte, which no variable can hold", "delete the NUL byte"),
    "utf-8": ("is not UTF-8 text", "save the file as UTF-8"),
    "syntax": (
        "cannot be parsed",
        "write each setting as NAME=value (quote a value holding spaces or #, close every quote)",
    ),
    "long": (
        "sets a variable longer than the 128 KiB Linux passes to a command",
        "shorten it, or put the value in a file and set the file's path",
    ),
}
# Linux refuses to start a command with an environment string (NAME=value) longer than this (MAX_ARG_STRLEN):
# every stage, DVC and git would fail with "Argument list too long".
DOTENV_VALUE_LIMIT = 128 * 1024


class _Dotenv(NamedTuple):
    readable: str  # the settings that can be used, as .env text
    faults: dict[str, list[str]]  # kind → the lines ("3", or "3 (NAME)") that have it


def _read_dotenv(path: Path) -> _Dotenv:
    """The settings of `.env` that can be used, and what is wrong with the other lines."""
    import io

    from dotenv.main import DotEnv
    from dotenv.parser import parse_stream

    faults: dict[str, list[str]] = {}
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            faults.setdefault("utf-8", []).append(str(number))
            line = "#\n"  # a comment in its place keeps every line's number
        if "\0" in line:  # os.environ refuses it ("embedded null byte")
            faults.setdefault("nul", []).append(str(number))
            line = "#\n"
        lines.append(line)
    bindings = list(parse_stream(io.StringIO("".join(lines))))
    if unparsed := [str(_first_line(b.original)) for b in bindings if b.error]:
        faults["syntax"] = unparsed
    parsed = [b for b in bindings if not b.error]
    # The values as python-dotenv sets them (`${VAR}` expanded, as load_dotenv does), to measure each.
    values = DotEnv(None, stream=io.StringIO("".join(b.original.string for b in parsed)), override=False).dict()
    too_long = {k for k, v in values.items() if v is not None and len(f"{k}={v}".encode()) >= DOTENV_VALUE_LIMIT}
    if too_long:
        faults["long"] = [f"{_first_line(b.original)} ({b.key})" for b in parsed if b.key in too_long]
    readable = "".join(b.original.string for b in parsed if b.key not in too_long)
    return _Dotenv(readable, {kind: faults[kind] for kind in _DOTENV_FAULTS if kind in faults})


def _first_line(original: Any) -> int:
    """The line a binding's text starts on: python-dotenv counts the blank lines before it as its own."""
    blank = original.string[: len(original.string) - len(original.string.lstrip())]
    return original.line + len(re.findall(r"\r\n|\n|\r", blank))


def dotenv_problem(root: Path | None = None) -> str | None:
    """Why `<root>/.env` cannot be read whole (lines with a NUL byte, not UTF-8, that python-dotenv cannot parse,
    or that set a value too long to pass to a command), or None. Only line numbers: a line may hold a secret."""
    path = (root or ROOT) / ".env"
    if not path.is_file():
        return None
    faults = _read_dotenv(path).faults
    if not faults:
        return None
    what = "; ".join(f"line {', '.join(lines)} {_DOTENV_FAULTS[kind][0]}" for kind, lines in faults.items())
    fix = "; ".join(_DOTENV_FAULTS[kind][1] for kind in faults)
    return f"{path} {what} — {fix}"


def load_dotenv(root: Path | None = None, strict: bool = True) -> None:
    """Read `<root>/.env` (the project's by default) into os.environ; variables already set win.

    A line that cannot be used stops the run (SettingsError) instead of being skipped with a warning: a setting
    silently missing would send the run to the wrong server. `strict=False` reads what it can.
    """
    import io

    from dotenv import load_dotenv as _load

    path = (root or ROOT) / ".env"
    if not path.is_file():
        return
    read = _read_dotenv(path)
    if strict and read.faults:
        raise SettingsError(dotenv_problem(root) or "")
    _load(stream=io.StringIO(read.readable), override=False)


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a syntax error, or aliases that expand beyond ALIAS_LIMIT values (an "alias bomb"),
    is a SettingsError naming the file and the line."""
    import yaml

    try:
        # libyaml's loader when PyYAML has it: ten times faster on dvc.lock, which repro reads on every run.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        text = path.read_text(encoding="utf-8")
        if "*" in text:  # no alias without one: dvc.lock, read on every repro, never pays for the count
            check_aliases(path.name, text, loader)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SettingsError(f"{path.name}{where} is not valid YAML ({exc.problem or exc.context}) — fix it") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path.name} is not valid YAML ({exc}) — fix it") from None


# How many values a YAML file's aliases may add when they are expanded. PyYAML shares an anchored node between its
# aliases, but DVC (and anything that walks or copies the values) expands each: nine nested aliases of nine
# entries each make 9**9 values from a file of a few hundred bytes, and `dvc repro` grows without end reading it.
ALIAS_LIMIT = 100_000


def check_aliases(name: str, text: str, loader: Any = None) -> None:
    """Refuse a file whose aliases expand to more than ALIAS_LIMIT values, naming the alias that crosses it.

    Counted from the parser's events, without building anything: a node counts 1, an alias the size of what its
    anchor holds (aliases within it expanded), so the count is what a reader that expands aliases would build.
    """
    import yaml

    loader = loader or getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}  # anchor → the values what it anchors expands to
    open_nodes: list[tuple[str | None, int]] = []  # collections being read: (anchor, how many values so far)
    added = 0  # what aliases added in all
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            size = sizes.get(event.anchor, 1)
            added += size
            if added > ALIAS_LIMIT:
                raise SettingsError(
                    f"{name} line {event.start_mark.line + 1}: its aliases (*{event.anchor} here) expand to more "
                    f"than {ALIAS_LIMIT} values, which DVC would build in memory — write the values out, or nest "
                    "fewer aliases"
                )
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor:
                sizes[event.anchor] = size
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append((event.anchor, 1))
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            if anchor:
                sizes[anchor] = size
        else:
            continue
        if open_nodes:
            anchor, count = open_nodes[-1]
            open_nodes[-1] = (anchor, count + size)


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
