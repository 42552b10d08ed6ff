"""Benchmark of the run loop: what the machinery costs on top of the DVC and git commands it wraps (`nox -s bench`).

Every row runs this project's command and the raw commands it wraps side by side in one run, alternating
(ours, raw, ours, raw, …) so that the machine's load hits both alike, then shows both medians with their min–max,
the ratio of the medians and the row's goal. Rows without a raw side report a figure (a count, a peak RSS).
Everything happens in temp copies of this project (its own pipeline), with a local-folder DVC remote and a bare
origin, so no server is needed and this checkout is left alone. Timings are printed, never asserted.

    python tests/bench.py [--repeat N] [--only WORDS] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gitrepos import copy_project  # noqa: E402 - tests/ is not a package

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = [sys.executable, "-m", "dvc"]
INVOKE = [str(BIN / "invoke")]


@dataclass
class Sample:
    seconds: float
    peak_mib: float


@dataclass
class Row:
    what: str
    ours: list[Sample] = field(default_factory=list)
    raw: list[Sample] = field(default_factory=list)
    raw_what: str = ""
    goal: float | None = None  # ratio ours / raw to reach
    figure: str = ""  # for rows that report a count rather than a time

    @staticmethod
    def _span(samples: list[Sample]) -> str:
        times = [s.seconds for s in samples]
        return f"{statistics.median(times):.2f} s ({min(times):.2f}–{max(times):.2f})"

    def cells(self) -> list[str]:
        if not self.ours:
            return [self.what, self.figure, self.raw_what, "", "", self._goal_text()]
        ours = statistics.median(s.seconds for s in self.ours)
        raw = statistics.median(s.seconds for s in self.raw) if self.raw else None
        ratio = f"{ours / raw:.2f}×" if raw else ""
        raw_cell = f"{self.raw_what} {self._span(self.raw)}" if self.raw else self.raw_what
        peak = max(s.peak_mib for s in self.ours)
        return [self.what, self._span(self.ours), raw_cell, ratio, f"{peak:.0f} MiB", self._goal_text()]

    def _goal_text(self) -> str:
        if self.goal is None:
            return ""
        if not (self.ours and self.raw):
            return f"≤ {self.goal}×"
        ratio = statistics.median(s.seconds for s in self.ours) / statistics.median(s.seconds for s in self.raw)
        return f"≤ {self.goal}× ({'met' if ratio <= self.goal else 'not met'})"


def run(cmds: list[list[str]], cwd: Path, env: dict[str, str]) -> Sample:
    """Wall-clock seconds of running `cmds` one after the other, and the peak RSS of the biggest process."""
    probe = (
        "import resource, subprocess, sys, json\n"
        "for cmd in json.loads(sys.argv[1]):\n"
        "    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(cmds)], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    return Sample(seconds, int(out.stdout.strip()) / 1024)


def alternate(
    row: Row,
    ours: list[list[str]],
    raw: list[list[str]] | None,
    cwd: Path,
    env: dict[str, str],
    repeat: int,
    before: Callable[[], None] | None = None,
) -> Row:
    for _ in range(repeat):
        for side, cmds in (("ours", ours), ("raw", raw)):
            if cmds is None:
                continue
            if before:
                before()
            getattr(row, side).append(run(cmds, cwd, env))
    return row


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def environment(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "DVC_", "GITHUB_"))}
    env |= {
        "HOME": str(base / "home"),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_SITE_CACHE_DIR": str(base / "site-cache"),
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }
    (base / "home").mkdir(parents=True, exist_ok=True)
    return env


def bench_list(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    project = copy_project(base / "list", env=env, example=True)
    row = Row("`invoke --list`", raw_what="`invoke --version`", goal=1.5)
    return [alternate(row, [[*INVOKE, "--list"]], [[*INVOKE, "--version"]], project, env, repeat)]


def bench_repro(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    project = copy_project(base / "repro", env=env, example=True)
    executed = Row("pipeline, every stage executed (`dvc repro --force`)")
    alternate(executed, [[*DVC, "repro", "--force"]], None, project, env, 1)
    subprocess.run([*INVOKE, "repro"], cwd=project, env=env, check=True, capture_output=True)
    noop = Row("no-op `invoke repro`, up to date, no remote", raw_what="`dvc repro`", goal=1.15)
    alternate(noop, [[*INVOKE, "repro"]], [[*DVC, "repro"]], project, env, repeat)
    return [noop, executed]


def bench_share(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """`invoke share` against `dvc push --run-cache` + `git add` + `git commit` + `git push`, from the same state."""
    project = copy_project(base / "share-project", env=env, example=True)
    origin = base / "share-origin.git"
    git("clone", "--quiet", "--bare", str(project), str(origin), cwd=base, env=env)
    git("tag", "-a", "-m", "Run\n\nBranch: main", "run-bench", cwd=project, env=env)
    git("push", "--quiet", str(origin), "refs/tags/run-bench", cwd=project, env=env)
    pristine = base / "share-origin-pristine.git"
    shutil.copytree(origin, pristine)
    runner = base / "share-runner"
    git("clone", "--quiet", str(origin), str(runner), cwd=base, env=env)
    git("checkout", "--quiet", "--detach", "run-bench", cwd=runner, env=env)
    remote = base / "share-remote"
    local = ["remote", "add", "--local", "--default", "--force", "storage", str(remote)]
    subprocess.run([*DVC, *local], cwd=runner, env=env, check=True, capture_output=True)
    subprocess.run([*INVOKE, "repro"], cwd=runner, env=env, check=True, capture_output=True)
    lock = (runner / "dvc.lock").read_bytes()

    def reset() -> None:
        shutil.rmtree(origin)
        shutil.copytree(pristine, origin)
        shutil.rmtree(remote, ignore_errors=True)
        git("checkout", "--quiet", "--detach", "run-bench", cwd=runner, env=env)
        git("fetch", "--quiet", "--prune", "origin", cwd=runner, env=env)
        (runner / "dvc.lock").write_bytes(lock)

    raw = [
        [*DVC, "push", "--run-cache"],
        ["git", "add", "dvc.lock"],
        ["git", "commit", "--quiet", "-m", "Initial commit-results"],
        ["git", "push", "--quiet", "origin", "HEAD:refs/heads/main"],
    ]
    row = Row(
        "`invoke share` (local-folder DVC remote, bare origin)",
        raw_what="`dvc push --run-cache`; `git add`/`commit`/`push`",
        goal=1.2,
    )
    return [alternate(row, [[*INVOKE, "share", "--tag", "run-bench"]], raw, runner, env, repeat, before=reset)]


BENCHES = {"list": bench_list, "repro": bench_repro, "share": bench_share}


def table(rows: list[Row]) -> str:
    header = ["what", "this project", "the raw commands it wraps", "ratio", "peak RSS", "goal"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
    cpu = models[0] if models else platform.machine()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="samples per side of each row (medians are shown)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these groups of rows")
    repeat, only = (args := parser.parse_args()).repeat, args.only or list(BENCHES)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        base = Path(tmp)
        env = environment(base)
        for name in only:
            print(f"… {name}", file=sys.stderr, flush=True)
            rows += BENCHES[name](base / name, env, repeat)
    print(f"Machine: {machine()}; {repeat} alternating samples per side; medians (min–max).\n")
    print(table(rows))
    # The harness's own children count towards RUSAGE_CHILDREN too: say how big the harness got.
    print(f"\n(bench harness peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
