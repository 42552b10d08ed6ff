"""git, run as argument lists: the one way the machinery calls git, so no value is ever read as shell syntax.

    Git(cwd, env)                  a repository (the project's by default) and the environment its commands get
    Git.run(*args)                 the finished process, whatever its exit status
    Git(*args) / Git.probe(*args)  the output of a probe, or None when git says no
    Git.must(what, *args)          the output of a step that has to work; else a one-line refusal with git's words
    Git.uncommitted()              what `git status` lists, as (status, path) pairs

Standard library only: the failure record (failure.py) uses it on a runner where nothing was installed, and the
stages' tracking uses it (dvc.yaml lists this file among their dependencies).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from src.runloop.refusal import Refused

ROOT = Path(__file__).resolve().parents[2]


class GitFailed(Refused):
    """A step that had to work did not; the message is one line: what failed and git's last words."""


@dataclass(frozen=True)
class Git:
    cwd: Path = ROOT
    env: Mapping[str, str] | None = None  # None: this process's environment

    def at(self, cwd: Path) -> Git:
        return Git(Path(cwd), self.env)

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, input: str | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`git ARGS`; `env` adds to (or overrides) the repository's environment for this command alone. Past
        `timeout` seconds, subprocess.TimeoutExpired."""
        full = None if self.env is None and env is None else {**(self.env or _environ()), **(env or {})}
        return subprocess.run(
            ["git", *args],
            cwd=self.cwd,
            env=full,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )

    def probe(self, *args: str, **kwargs) -> str | None:
        """Output of a git probe (stripped), or None when git says no."""
        done = self.run(*args, **kwargs)
        return done.stdout.strip() if done.returncode == 0 else None

    __call__ = probe

    def must(self, what: str, *args: str, **kwargs) -> str:
        """Output of a step that has to work; GitFailed naming `what` and git's last lines otherwise."""
        done = self.run(*args, **kwargs)
        if done.returncode != 0:
            raise GitFailed(f"{what} failed: {last_lines(done.stderr or done.stdout, 5)}")
        return done.stdout.strip()

    def uncommitted(self) -> list[tuple[str, str]]:
        """What `git status` lists, as (status, path) pairs: modified, staged, deleted and untracked files."""
        done = self.run("status", "--porcelain", "-z")
        entries = iter(done.stdout.split("\0") if done.returncode == 0 else [])
        changes = []
        for entry in entries:
            if entry:
                changes.append((entry[:2], entry[3:]))
                if entry[0] in "RC":  # a rename or copy: its source path comes next
                    next(entries, None)
        return changes

    def branch(self) -> str | None:
        """The checked-out branch, or None on a detached HEAD."""
        return self.probe("symbolic-ref", "--quiet", "--short", "HEAD")

    def commit_of(self, rev: str) -> str | None:
        """The full id of the commit `rev` names, or None."""
        return self.probe("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def last_lines(text: str | None, n: int = 4) -> str:
    """A tool's last lines of output, joined into one line."""
    return " / ".join((text or "").strip().splitlines()[-n:]) or "no output"


def listed(paths: list[str], most: int = 6) -> str:
    """Paths for a message: the first few, then how many more."""
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
