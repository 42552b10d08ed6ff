"""Helpers for the run-loop tests: git repos on disk, `invoke` as a subprocess, and what DVC left in a bucket.

Fixtures live in conftest.py (servers, `origin`, `project`) and in the test modules; these are plain functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INVOKE = BIN / "invoke"
# The tests' own pipeline, which replaces the example (and its tests) in every project copy a test makes.
PIPELINE = ROOT / "tests" / "pipeline"
EXAMPLE = ("src/example/", "tests/example/", "dvc.yaml", "params.yaml", "dvc.lock")


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


def project_files(root: Path = ROOT) -> list[str]:
    """Files git would track in `root` (tracked or not ignored, and present), minus any virtualenv."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    # A venv inside the project is only excluded by .gitignore; never copy one.
    venvs = {p.parent.name for p in root.glob("*/pyvenv.cfg")}
    names = (name for name in dict.fromkeys(out.split("\0")) if name and name.split("/", 1)[0] not in venvs)
    return sorted(name for name in names if (root / name).exists() or (root / name).is_symlink())


def copy_project(dest: Path, env: Mapping[str, str] | None = None, example: bool = False) -> Path:
    """A copy of this project at `dest`, as a fresh repo with one commit on main.

    Unless `example`, the tests' own pipeline (tests/pipeline/) replaces the example's: the machinery's tests
    must not depend on what a template user deletes.
    """
    dest.mkdir(parents=True, exist_ok=True)
    files = [(ROOT / name, name) for name in project_files() if example or not name.startswith(EXAMPLE)]
    if not example:
        files += [(p, p.relative_to(PIPELINE).as_posix()) for p in sorted(PIPELINE.rglob("*")) if p.is_file()]
    for src, name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    git("init", "--quiet", "-b", "main", cwd=dest, env=env)
    git("add", "-A", cwd=dest, env=env)
    git("commit", "--quiet", "--no-verify", "-m", "Initial commit", cwd=dest, env=env)
    return dest


def stages(repo: Path) -> list[str]:
    """The pipeline's stage names, in dvc.yaml's order."""
    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def experiment(repo: Path) -> str:
    """The MLflow experiment the pipeline's stages log to."""
    return yaml.safe_load((repo / "params.yaml").read_text())["train"]["experiment"]


def invoke_repro(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run `invoke repro` in `cwd` with this environment plus `env`; the exit code and all its output."""
    result = invoke(cwd, "repro", *args, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout


def outputs(project: Path) -> list[str]:
    """Every output dvc.yaml declares (outs, metrics, plots)."""
    paths = []
    for stage in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            paths += [next(iter(p)) if isinstance(p, dict) else p for p in stage.get(kind, [])]
    return paths


def md5s(project: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.md5((project / p).read_bytes()).hexdigest() for p in paths}  # noqa: S324 - DVC's hash


def record(project: Path, stage: str) -> dict[str, str]:
    """The MLflow run record a stage left in runs/<stage>.json."""
    return json.loads((project / "runs" / f"{stage}.json").read_text())


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
