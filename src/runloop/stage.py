"""Helpers every pipeline stage uses: its section of params.yaml, and running its main() as a command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from src.runloop import environment

PARAMS_FILE = environment.ROOT / "params.yaml"


def load_params(section: str, path: Path = PARAMS_FILE) -> dict:
    """One stage's section of params.yaml."""
    import yaml

    params = yaml.safe_load(path.read_text()) or {}
    if section not in params:
        raise ValueError(f"params.yaml has no '{section}:' section — add it (see the README's pipeline table)")
    return params[section] or {}


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main() as a command: log lines on stderr, and a bad input as one clear line, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    environment.load_dotenv()  # `dvc repro` run by hand sees the same settings as `invoke repro`
    environment.quiet()  # before main() imports mlflow, which reads its telemetry switch at import
    log = logging.getLogger(main.__module__)
    try:
        main()
    except KeyError as exc:
        log.error("params.yaml misses the key %s — add it (params.yaml's comments say what each key means)", exc)
        sys.exit(1)
    except ValueError as exc:
        log.error("%s", exc)
        sys.exit(1)
