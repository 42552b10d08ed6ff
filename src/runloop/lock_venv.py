"""A virtualenv per Pipfile.lock, built once and reused: the run job's environment step, and `nox -s reproduce`'s.

    python3 -m src.runloop.lock_venv      (the run job's first step: the venv of this Pipfile.lock, first on PATH
                                           for the steps after it)
    ensure(folder, tree, env) -> Venv     the venv of `tree`'s Pipfile.lock under folder/<hash of the lock>

A venv is built once per lock: `python -m venv`, then `pipenv sync --system` with the venv first on PATH (pipenv's
--system installs into the first python there), so Pipfile.lock and pipenv stay the source of truth. The second
run with the same lock installs nothing; two locks get two folders and never touch each other. A marker file is
written last: a venv without it was left half-built (a job killed while installing) and is removed and built
again, never used. A file lock per lock hash keeps two jobs of one host, or two reproductions, from building the
same venv at once; the second waits and then reuses it.

Standard library only: the step runs before anything is installed, with nothing but python3 and pipenv on the
runner (pipenv is installed into the venv when the runner has none).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from src.runloop import ci, environment, runner_cache
from src.runloop.refusal import Refused

MARKER = ".runloop-installed"  # written last: a venv without it is an install that did not finish
LOCK = "Pipfile.lock"


class BuildFailed(Refused):
    """The lock did not install here: `why` (which step, its last words) and `fix`, the message joining them."""

    def __init__(self, why: str, fix: str) -> None:
        super().__init__(f"{why} — {fix}.")
        self.why, self.fix = why, fix


@dataclass(frozen=True)
class Venv:
    path: Path
    key: str
    reused: bool

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def key(lock_text: str) -> str:
    """The lock's name for its venv: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(lock_text.encode()).hexdigest()[:16]


def interpreter(pipfile_text: str | None, path: str | None = None) -> str:
    """A Python of the version the Pipfile requires: this one, or python<version> on PATH."""
    wanted = (tomllib.loads(pipfile_text or "").get("requires") or {}).get("python_version")
    if not wanted or f"{sys.version_info.major}.{sys.version_info.minor}" == wanted:
        return sys.executable
    found = shutil.which(f"python{wanted}", path=path)
    if not found:
        raise BuildFailed(
            f"Pipfile.lock is for Python {wanted}, and there is no python{wanted} on this machine's PATH",
            f"install Python {wanted} (your package manager, pyenv or uv python install) and run again",
        )
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` while the block runs (released when the process dies, however)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure(folder: Path, tree: Path, env: Mapping[str, str], quiet: bool = False) -> Venv:
    """The venv of `tree`'s Pipfile.lock in `folder`: reused when one was built for the same lock, else built.

    `quiet`: keep pipenv's output (it is in BuildFailed's message when the build fails) instead of showing it.
    """
    lock_path = tree / LOCK
    if not lock_path.exists():
        raise BuildFailed(f"There is no {LOCK} in {tree}", "the environment is installed from it: run `pipenv lock`")
    lock_text = lock_path.read_text()
    name = key(lock_text)
    venv = folder / name
    with _locked(folder / f"{name}.lock"):
        if (venv / MARKER).exists():
            print(f"Reusing the environment for lock {name} ({venv}).", flush=True)
            return Venv(venv, name, True)
        pipfile = tree / "Pipfile"
        python = interpreter(pipfile.read_text() if pipfile.exists() else None, env.get("PATH"))
        shutil.rmtree(venv, ignore_errors=True)  # what an interrupted build left
        print(f"Installing the environment for lock {name} into {venv} (once per lock)...", flush=True)
        for step in _steps(python, venv, lock_text, env):
            install_env = {**env, "PATH": os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])}
            install_env.update(VIRTUAL_ENV=str(venv), PIPENV_VERBOSITY="-1")  # no "Courtesy Notice" about it
            install_env.pop("PYTHONHOME", None)
            done = subprocess.run(
                step,
                cwd=tree,
                env=install_env,
                stdin=subprocess.DEVNULL,
                capture_output=quiet,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                said = " / ".join((done.stderr or done.stdout or "").strip().splitlines()[-4:]) if quiet else ""
                raise BuildFailed(
                    f"{LOCK} does not install here ({Path(step[0]).name} {step[1]}: "
                    f"{environment.scrub(said) if said else f'exit {done.returncode}, its output is above'})",
                    "fix the lock (`pipenv lock`) or give this machine what it needs, then run again",
                )
        (venv / MARKER).write_text(name + "\n")
    return Venv(venv, name, False)


def _steps(python: str, venv: Path, lock_text: str, env: Mapping[str, str]) -> list[list[str]]:
    """The commands that build the venv: the runner's pipenv when it has one, else the locked pipenv in the venv."""
    steps = [[python, "-m", "venv", str(venv)]]
    pipenv = shutil.which("pipenv", path=env.get("PATH"))
    if not pipenv:
        locked = json.loads(lock_text).get("default", {}).get("pipenv", {}).get("version", "")
        steps.append([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"pipenv{locked}"])
        pipenv = str(venv / "bin" / "pipenv")
    # --system: into the first python on PATH, the venv's (a venv pipenv made itself would live elsewhere).
    return [*steps, [pipenv, "sync", "--system"]]


def main(env: Mapping[str, str]) -> int:
    """The run job's environment step: the venv of this checkout's lock, first on PATH for the later steps."""
    try:
        venv = ensure(runner_cache.venvs(env), environment.ROOT, env)
    except Refused as exc:
        print(environment.one_line(str(exc), 600), file=sys.stderr)
        return 1
    ci.add_path(env, venv.bin)
    print(f"The job's later steps run in {venv.path} (first on PATH).", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
