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
# The other credential: a GitHub App whose installation token the workflow makes for each run (it expires within
# the hour) and hands to share as ACCESS_TOKEN. Its client ID is a repository variable, its private key a secret;
# repro's step gets APP_IS_SET ("true" when both are there), never the key.
APP_CLIENT_ID, APP_PRIVATE_KEY, APP_IS_SET = "PUSH_APP_CLIENT_ID", "PUSH_APP_PRIVATE_KEY", "PUSH_APP_SET"
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

    ACCESS_TOKEN_SET=true stands in for it, so the settings check still knows the secret is there; a GitHub App's
    private key goes too (PUSH_APP_SET=true stands in for it).
    """
    environment.load_dotenv(strict=False)  # an unreadable line is reported by the task's own strict read
    token = os.environ.pop(VARIABLE, "").strip()
    if token:
        os.environ[IS_SET] = "true"
    if os.environ.pop(APP_PRIVATE_KEY, "").strip() and environment.env_value(APP_CLIENT_ID):
        os.environ[APP_IS_SET] = "true"  # the key only makes tokens on the runner: no child needs it
    return token or None


def is_set(env: Mapping[str, str]) -> bool:
    """Whether the run has a push credential: the token, the workflow's flag that its secret is set, or an App."""
    token = bool(environment.env_value(VARIABLE, env)) or environment.env_value(IS_SET, env) == "true"
    return token or uses_app(env)


def uses_app(env: Mapping[str, str]) -> bool:
    """Whether the run pushes with a GitHub App's installation token (its client ID and key set, or the flag)."""
    both = environment.env_value(APP_CLIENT_ID, env) and environment.env_value(APP_PRIVATE_KEY, env)
    return bool(both) or environment.env_value(APP_IS_SET, env) == "true"


def described(env: Mapping[str, str]) -> str | None:
    """Which credential the run will push with, in words (never its value); None when it has none."""
    if uses_app(env):
        app = environment.env_value(APP_CLIENT_ID, env)
        named = f" {app}" if app else ""
        return (
            f"the GitHub App{named}'s installation token, made for each run by actions/create-github-app-token "
            "(it expires within the hour)"
        )
    if is_set(env):
        return f"{VARIABLE}, a long-lived token (a GitHub App's expiring token is safer: docs/credentials.md)"
    return None


def git_auth(token: str | None) -> GitAuth:
    """How a git command authenticates with `token` over HTTPS (as actions/checkout does): a basic-auth header."""
    if not token:  # still no prompt: a job has no one to answer it (a credential helper still answers)
        return GitAuth(env={"GIT_TERMINAL_PROMPT": "0"})
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    # No prompt when the token is refused: a clear failure instead of a job waiting for a terminal.
    header = {_HEADER: f"AUTHORIZATION: basic {basic}", "GIT_TERMINAL_PROMPT": "0"}
    return GitAuth([f"--config-env=http.extraHeader={_HEADER}"], header)
