"""Running git and DVC from the tasks: always as argument lists, so no value is ever read as shell syntax."""

from __future__ import annotations

import shlex
import sys

from invoke import Context, Exit

DVC = [sys.executable, "-m", "dvc"]


def run(c: Context, *args: str, **kwargs):
    """Run a command given as arguments (quoted here); output hidden and failure allowed unless told otherwise."""
    kwargs.setdefault("hide", True)
    kwargs.setdefault("warn", True)
    return c.run(shlex.join(args), **kwargs)


def git(c: Context, *args: str) -> str | None:
    """Output of a git probe, or None when git says no."""
    result = run(c, "git", *args)
    return result.stdout.strip() if result.ok else None


def must(c: Context, what: str, *args: str, **kwargs) -> str:
    """Run a step that has to work; on failure stop with what failed and git's or DVC's own words."""
    result = run(c, *args, **kwargs)
    if not result.ok:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
        raise Exit(f"{what} failed: {' / '.join(detail) or 'no output'}", code=1)
    return result.stdout.strip() if result.stdout else ""


def uncommitted(c: Context) -> list[tuple[str, str]]:
    """What `git status` lists, as (status, path) pairs: modified, staged, deleted and untracked files."""
    result = run(c, "git", "status", "--porcelain", "-z")
    entries = iter(result.stdout.split("\0") if result.ok else [])
    changes = []
    for entry in entries:
        if entry:
            changes.append((entry[:2], entry[3:]))
            if entry[0] in "RC":  # a rename or copy: its source path comes next
                next(entries, None)
    return changes


def listed(paths: list[str], most: int = 6) -> str:
    """Paths for a message: the first few, then how many more."""
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")
