"""Helpers and fixtures for the tests of `nox -s reproduce`, `invoke runs` and `invoke compare`.

Runs are made the way the runner makes them: a developer's clone tags with `invoke tag-run`, a runner's clone at
the tag runs `invoke repro` and `invoke share` against the bare origin and a moto S3 bucket. The pipeline's
stages, outputs, metrics and params are read from the project's dvc.yaml and params.yaml, not assumed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from gitrepos import BIN, clone, git, invoke

NOX = BIN / "nox"


def s3_env(s3, cache: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment with S3 credentials and endpoint, the DVC remote in the test's bucket, and the cache."""
    env = {**os.environ, **s3.server.env(), "DVC_REMOTE_URL": s3.dvc_url, **extra}
    if cache:
        env["XDG_CACHE_HOME"] = str(cache)
    return env


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    return result.stdout


def runner_run(origin: Path, path: Path, tag: str, env: dict[str, str]) -> Path:
    """A runner's clone at `tag` that ran `invoke repro` and `invoke share` (results pushed to origin)."""
    clone(origin, path, f"refs/tags/{tag}")
    ok(invoke(path, "repro", env=env))
    ok(invoke(path, "share", "--tag", tag, env=env))
    return path


def reproduce(cwd: Path, *args: str, env: dict[str, str], nox: bool = False) -> subprocess.CompletedProcess[str]:
    """`nox -s reproduce -- ARGS` (or the module it runs) in `cwd`; stdout and stderr merged."""
    cmd = [str(NOX), "-s", "reproduce", "--", *args] if nox else [sys.executable, "-m", "src.runloop.reproduction"]
    return subprocess.run(
        cmd if nox else [*cmd, *args],
        cwd=cwd,
        env={**env, "PATH": os.pathsep.join([str(BIN), env["PATH"]])},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def stages(project: Path) -> dict[str, dict]:
    return yaml.safe_load((project / "dvc.yaml").read_text())["stages"]


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def metrics_stage(project: Path) -> tuple[str, str]:
    """The last stage that declares a metrics file, and that file."""
    name, stage = [(n, s) for n, s in stages(project).items() if s.get("metrics")][-1]
    return name, _paths(stage["metrics"])[0]


def first_output(project: Path) -> str:
    """The first stage's first output (not a metric): a file every run records."""
    stage = next(iter(stages(project).values()))
    return _paths(stage["outs"])[0]


def tunable_param(project: Path) -> tuple[str, float]:
    """A numeric param the metrics stage reads (`section.key`) and its value in params.yaml."""
    name, stage = [(n, s) for n, s in stages(project).items() if s.get("metrics")][-1]
    params = yaml.safe_load((project / "params.yaml").read_text())
    for entry in stage.get("params", []):  # `section.key`, or a whole `section`
        section, _, key = entry.partition(".")
        for name, value in (params.get(section) or {}).items():
            if isinstance(value, float) and name == (key or name):
                return f"{section}.{name}", value
    raise AssertionError(f"stage {name} reads no float param to change")


def set_param(project: Path, dotted: str, value: float) -> None:
    """Change one `section.key` in params.yaml, keeping its comments."""
    section, key = dotted.split(".", 1)
    lines, inside = [], False
    for line in (project / "params.yaml").read_text().splitlines(keepends=True):
        if not line.startswith(" ") and line.strip():
            inside = line.startswith(f"{section}:")
        elif inside and line.strip().startswith(f"{key}:"):
            indent = line[: len(line) - len(line.lstrip())]
            comment = line[line.index("#") :] if "#" in line else "\n"
            line = f"{indent}{key}: {value}  {comment}" if "#" in line else f"{indent}{key}: {value}\n"
        lines.append(line)
    (project / "params.yaml").write_text("".join(lines))


def push_dev(dev: Path, subject: str) -> str:
    git("add", "-A", cwd=dev)
    git("commit", "--quiet", "-m", subject, cwd=dev)
    git("push", "--quiet", "origin", "HEAD", cwd=dev)
    return git("rev-parse", "HEAD", cwd=dev)
