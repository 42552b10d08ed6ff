"""Benchmark of the run loop: prints a table of wall-clock times and their ratios (`nox -s bench`).

What it shows: what a runner saves by restoring a stage from DVC's run cache instead of executing it, what a
no-op `dvc repro` costs, and that `invoke --list` stays close to a bare interpreter start (tasks.py imports
nothing heavy). It works in temp copies of the project with a local-folder DVC remote, so no server is needed.
Timings are printed, never asserted.

    python tests/bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = [sys.executable, "-m", "dvc"]


def _copy_project(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "bench"], cwd=dest, check=True)
    return dest


def _time(cmd: list[str], cwd: Path, env: dict[str, str], repeat: int, before: list[str] | None = None) -> float:
    """Median wall-clock seconds of `cmd` over `repeat` runs (running `before` untimed ahead of each)."""
    samples = []
    for _ in range(repeat):
        if before:
            subprocess.run(before, cwd=cwd, env=env, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (the median is shown)")
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        base = Path(tmp)
        env = os.environ | {
            "HOME": str(base / "home"),
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DVC_SITE_CACHE_DIR": str(base / "site-cache"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        }
        for name in ("a", "home"):
            (base / name).mkdir()
        a = _copy_project(base / "a")
        local_remote = ["remote", "add", "--local", "--default", "--force", "bench", str(base / "remote")]
        subprocess.run([*DVC, *local_remote], cwd=a, env=env, check=True, capture_output=True)

        rows = [("python -c pass", _time([sys.executable, "-c", "pass"], a, env, repeat))]
        rows.append(("invoke --list", _time([str(BIN / "invoke"), "--list"], a, env, repeat)))
        rows.append(("dvc repro --force (execute all stages)", _time([*DVC, "repro", "--force"], a, env, repeat)))
        rows.append(("dvc repro (up to date)", _time([*DVC, "repro"], a, env, repeat)))
        subprocess.run([*DVC, "push", "--run-cache"], cwd=a, env=env, check=True, capture_output=True)

        # A fresh clone with an empty cache, as on a new runner: everything comes from the remote's run cache.
        b = base / "b"
        subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
        shutil.copy2(a / "dvc.lock", b / "dvc.lock")
        subprocess.run([*DVC, *local_remote], cwd=b, env=env, check=True, capture_output=True)
        wipe = [
            sys.executable,
            "-c",
            "import shutil; [shutil.rmtree(p, True) for p in "
            "('.dvc/cache', 'data', 'models', 'metrics', 'plots', 'runs')]",
        ]
        rows.append(
            (
                "dvc repro --pull (fresh runner, run cache)",
                _time([*DVC, "repro", "--pull"], b, env, repeat, before=wipe),
            )
        )

    baseline = rows[0][1]
    execute = rows[2][1]
    print(f"{'measurement':<46}{'seconds':>9}{'÷ python':>10}{'÷ execute':>11}")
    for name, seconds in rows:
        print(f"{name:<46}{seconds:>9.2f}{seconds / baseline:>10.1f}{seconds / execute:>11.2f}")


if __name__ == "__main__":
    main()
