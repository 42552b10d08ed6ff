"""Helpers for the sweep and watch tests: an origin that logs each push, tag-run --set, and a leg's results.

A results commit is made here as `invoke share` makes it (its message, its parent, pushed to results/<tag>) where
a test is about what reads it (`runs --sweep`, `watch`); the loop itself, share included, runs under act in
tests/test_sweep.py.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from gitrepos import git, invoke

# One line per push that reaches the origin: the refs it updated (post-receive runs once per push).
HOOK = """#!/bin/sh
cut -d' ' -f3 | tr '\\n' ' ' >> "{log}"
echo >> "{log}"
"""


def log_pushes(origin: Path) -> Path:
    """Make `origin` log every push it receives; the log's path (one line of refs per push)."""
    log = origin / "pushes.log"
    hook = origin / "hooks" / "post-receive"
    hook.write_text(HOOK.format(log=log))
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    return log


def pushes(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def sweep(dev: Path, *args: str) -> tuple[str, list[str], str]:
    """Run `invoke tag-run ARGS` (with --set) in `dev`; the sweep's name, its legs' tags and the output."""
    result = invoke(dev, "tag-run", *args)
    assert result.returncode == 0, result.stdout
    assert "Traceback" not in result.stdout
    tags = re.findall(r" as (\S+) and pushed it to ", result.stdout)
    stem = re.search(r"invoke runs --sweep (\S+)", result.stdout).group(1)
    return stem, tags, result.stdout


def annotation(repo: Path, tag: str) -> str:
    return git("cat-file", "-p", f"refs/tags/{tag}", cwd=repo).partition("\n\n")[2]
