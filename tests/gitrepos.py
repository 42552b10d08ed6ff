"""Helpers for the run-loop tests: git repos on disk, `invoke` as a subprocess, and what DVC left in a bucket.

Fixtures live in conftest.py (servers, `origin`, `project`) and in the test modules; these are plain functions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
INVOKE = BIN / "invoke"


def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Output of a git command that has to work."""
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}"
    return result.stdout.strip()


def invoke(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` in `cwd` the way a developer or the runner does (stdout and stderr merged)."""
    return subprocess.run(
        [str(INVOKE), *args],
        cwd=cwd,
        env=dict(os.environ if env is None else env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


def refs(repo: Path) -> dict[str, str]:
    """Every ref of `repo` (a bare origin, say) and the object it points at."""
    out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo)
    return dict(line.split(" ", 1) for line in out.splitlines())


def local_tags(repo: Path) -> list[str]:
    return git("tag", "--list", cwd=repo).splitlines()


def publish(project: Path, origin: Path) -> None:
    """Make `origin` the project's remote and push main to it."""
    git("remote", "add", "origin", str(origin), cwd=project)
    git("push", "--quiet", "origin", "main", cwd=project)


def clone(origin: Path, dest: Path, rev: str | None = None) -> Path:
    """A clone of `origin` at `dest`, on its default branch or detached at `rev` (a tag, say)."""
    git("clone", "--quiet", str(origin), str(dest), cwd=dest.parent)
    if rev:
        git("checkout", "--quiet", "--detach", rev, cwd=dest)
    return dest


def commit_file(repo: Path, name: str, text: str, subject: str) -> str:
    """Commit one file and return the new commit."""
    (repo / name).write_text(text)
    git("add", "--", name, cwd=repo)
    git("commit", "--quiet", "-m", subject, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def tag_run(dev: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run `invoke tag-run ARGS` in `dev`; return the tag it pushed."""
    result = invoke(dev, "tag-run", *args, env=env)
    assert result.returncode == 0, result.stdout
    match = re.search(r" as (\S+) and pushed it to ", result.stdout)
    assert match, result.stdout
    return match.group(1)


def commit_of(repo: Path, rev: str) -> str:
    return git("rev-parse", "--verify", f"{rev}^{{commit}}", cwd=repo)


def parents(repo: Path, rev: str) -> list[str]:
    return git("rev-list", "--parents", "-n", "1", rev, cwd=repo).split()[1:]


def subject(repo: Path, rev: str) -> str:
    return git("log", "-1", "--format=%s", rev, cwd=repo)


def trailers(repo: Path, rev: str) -> dict[str, list[str]]:
    """The commit's trailers as git parses them: key → values."""
    out = git("log", "-1", "--format=%(trailers:only,unfold)", rev, cwd=repo)
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        found.setdefault(key, []).append(value)
    return found


def show(repo: Path, rev: str, path: str) -> str:
    return git("show", f"{rev}:{path}", cwd=repo)


def lock_outs(lock_text: str) -> dict[str, str]:
    """Every output path in a dvc.lock and its md5."""
    lock = yaml.safe_load(lock_text)
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def dvc_key(md5: str) -> str:
    """Where DVC 3 keeps an object in a remote (the remote URL being the bucket itself)."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def run_cache_entries(cache: Path) -> set[str]:
    """The run-cache entries of a local DVC cache, named as in the remote (`runs/xx/…/…`)."""
    runs = cache / "runs"
    return {f"runs/{p.relative_to(runs).as_posix()}" for p in runs.rglob("*") if p.is_file()}


def copy_cache(cache: Path, repo: Path) -> None:
    """Give `repo` the DVC cache of an earlier pipeline run, run cache included."""
    shutil.copytree(cache, repo / ".dvc" / "cache")


def files_named(pattern: str, *roots: Path) -> list[Path]:
    """Every file or directory matching `pattern` anywhere under `roots` (hidden ones too)."""
    return [p for root in roots if root.exists() for p in root.rglob(pattern)]
