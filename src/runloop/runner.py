"""What a run needs wherever it runs: the project's root, the environment the pipeline runs in, and on CI its
settings and the locked Python."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from src.runloop import ci, environment, packages, push_credential
from src.runloop.refusal import Refused


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
        raise Refused(str(exc)) from None
    push_credential.withhold()
    env = {**environment.QUIET, **os.environ}
    env["MLFLOW_TRACKING_URI"] = environment.tracking_uri(env)
    # Stages run `python`: make it this interpreter even when the venv is not activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def require_ci_settings(env: Mapping[str, str]) -> None:
    """On CI, stop at once if a variable or secret the run needs is missing, or Python is another."""
    if ci.on_ci(env) and (problem := packages.python_mismatch() or ci.missing_settings(env)):
        raise Refused(problem)
