"""The run job's environment step (src/runloop/lock_venv.py): a venv per Pipfile.lock, built once and kept.

The step runs here as the workflow runs it, `python3 -m src.runloop.lock_venv`, on an interpreter without
site-packages (nothing installed) and with pipenv on PATH, against a tree whose lock pins no package (pipenv sync
of it is quick). The real lock's venv, built by this step under act, is in test_workflow.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gitrepos import copy_project

from src.runloop import lock_venv

PIPFILE = """[[source]]
url = "https://pypi.org/simple"
verify_ssl = true
name = "pypi"

[packages]

[dev-packages]

[requires]
python_version = "{version}"
"""


def tree(path: Path, version: str = f"{sys.version_info.major}.{sys.version_info.minor}", salt: str = "") -> Path:
    """A copy of the project whose Pipfile.lock pins nothing (`salt` makes another lock)."""
    copy_project(path)
    (path / "Pipfile").write_text(PIPFILE.format(version=version))
    source = {"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": True}
    meta = {"hash": {"sha256": salt or "0"}, "pipfile-spec": 6, "requires": {"python_version": version}}
    meta["sources"] = [source]
    (path / "Pipfile.lock").write_text(json.dumps({"_meta": meta, "default": {}, "develop": {}}))
    return path


def step(checkout: Path, venvs: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """The environment step started in `checkout` as GitHub would run it: no site-packages (`-S`: nothing is
    installed yet), pipenv on PATH; the process, and the file the step writes the job's PATH additions to."""
    github_path = tmp_path / f"github-path-{os.urandom(4).hex()}"
    github_path.write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),  # the workspace, as the workflow's PYTHONPATH gives it
        "GITHUB_ACTIONS": "true",
        "GITHUB_PATH": str(github_path),
        "RUNLOOP_VENVS": str(venvs),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),  # pipenv
    }
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "src.runloop.lock_venv"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, github_path


def finished(proc: subprocess.Popen) -> str:
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow  # builds a venv: python -m venv, pip, pipenv sync
def test_the_second_run_with_the_same_lock_installs_nothing(tmp_path):
    checkout, venvs = tree(tmp_path / "checkout"), tmp_path / "venvs"
    key = lock_venv.key((checkout / "Pipfile.lock").read_text())

    first, path = step(checkout, venvs, tmp_path)
    out = finished(first)

    venv = venvs / key
    assert f"Installing the environment for lock {key} into {venv} (once per lock)..." in out
    assert (venv / lock_venv.MARKER).read_text() == f"{key}\n" and (venv / "bin" / "python").exists()
    assert path.read_text() == f"{venv / 'bin'}\n"  # first on PATH for the job's later steps
    built = (venv / lock_venv.MARKER).stat().st_mtime_ns

    second, path = step(checkout, venvs, tmp_path)
    out = finished(second)

    assert out.splitlines()[0] == f"Reusing the environment for lock {key} ({venv})."
    assert "Installing" not in out
    assert (venv / lock_venv.MARKER).stat().st_mtime_ns == built
    assert path.read_text() == f"{venv / 'bin'}\n"


@pytest.mark.slow  # builds a venv: python -m venv, pip, pipenv sync
def test_a_half_built_venv_is_never_used_and_two_locks_never_touch(tmp_path):
    checkout, other, venvs = tree(tmp_path / "a"), tree(tmp_path / "b", salt="other"), tmp_path / "venvs"
    key = lock_venv.key((checkout / "Pipfile.lock").read_text())
    left = venvs / key  # what a job killed while installing leaves: the folder, no marker
    (left / "bin").mkdir(parents=True)
    (left / "half-installed").write_text("")

    out = finished(step(checkout, venvs, tmp_path)[0])
    finished(step(other, venvs, tmp_path)[0])

    assert f"Installing the environment for lock {key}" in out
    assert not (left / "half-installed").exists() and (left / lock_venv.MARKER).exists()
    other_key = lock_venv.key((other / "Pipfile.lock").read_text())
    assert other_key != key and (venvs / other_key / lock_venv.MARKER).exists()
    assert sorted(p.name for p in venvs.iterdir() if p.is_dir()) == sorted([key, other_key])


@pytest.mark.slow  # builds a venv: python -m venv, pip, pipenv sync
def test_two_jobs_at_once_build_one_venv(tmp_path):
    checkout, venvs = tree(tmp_path / "checkout"), tmp_path / "venvs"

    jobs = [step(checkout, venvs, tmp_path)[0] for _ in range(2)]
    said = [finished(job) for job in jobs]

    # The file lock lets one build while the other waits, then reuses what was built.
    assert sorted("Installing the environment" in out for out in said) == [False, True]
    assert sorted("Reusing the environment" in out for out in said) == [False, True]


def test_a_lock_for_a_python_this_runner_lacks_is_one_line(tmp_path):
    checkout = tree(tmp_path / "checkout", version="3.99")

    proc, path = step(checkout, tmp_path / "venvs", tmp_path)
    out = proc.communicate(timeout=60)[0]

    assert proc.returncode == 1
    assert out.splitlines() == [
        "Pipfile.lock is for Python 3.99, and there is no python3.99 on this machine's PATH — install Python 3.99 "
        "(your package manager, pyenv or uv python install) and run again."
    ]
    key = lock_venv.key((checkout / "Pipfile.lock").read_text())
    assert path.read_text() == "" and not (tmp_path / "venvs" / key).exists()  # nothing made, nothing on PATH


def test_a_checkout_without_a_lock_is_refused(tmp_path):
    with pytest.raises(lock_venv.BuildFailed, match="There is no Pipfile.lock in .* the environment is installed"):
        lock_venv.ensure(tmp_path / "venvs", tmp_path, {})
