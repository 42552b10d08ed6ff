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
import re
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

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
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
    goal_seconds: float | None = None  # or a time to stay under
    figure: str = ""  # for rows that report a count rather than a time
    goal_note: str = ""  # a goal in words, for such rows
    goal_extra: float | None = None  # or seconds ours may take over raw

    @staticmethod
    def _span(samples: list[Sample]) -> str:
        times = [s.seconds for s in samples]
        return f"{statistics.median(times):.2f} s ({min(times):.2f}–{max(times):.2f})"

    def cells(self) -> list[str]:
        if not self.ours:
            return [self.what, self.figure, self.raw_what, "", "", self._goal_text()]
        ours = statistics.median(s.seconds for s in self.ours)
        raw = statistics.median(s.seconds for s in self.raw) if self.raw else None
        ratio = (f"{ours - raw:+.2f} s" if self.goal_extra is not None else f"{ours / raw:.2f}×") if raw else ""
        raw_cell = f"{self.raw_what} {self._span(self.raw)}" if self.raw else self.raw_what
        peak = max(s.peak_mib for s in self.ours)
        return [self.what, self._span(self.ours), raw_cell, ratio, f"{peak:.0f} MiB" if peak else "", self._goal_text()]

    def _goal_text(self) -> str:
        if self.goal_extra is not None and self.ours and self.raw:
            extra = statistics.median(s.seconds for s in self.ours) - statistics.median(s.seconds for s in self.raw)
            return f"≤ +{self.goal_extra:g} s ({'met' if extra <= self.goal_extra else 'not met'})"
        if self.goal_seconds is not None and self.ours:
            median = statistics.median(s.seconds for s in self.ours)
            return f"< {self.goal_seconds:g} s ({'met' if median < self.goal_seconds else 'not met'})"
        if self.goal is None:
            return self.goal_note
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
    raw_cwd: Path | None = None,
    raw_env: dict[str, str] | None = None,
) -> Row:
    for _ in range(repeat):
        for side, cmds, where, with_env in (("ours", ours, cwd, env), ("raw", raw, raw_cwd or cwd, raw_env or env)):
            if cmds is None:
                continue
            if before:
                before()
            getattr(row, side).append(run(cmds, where, with_env))
    return row


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def environment(base: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make the project's own modules compile from source on
    # every call while the installed packages load their bytecode: measure as a user's machine runs, with .pyc files.
    drop = ("MLFLOW_", "AWS_", "DVC_", "GITHUB_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
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
    # What MLflow's system metrics cost the stages: the same pipeline with them on (the default) and off.
    metrics = Row(
        "pipeline executed, MLflow system metrics on (a monitor thread per stage run)",
        raw_what="the same with `MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`",
    )
    off = {**env, "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    alternate(metrics, [[*DVC, "repro", "--force"]], [[*DVC, "repro", "--force"]], project, env, repeat, raw_env=off)
    subprocess.run([*INVOKE, "repro"], cwd=project, env=env, check=True, capture_output=True)
    noop = Row("no-op `invoke repro`, up to date, no remote", raw_what="`dvc repro`", goal=1.15)
    alternate(noop, [[*INVOKE, "repro"]], [[*DVC, "repro"]], project, env, repeat)
    return [noop, executed, metrics]


# The output a stage adds for share's rows at other sizes: 10,000 small files, one 500 MB file.
SIZES = {
    "": None,
    "10,000 files": "import os; os.makedirs('extra', exist_ok=True); "
    "[open(f'extra/{i:05d}.txt', 'w').write(str(i)) for i in range(10000)]",
    "one 500 MB file": "import os; os.makedirs('extra', exist_ok=True); f = open('extra/blob.bin', 'wb'); "
    "[f.write(os.urandom(1 << 24)) for _ in range(32)]",
}


def bench_share(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """`invoke share` against `dvc push --run-cache` + `git add` + `git commit` + `git push`, at three sizes of
    output: the example's own, plus a directory of 10,000 files, plus one 500 MB file."""
    return [_share_row(base / f"size-{n}", env, repeat, what, code) for n, (what, code) in enumerate(SIZES.items())]


def _share_row(base: Path, env: dict[str, str], repeat: int, size: str, code: str | None) -> Row:
    import yaml

    base.mkdir(parents=True)
    project = copy_project(base / "share-project", env=env, example=True)
    if code:
        spec = yaml.safe_load((project / "dvc.yaml").read_text())
        spec["stages"]["extra"] = {"cmd": f'python -c "{code}"', "outs": ["extra"]}
        (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (project / ".gitignore").write_text((project / ".gitignore").read_text() + "/extra/\n")
        git("add", "-A", cwd=project, env=env)
        git("commit", "--quiet", "-m", "An extra output", cwd=project, env=env)
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
        f"`invoke share` (local-folder DVC remote, bare origin){f', plus {size}' if size else ''}",
        raw_what="`dvc push --run-cache`; `git add`/`commit`/`push`",
        goal_extra=0.5,
    )
    return alternate(row, [[*INVOKE, "share", "--tag", "run-bench"]], raw, runner, env, repeat, before=reset)


def _prefix(project: Path, env: dict[str, str]) -> str:
    code = "import tasks; print(tasks.TAG_PREFIX)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _loop(base: Path, env: dict[str, str], name: str) -> tuple[Path, Path, dict[str, str]]:
    """A copy of this project published to a bare origin, a developer's clone of it, and the environment of a
    runner whose DVC remote is a local folder (DVC_REMOTE_URL, as a team would set it)."""
    project = copy_project(base / f"{name}-project", env=env, example=True)
    origin = base / f"{name}-origin.git"
    git("clone", "--quiet", "--bare", str(project), str(origin), cwd=base, env=env)
    dev = base / f"{name}-dev"
    git("clone", "--quiet", str(origin), str(dev), cwd=base, env=env)
    return origin, dev, {**env, "DVC_REMOTE_URL": str(base / f"{name}-dvc-remote")}


def _tagged(out: str) -> list[str]:
    return re.findall(r" as (\S+) and pushed it to ", out)


def _invoke(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*INVOKE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: invoke {' '.join(args)} failed in {cwd}:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def _run_on_runner(origin: Path, where: Path, tag: str, env: dict[str, str]) -> list[str]:
    """What the workflow does for `tag` (repro, then share), in a fresh clone; the stages that executed."""
    git("clone", "--quiet", str(origin), str(where), cwd=where.parent, env=env)
    git("checkout", "--quiet", "--detach", f"refs/tags/{tag}", cwd=where, env=env)
    out = _invoke(where, env, "repro")
    _invoke(where, env, "share", "--tag", tag)
    return re.findall(r"Running stage '([^']+)'", out)


def bench_runs(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """`invoke runs` on a repository with 500 run tags: 400 with results on main, 50 on results/<tag>, 50 waiting."""
    from src.runloop import record

    project = copy_project(base / "runs-project", env=env, example=True)
    prefix = _prefix(project, env)
    stamp = 1_800_000_000
    # Each run: a commit on main, its annotated tag, and (but every tenth) its results record as share writes it,
    # on main or (every tenth but one) on results/<tag>. Made with git's plumbing: records name full commit ids.
    parent = git("rev-parse", "HEAD", cwd=project, env=env)
    base_tree = git("rev-parse", "HEAD^{tree}", cwd=project, env=env)
    for i in range(500):
        tag, stamp = f"{prefix}-main-{i:05d}", stamp + 60
        dated = {**env, "GIT_COMMITTER_DATE": f"{stamp} +0000", "GIT_AUTHOR_DATE": f"{stamp} +0000"}
        tagged = git("commit-tree", base_tree, "-p", parent, "-m", f"Change {i}", cwd=project, env=dated)
        annotation = record.annotation(record.Launch(f"Run {tag}", "main"))
        git("tag", "--annotate", "--cleanup=verbatim", "-m", annotation, tag, tagged, cwd=project, env=dated)
        parent = tagged
        if i % 10 == 9:
            continue  # waiting for results
        outcome = record.Outcome(
            record.RESULTS, tag, tagged, f"Change {i}", (f"metrics/evaluate.json accuracy: 0.9{i}",)
        )
        results = git("commit-tree", base_tree, "-p", tagged, "-m", record.message(outcome), cwd=project, env=dated)
        if i % 10 == 8:
            git("update-ref", f"refs/heads/results/{tag}", results, cwd=project, env=env)
        else:
            parent = results
    git("update-ref", "refs/heads/main", parent, cwd=project, env=env)
    git("reset", "--quiet", "--hard", "main", cwd=project, env=env)
    origin = base / "runs-origin.git"
    git("clone", "--quiet", "--bare", str(project), str(origin), cwd=base, env=env)
    user = base / "runs-user"
    git("clone", "--quiet", str(origin), str(user), cwd=base, env=env)
    raw = [
        ["git", "for-each-ref", "--sort=-creatordate", "--format=%(refname)%00%(contents)", f"refs/tags/{prefix}*"],
        ["git", "log", "--fixed-strings", "--grep=Run-Tag: ", "--format=%H%00%P%00%B", "--remotes=origin"],
    ]
    row = Row("`invoke runs` (500 run tags), git only", raw_what="`git for-each-ref` + `git log` of the same refs")
    row.goal_seconds = 1.0
    return [alternate(row, [[*INVOKE, "runs", "--no-fetch", "--limit", "0"]], raw, user, env, repeat)]


GC_RUNS = 500
GC_LIST = """
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
print(sum(len(page.get("Contents", [])) for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench-gc")))
"""


def _gc_lock(tag: str, data_md5: str) -> tuple[str, dict[str, bytes]]:
    """A run's dvc.lock as share commits it (data restored, train and evaluate its own) and the objects it names."""
    import hashlib

    import yaml

    made = {"models/model.json": f'{{"weights": "{tag}"}}', "runs/train.json": f'{{"run": "{tag}"}}'}
    made["metrics/evaluate.json"] = f'{{"accuracy": 0.9, "run": "{tag}"}}'

    def out(path: str) -> dict:
        data = made[path].encode() if path in made else b"points"
        return {"path": path, "hash": "md5", "md5": hashlib.md5(data).hexdigest(), "size": len(data)}  # noqa: S324

    params = {"data": {"rows": 200}, "train": {"run": tag}, "evaluate": {"threshold": 0.5}}
    stages = {
        "data": {"deps": [], "outs": [out("data/points.csv")]},
        "train": {"deps": [out("data/points.csv")], "outs": [out("models/model.json"), out("runs/train.json")]},
        "evaluate": {"deps": [out("models/model.json")], "outs": [out("metrics/evaluate.json")]},
    }
    stages = {
        name: {"cmd": f"python -m {name}", "params": {"params.yaml": {name: params[name]}}, **stage}
        for name, stage in stages.items()
    }
    objects = {f"files/md5/{o['md5'][:2]}/{o['md5'][2:]}": made[o["path"]].encode() for o in stages["train"]["outs"]}
    objects.update(
        {f"files/md5/{o['md5'][:2]}/{o['md5'][2:]}": made[o["path"]].encode() for o in stages["evaluate"]["outs"]}
    )
    return yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False), objects


def _gc_history(project: Path, env: dict[str, str], prefix: str) -> dict[str, bytes]:
    """500 runs in `project`: every tenth a sweep's leg (a commit only its tag reaches), the others tagged on main;
    every results commit on results/<tag>, but for one run in ten that never ended. The objects and run-cache
    entries their dvc.lock files name, by key."""
    import hashlib

    from src.runloop import lock

    def data(text: str) -> str:
        return f"data {len(text.encode())}\n{text}\n"

    now, stream, marks = int(time.time()), [], project.parent / "gc-marks"
    head = git("rev-parse", "HEAD", cwd=project, env=env)
    runs, main = [], 0
    for i in range(GC_RUNS):
        stamp = now + 3600 if i == GC_RUNS - 1 else now - (GC_RUNS - i) * 3600  # the newest: after every object
        tag, who, leg = f"{prefix}-main-{i:05d}", f"Bench <bench@example.com> {stamp} +0000", i % 10 == 8
        ref = "refs/heads/leg" if leg else "refs/heads/main"
        parent = f"from {head}\n" if i == 0 else (f"from :{main}\n" if leg else "")
        main = main if leg else i + 1
        stream.append(f"commit {ref}\nmark :{i + 1}\ncommitter {who}\n" + data(f"Change {i}") + parent)
        stream.append("M 644 inline notes.txt\n" + data(str(i)))
        launch = f"Sweep: {prefix}-main-sweep\nLeg: 1/1\nSet: train.run={i}\n" if leg else ""
        stream.append(f"tag {tag}\nfrom :{i + 1}\ntagger {who}\n" + data(f"Run {tag}\n\nBranch: main\n{launch}"))
        runs.append((tag, who, i % 10 == 9 and i < GC_RUNS - 30))  # never ended (long ago: no longer going)
    done = ["git", "fast-import", "--quiet", f"--export-marks={marks}"]
    subprocess.run(done, cwd=project, env=env, input="".join(stream), text=True, check=True)
    sha = dict(line.split() for line in marks.read_text().splitlines())
    data_md5 = hashlib.md5(b"points").hexdigest()  # noqa: S324 - DVC's hash
    objects, stream = {f"files/md5/{data_md5[:2]}/{data_md5[2:]}": b"points"}, []
    for i, (tag, who, waiting) in enumerate(runs):
        if waiting:
            continue
        text, made = _gc_lock(tag, data_md5)
        objects.update(made)
        objects.update({f"runs/{e.key[:2]}/{e.key}/{e.value}": e.key.encode() for e in lock.run_cache_entries(text)})
        tagged = sha[f":{i + 1}"]
        message = f"Change {i}-results\n\nMetrics:\n    metrics/evaluate.json accuracy: 0.9\n\n"
        message += f"Run-Tag: {tag}\nRun-Commit: {tagged}\nRun-Outcome: results\nRun-Record: 2\n"
        stream.append(f"commit refs/heads/results/{tag}\ncommitter {who}\n" + data(message) + f"from {tagged}\n")
        stream.append("M 644 inline dvc.lock\n" + data(text))
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=project, env=env, input="".join(stream), text=True, check=True
    )
    git("update-ref", "-d", "refs/heads/leg", cwd=project, env=env)
    git("reset", "--quiet", "--hard", "main", cwd=project, env=env)
    return objects


def bench_gc(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """`invoke gc`'s dry run over 500 runs whose objects and run-cache entries are in moto's S3, against listing
    that bucket."""
    from concurrent.futures import ThreadPoolExecutor

    from src.runloop import services

    project = copy_project(base / "gc-project", env=env, example=True)
    objects = _gc_history(project, env, _prefix(project, env))
    origin = base / "gc-origin.git"
    git("clone", "--quiet", "--bare", str(project), str(origin), cwd=base, env=env)
    user = base / "gc-user"
    git("clone", "--quiet", str(origin), str(user), cwd=base, env=env)
    with services.s3_server(base / "moto", env) as s3:
        s3.ensure_bucket("bench-gc")
        client = s3.client()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket="bench-gc", Key=kv[0], Body=kv[1]), objects.items()))
        gc_env = {**env, **s3.env(), "DVC_REMOTE_URL": "s3://bench-gc"}
        ours = [*INVOKE, "gc", "--keep-last", "10", "--keep-days", "0"]
        what = f"`invoke gc` dry run ({GC_RUNS} runs, {len(objects)} objects in moto S3)"
        row = Row(what, raw_what="listing the bucket (boto3)", goal=2.0)
        alternate(row, [ours], [[sys.executable, "-c", GC_LIST]], user, gc_env, repeat)
        done = subprocess.run([*ours, "--json"], cwd=user, env=gc_env, capture_output=True, text=True, check=True)
    plan = json.loads(done.stdout)
    going = sum(o["goes"] for o in plan["objects"])
    kept = sum(r["kept"] for r in plan["runs"])
    figure = f"{kept} of {len(plan['runs'])} runs kept; {going} of {len(plan['objects'])} objects would go"
    return [row, Row("what that dry run decides", figure=figure)]


def bench_reproduce(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """A second `nox -s reproduce` of a run against `dvc repro --force` in a ready worktree of its results."""
    origin, dev, runner_env = _loop(base, env, "reproduce")
    (tag,) = _tagged(_invoke(dev, env, "tag-run", "--name", "bench"))
    _run_on_runner(origin, base / "reproduce-runner", tag, runner_env)
    git("pull", "--quiet", "--ff-only", cwd=dev, env=env)
    env = {**runner_env, "XDG_CACHE_HOME": str(base / "reproduce-cache")}
    nox = [str(BIN / "nox"), "--no-color", "-s", "reproduce", "--", tag]
    first = run([nox], dev, env)  # installs the run's venv from its Pipfile.lock: not what the row measures
    (venv,) = (base / "reproduce-cache" / "runloop" / "venvs").glob("*/bin/python")
    tree = base / "reproduce-worktree"
    git("worktree", "add", "--quiet", "--detach", str(tree), "HEAD", cwd=dev, env=env)
    dvc_config = ["-m", "dvc", "remote", "modify", "--local", "storage", "url", runner_env["DVC_REMOTE_URL"]]
    subprocess.run([str(venv), *dvc_config], cwd=tree, env=env, check=True, capture_output=True)
    subprocess.run([str(venv), "-m", "dvc", "pull", "--quiet"], cwd=tree, env=env, check=True, capture_output=True)
    raw_env = {**env, "PYTHONPATH": str(tree), "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'raw-mlflow.db'}"}
    row = Row(
        "second `nox -s reproduce` of a run (venv reused)",
        raw_what="`dvc repro --force` in a ready worktree",
        goal=1.3,
    )
    alternate(
        row, [nox], [[str(venv), "-m", "dvc", "repro", "--force"]], dev, env, repeat, raw_cwd=tree, raw_env=raw_env
    )
    install = Row(
        "first `nox -s reproduce` of a run (installs its venv from the lock)", figure=f"{first.seconds:.1f} s"
    )
    return [row, install]


def bench_sweep(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """Stages each leg of a sweep over a late-stage param executes after a base run (the run cache has the rest)."""
    origin, dev, runner_env = _loop(base, env, "sweep")
    # One MLflow store for every runner and the developer, as a team's server would be (promote reads it).
    runner_env = {**runner_env, "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}
    (tag,) = _tagged(_invoke(dev, env, "tag-run", "--name", "base"))
    executed = _run_on_runner(origin, base / "sweep-base", tag, runner_env)
    late = _late_param(dev)
    legs = _tagged(_invoke(dev, env, "tag-run", "--set", late, "--name", "bench"))
    per_leg = [_run_on_runner(origin, base / f"sweep-leg-{n}", leg, runner_env) for n, leg in enumerate(legs)]
    figure = "; ".join(f"leg {n + 1}: {', '.join(stages) or 'none'}" for n, stages in enumerate(per_leg))
    # The tasks no other row measures, once each, on this repository with a base run and a sweep's results.
    git("pull", "--quiet", "--ff-only", cwd=dev, env=env)
    tasks = {
        "tag-run --dry-run": ["tag-run", "--dry-run"],
        "runs --sweep": ["runs", "--sweep", "bench"],
        "compare": ["compare", "-a", tag, "-b", legs[0]],
        "watch": ["watch", "--run", legs[0], "--timeout", "60"],
        "promote --dry-run": ["promote", "--run", tag, "--dry-run"],
        "doctor --dry-run": ["doctor", "--dry-run"],
        "init --dry-run": ["init", "bench-project", "--dry-run"],
    }
    peaks = "; ".join(f"{what} {_peak([*INVOKE, *args], dev, runner_env)}" for what, args in tasks.items())
    return [
        Row(
            f"sweep over `{late.split('=')[0]}`, {len(legs)} legs: stages executed per leg",
            figure=f"base: {', '.join(executed)}; {figure}",
            goal_note="only the stages that depend on it",
        ),
        Row("peak RSS of the other tasks (one run each, after that sweep)", figure=peaks),
    ]


def _peak(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    try:
        return f"{run([cmd], cwd, env).peak_mib:.0f} MiB"
    except subprocess.CalledProcessError as exc:
        return f"failed (exit {exc.returncode})"


def _late_param(project: Path) -> str:
    """A `--set` for a param only the pipeline's last stage reads (evaluate.threshold in the example)."""
    import yaml

    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    last = list(stages)[-1]
    key = next(p for p in stages[last].get("params", []) if isinstance(p, str) and p.startswith(f"{last}."))
    value = yaml.safe_load((project / "params.yaml").read_text())
    for part in key.split("."):
        value = value[part]
    return f"{key}={value * 0.8:g},{value * 1.2:g}"


def _act(base: Path, env: dict[str, str], s3, server, dev: Path):
    """act as the runner of `dev`'s project, against these services; the venv of the lock is the one `nox -s
    reproduce` keeps for this user (built once, by the first job that needs it)."""
    from src.runloop import rehearsal, runner_cache

    workflow = Path(".github/workflows/github_actions_pipeline.yml")
    bucket, _prefix = rehearsal.dvc_remote_url(dev)
    s3.ensure_bucket(bucket)
    github = {
        "GITHUB_REPOSITORY": "bench/bench",
        "GITHUB_RUN_ID": "1",
        "GITHUB_SERVER_URL": "https://github.example",
        runner_cache.VENVS_ENV: str(runner_cache.venvs(os.environ)),
    }
    return rehearsal.Act(base / "act", workflow, *rehearsal.runner_settings(s3, server), github, environ=env)


def _act_job(act, origin: Path, dev: Path, base: Path, env: dict[str, str], label: str):
    """tag-run in `dev`, then the workflow for that tag in a fresh clone: (seconds, act's result)."""
    (tag,) = _tagged(_invoke(dev, env, "tag-run", "--name", label))
    runner = base / f"act-{label}"
    git("clone", "--quiet", str(origin), str(runner), cwd=base, env=env)
    git("checkout", "--quiet", "--detach", f"refs/tags/{tag}", cwd=runner, env=env)
    start = time.perf_counter()
    result = act.run(runner, tag)
    seconds = time.perf_counter() - start
    if result.job_result != "success":
        raise SystemExit(f"bench: the act run of {tag} failed:\n{result.log[-3000:]}")
    return seconds, result


ENV_STEP = "run: Set up the locked environment"


def bench_act(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """A restore-only run under act (another tag of a commit that has run), against the DVC and git work it does
    (`dvc pull`, `dvc push --run-cache`), and where its time goes, step by step: the route job's, the environment
    step's (the venv of the lock, reused), the tasks'."""
    from src.runloop import services

    origin, dev, _ = _loop(base, env, "act")
    with services.s3_server(base / "moto", env) as s3, services.mlflow_server(base / "mlflow", env, s3) as server:
        act = _act(base, env, s3, server, dev)
        s3_env = {**env, **s3.env()}
        _act_job(act, origin, dev, base, env, "first")  # executes the pipeline: what the next runs restore
        row = Row(
            "restore-only run under act (another tag of the same commit; the runner's caches warm)",
            raw_what="`dvc pull` + `dvc push --run-cache` in a clone",
            goal=2.0,
        )
        steps: list[dict[str, float]] = []
        for n in range(repeat):
            seconds, result = _act_job(act, origin, dev, base, env, f"again-{n}")
            row.ours.append(Sample(seconds, 0.0))
            steps.append(_step_seconds(result.entries))
            clone = base / f"act-raw-{n}"
            git("clone", "--quiet", str(origin), str(clone), cwd=base, env=env)
            local = ["remote", "modify", "--local", "storage", "endpointurl", s3.endpoint_url]
            subprocess.run([*DVC, *local], cwd=clone, env=s3_env, check=True, capture_output=True)
            row.raw.append(run([[*DVC, "pull", "--quiet"], [*DVC, "push", "--quiet", "--run-cache"]], clone, s3_env))
    names = list(dict.fromkeys(name for by_step in steps for name in by_step))
    where = ", ".join(f"{name} {statistics.median(s.get(name, 0.0) for s in steps):.2f} s" for name in names)
    setup = Row("environment step, a second run with the same lock (the venv reused)")
    setup.ours = [Sample(by_step.get(ENV_STEP, 0.0), 0.0) for by_step in steps]
    setup.goal_seconds = 1.0
    return [row, setup, Row("where a restore-only run's time goes (act's steps, medians)", figure=where)]


def bench_input(base: Path, env: dict[str, str], repeat: int) -> list[Row]:
    """A 500 MB input (`dvc add`, read by a stage) that the runner's DVC cache holds from an earlier job: the bytes
    the next job fetches of it from the DVC remote, counted in the S3 server's request log."""
    import yaml

    from src.runloop import services

    origin, dev, _ = _loop(base, env, "input")
    (dev / "inputs").mkdir()
    with open(dev / "inputs" / "big.bin", "wb") as f:
        for _ in range(32):
            f.write(os.urandom(1 << 24))
    with services.s3_server(base / "moto", env) as s3, services.mlflow_server(base / "mlflow", env, s3) as server:
        act = _act(base, env, s3, server, dev)
        s3_env = {**env, **s3.env()}
        subprocess.run([*DVC, "add", "--quiet", "inputs/big.bin"], cwd=dev, env=env, check=True)
        spec = yaml.safe_load((dev / "dvc.yaml").read_text())
        read = (
            "import hashlib; open('big.md5', 'w').write(hashlib.md5(open('inputs/big.bin', 'rb').read()).hexdigest())"
        )
        spec["stages"]["big"] = {"cmd": f'python -c "{read}"', "deps": ["inputs/big.bin"], "outs": ["big.md5"]}
        (dev / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (dev / ".gitignore").write_text((dev / ".gitignore").read_text() + "/big.md5\n")
        local = ["remote", "modify", "--local", "storage", "endpointurl", s3.endpoint_url]
        subprocess.run([*DVC, *local], cwd=dev, env=s3_env, check=True, capture_output=True)
        subprocess.run([*DVC, "push", "--quiet", "inputs/big.bin.dvc"], cwd=dev, env=s3_env, check=True)
        git("add", "-A", cwd=dev, env=env)
        git("commit", "--quiet", "-m", "A 500 MB input", cwd=dev, env=env)
        git("push", "--quiet", "origin", "main", cwd=dev, env=env)
        md5 = yaml.safe_load((dev / "inputs" / "big.bin.dvc").read_text())["outs"][0]["md5"]
        log = base / "moto" / "moto.log"

        def gets() -> int:
            return sum(1 for line in log.read_text(errors="replace").splitlines() if "GET " in line and md5[2:] in line)

        before = gets()
        _act_job(act, origin, dev, base, env, "cold")
        first = gets() - before
        _act_job(act, origin, dev, base, env, "warm")
        second = gets() - before - first
    return [
        Row(
            "a 500 MB DVC input the runner's cache holds: S3 GETs of its object (first run, then the next)",
            figure=f"first run {first} GET(s) (500 MB); next run {second} GET(s) ({second * 500} MB)",
            goal_note="0 bytes the next run" + (" (met)" if second == 0 else " (not met)"),
        )
    ]


def _step_seconds(entries: list[dict]) -> dict[str, float]:
    """Each step's seconds ("job: step"), from the duration act prints when the step ends ("… [1.234s]")."""
    found: dict[str, float] = {}
    for entry in entries:
        if "stepResult" in entry and (match := re.search(r"\[([0-9.hmsµu]+)\]$", str(entry.get("msg", "")))):
            found[f"{entry.get('jobID', '?')}: {entry['step']}"] = _go_seconds(match.group(1))
    return found


def _go_seconds(text: str) -> float:
    """A Go duration as act prints it ("1m2.5s", "103.4ms", "7.2µs") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|us|µs|ns|h|m|s)", text))


BENCHES = {
    "list": bench_list,
    "repro": bench_repro,
    "share": bench_share,
    "runs": bench_runs,
    "gc": bench_gc,
    "reproduce": bench_reproduce,
    "sweep": bench_sweep,
    "act": bench_act,
    "input": bench_input,
}


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
