"""The push credential: the token `invoke share` fetches and pushes with, which nothing else a run starts can read.

On the runner the workflow gives ACCESS_TOKEN to the share step alone; the checkout keeps no credential in
.git/config (`persist-credentials: false`), and `invoke repro` gets only ACCESS_TOKEN_SET, "true" or "false", so
that it can name a missing secret before any stage runs. share takes the token out of its own environment before
it starts anything (DVC's push, `dvc metrics show`), and hands it to its git fetches and pushes alone, one command at
a time: as an `http.extraHeader` that git reads from a variable of that command's environment (`git --config-env`,
git 2.31 or newer). The token is never on a command line (which `ps` shows to every user of the machine), in a
config file or in a credential store; a header needs no credential helper, so none gets the chance to save it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from src.runloop import environment

VARIABLE = "ACCESS_TOKEN"  # the secret's name on the runner and in .env
# What repro's step gets instead of the token: whether the secret is set, never its value.
IS_SET = "ACCESS_TOKEN_SET"
# The variable git reads the header from; set in the environment of share's git fetch and push only.
_HEADER = "RUNLOOP_GIT_AUTH_HEADER"


@dataclass(frozen=True)
class GitAuth:
    """Options and environment that make one git command send the token; empty without one."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def used(self) -> str:
        """Words for a message about a git command that failed: was the token sent (and so, maybe refused)?"""
        return f" with {VARIABLE}" if self.args else ""


def withhold() -> str | None:
    """Take the token out of this process's environment (.env read first), so no child sees it; return it.

    ACCESS_TOKEN_SET=true stands in for it, so the settings check still knows the secret is there.
    """
    environment.load_dotenv(strict=False)  # an unreadable line is reported by the task's own strict read
    token = os.environ.pop(VARIABLE, "").strip()
    if token:
        os.environ[IS_SET] = "true"
    return token or None


def is_set(env: Mapping[str, str]) -> bool:
    """Whether the run has its push token: the token itself, or the workflow's flag that the secret is set."""
    return bool(environment.env_value(VARIABLE, env)) or environment.env_value(IS_SET, env) == "true"


def git_auth(token: str | None) -> GitAuth:
    """How a git command authenticates with `token` over HTTPS (as actions/checkout does): a basic-auth header."""
    if not token:
        return GitAuth()
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    # No prompt when the token is refused: a clear failure instead of a job waiting for a terminal.
    header = {_HEADER: f"AUTHORIZATION: basic {basic}", "GIT_TERMINAL_PROMPT": "0"}
    return GitAuth([f"--config-env=http.extraHeader={_HEADER}"], header)
