"""Helpers every pipeline stage uses: its section of params.yaml, and running its main() as a command.

A stage says a bad input on purpose by raising `BadInput("what is wrong — what to do")`: run_stage prints that line
alone. A params.yaml section or key it lacks, or a value of the wrong type, is a `ParamsError` (a BadInput) naming
the file, the section and the key. Anything else a stage raises is a bug in it and keeps its traceback, the stage's
file and line in it (credentials cut out); MLflow's and S3's failures are one line each.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from src.runloop import environment

PARAMS_FILE = environment.ROOT / "params.yaml"
# What a params value must be, as load_params(types=…) names it in a message.
_KINDS = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "a mapping",
    list: "a list",
}


class BadInput(ValueError):
    """An input a stage cannot use: raise it with one line (what is wrong — what to do) and run_stage prints that line
    alone, no traceback. A ValueError, so that a core function's callers and tests may catch it as one."""


class ParamsError(BadInput, KeyError):
    """params.yaml lacks a section or key the stage reads, or holds a value of the wrong type. A KeyError too, so
    that `try: params[key] except KeyError:` still works for a key a stage treats as optional."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError's str() would quote the message


class Params(dict):
    """A section of params.yaml (and each mapping in it): a key it lacks is a ParamsError naming the file, the
    dotted key and the line of the stage's code that read it."""

    def __init__(self, values: Mapping[str, Any], where: str, file: str) -> None:
        super().__init__(
            (k, Params(v, f"{where}.{k}", file) if isinstance(v, dict) else v) for k, v in (values or {}).items()
        )
        self._where, self._file = where, file

    def __missing__(self, key: object) -> Any:
        caller = sys._getframe(1)  # the stage's line that read params[key]: dict's lookup calls this directly
        try:
            code = Path(caller.f_code.co_filename).resolve().relative_to(environment.ROOT)
        except ValueError:
            code = Path(caller.f_code.co_filename)
        where = f"{code} line {caller.f_lineno}"
        raise ParamsError(f"{self._file} misses {self._where}.{key}, which {where} reads — add it to {self._file}")

    def __reduce__(self) -> tuple:  # copies and pickles are plain dicts: the stage's values, nothing more
        return dict, (dict(self),)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a cancelled or timed-out CI job) arriving in a stage: unwinds like Ctrl-C, so runs are closed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def load_params(section: str, path: Path = PARAMS_FILE, types: Mapping[str, type] | None = None) -> Params:
    """One stage's section of params.yaml; with `types`, each named key must be there with a value of that type.

    A float key takes whole numbers too; a bool never passes as a number. A missing section or key, or a wrong
    value, is a ParamsError naming the file, the key and its line, which run_stage turns into one line; so is a
    key the stage reads later that the section lacks (`params["epochs"]`).
    """
    params = environment.read_yaml(path) or {}
    if not isinstance(params, dict) or section not in params:
        raise ParamsError(f"{path.name} has no '{section}:' section — add it (see the README's pipeline table)")
    values = params[section] or {}
    if not isinstance(values, dict):
        line = _line_of(path, section)
        raise ParamsError(
            f"{path.name}{f' line {line}' if line else ''}: {section} is {values!r}, it must be a mapping of "
            "the stage's params — fix it"
        )
    for key, kind in (types or {}).items():
        if key not in values:
            raise ParamsError(f"{path.name} misses {section}.{key} — add it ({_KINDS.get(kind, kind.__name__)})")
        value = values[key]
        accepted = (int, float) if kind is float else kind
        if isinstance(value, bool) and kind is not bool or not isinstance(value, accepted):
            line = _line_of(path, section, key)
            raise ParamsError(
                f"{path.name}{f' line {line}' if line else ''}: {section}.{key} is {value!r}, "
                f"it must be {_KINDS.get(kind, kind.__name__)} — fix it"
            )
    return Params(values, section, path.name)


def _line_of(path: Path, *keys: str) -> int | None:
    """The line of `section.key` (or of `section`) in a YAML file, when it is a plain mapping there."""
    import yaml

    node = yaml.compose(path.read_text(encoding="utf-8"))
    for name in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if getattr(k, "value", None) == name), None)
    return node.start_mark.line + 1 if node is not None else None


def _interrupt_on_sigterm() -> None:
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, interrupt)


def _service_failure(exc: Exception) -> str | None:
    """One line for a failure of MLflow or of the artifact store, without credentials; None for anything else."""
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    requests_exceptions = sys.modules.get("requests.exceptions")
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    boto3_exceptions = sys.modules.get("boto3.exceptions")
    uri = environment.redact(environment.tracking_uri())
    said = environment.one_line(environment.scrub(str(exc) or type(exc).__name__))
    mlflow_errors = tuple(
        getattr(module, name)
        for module, name in [(mlflow_exceptions, "MlflowException"), (requests_exceptions, "RequestException")]
        if module is not None
    )
    if isinstance(exc, mlflow_errors):
        return f"MLflow at {uri} failed: {said} — check MLFLOW_URL and that the server is up (invoke doctor)"
    s3_errors = tuple(
        getattr(module, name)
        for module, name in [(botocore_exceptions, "BotoCoreError"), (botocore_exceptions, "ClientError")]
        + [(boto3_exceptions, "Boto3Error")]
        if module is not None
    )
    if isinstance(exc, s3_errors):
        return (
            f"MLflow's artifact store failed: {said} — check MLFLOW_S3_ENDPOINT_URL and the AWS_* credentials "
            "(invoke doctor)"
        )
    return None


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main() as a command: log lines on stderr, and a bad input as one clear line, no traceback.

    One line: a BadInput (ParamsError among them), a `.env` that cannot be read, a failure of MLflow or S3, Ctrl-C
    and SIGTERM (after the stage's MLflow run is marked KILLED). Anything else is a bug in the stage: its traceback,
    with the stage's file and line, credentials cut out.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(main.__module__)
    _interrupt_on_sigterm()
    try:
        environment.load_dotenv()  # `dvc repro` run by hand sees the same settings as `invoke repro`
        environment.quiet()  # before main() imports mlflow, which reads its telemetry switch at import
        main()
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        log.error("Stopped by %s — run the pipeline again to finish this stage", signal.Signals(signum).name)
        sys.exit(128 + signum)
    except (BadInput, environment.SettingsError) as exc:
        log.error("%s", environment.scrub(str(exc)))
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - each becomes one line, or a traceback without credentials
        # A bug in the stage (a KeyError of pandas, a ValueError of numpy alike) keeps its traceback: it is how to
        # find the bug. Only a credential it quotes is cut out.
        log.error("%s", _service_failure(exc) or environment.scrub(traceback.format_exc().rstrip()))
        sys.exit(1)
