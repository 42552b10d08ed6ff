"""`dvc repro` as the tasks run it: in a process group a signal stops, and without DVC's reminders.

`dvc repro` runs through `python -m src.runloop.pipeline repro` (`main`): DVC's own reproduce. After every repro
that changes dvc.lock, DVC's command prints "To track the changes with git, run: git add dvc.lock … Use `dvc push`
to send your updates" — the opposite of this template's flow, where the runner pushes the data and commits dvc.lock
(`invoke share`) and a local dvc.lock stays out of commits. DVC has a switch for the first reminder, its SCM
context's `quiet` (its own experiment runner sets it), but no config key or variable for it, and none for the
second; `core.autostage` would silence the first by staging dvc.lock, which would then ride along in the next
`git commit` with data the remote may not have. So `main` runs DVC's reproduce through its Python API with that
switch set, DVC's log lines and errors unchanged. `SCRIPT` does the same where this package is not importable (a
past run's worktree and venv, `nox -s reproduce`).

When DVC's cache runs out of room (the disk is full, or a file-size limit stops a write), DVC logs the failed
write and may go on, or fail with an error about something else; `main` notes it and the task says it in one line:
the disk, where, and how much the cache holds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from src.runloop import disk, environment, lock, processes, tracking
from src.runloop.git import Git, listed
from src.runloop.refusal import Refused

# No invoke at import: `python -m src.runloop.pipeline repro` is the process that runs DVC, and every import there
# is paid on each `invoke repro`.

# `dvc repro` for the tasks (flags: --pull, --force, --no-run-cache), without DVC's reminders.
REPRO = [sys.executable, "-m", "src.runloop.pipeline", "repro"]
# After a stop signal: how long the stages get to close their MLflow runs before SIGTERM, then SIGKILL.
GRACE_SECONDS = (10.0, 5.0)


# The same without this package: DVC's reproduce with the reminders off, for an interpreter that has DVC alone (a
# past run's venv, in its worktree, whose own src/runloop may be older). `python -c SCRIPT [--force] [--no-run-cache]`.
SCRIPT = """
import logging, sys
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.ui import ui

ui.enable()
try:
    with Repo() as repo:
        if hasattr(repo, "scm_context"):
            repo.scm_context.quiet = True  # no "git add dvc.lock": nothing of a reproduction is committed
        stages = repo.reproduce(force="--force" in sys.argv, run_cache="--no-run-cache" not in sys.argv)
        if not stages:
            ui.write("Data and pipelines are up to date.")
except DvcException:
    logging.getLogger("dvc").exception("")
    sys.exit(255)
"""


def reproduce(flags: list[str], env: Mapping[str, str], report: Path) -> None:
    """Run `dvc repro FLAGS` (REPRO) in a process group of its own, its outcome written to `report`; a SIGINT or
    SIGTERM here stops the whole group (see processes.run_stoppable), then one line says what happened."""
    code, signum = processes.run_stoppable([*REPRO, *flags, "--report", str(report)], env, GRACE_SECONDS)
    if signum:
        raise processes.Stopped(
            f"Stopped by {signal.Signals(signum).name}: the pipeline and its stages were stopped (a running stage "
            "marks its MLflow run KILLED) — run `invoke repro` again to finish it.",
            code=128 + signum,
        )
    if code != 0:
        if full := read_outcome(report).disk_full:
            raise Refused(full)
        raise Refused("The pipeline failed (DVC's message is above) — fix the failing stage and run again.")


class Outcome(NamedTuple):
    """What the reproducing process found after DVC's reproduce, for the task that started it."""

    metrics_table: str  # `dvc metrics show`, as DVC prints it
    metric_lines: list[str]  # the same, one `file key: value` per line
    status: dict[str, str] | None  # `dvc status` (stage → DVC's words) when dvc.lock changed, else None
    failed: list[str] = []  # the stages DVC failed to reproduce
    disk_full: str = ""  # the line to say when DVC's cache ran out of room (cache_full)


class _FullDisk(logging.Handler):
    """Notes the first error DVC (or dvc_data, dvc_objects) logs because a disk or a file-size limit ran out: a
    failed transfer into the cache is logged, and DVC may go on or fail on something else."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is None and record.exc_info:
            self.error = disk.full(record.exc_info[1])


def cache_full(error: OSError, cache: Path) -> str:
    """One line for a write of DVC's that ran out of room (into its cache, as a rule): the disk is full (or a
    file-size limit stopped it), where, and how much the cache holds."""
    held = disk.size(disk.held(cache))
    written = Path(os.fsdecode(error.filename2 or error.filename or cache))  # a copy's target is filename2
    where = f"its cache {cache}" if written == cache or cache in written.parents else str(written)
    cached = "the cache" if where.startswith("its cache") else f"its cache {cache}"
    if error.errno == disk.TOO_LARGE:
        limit = disk.file_size_limit()
        most = f"at most {disk.size(limit)} per file" if limit is not None else "files no larger"
        return (
            f"A file-size limit stopped DVC writing to {where} ({error.strerror}: this process may write {most}, "
            f"`ulimit -f`); {cached} holds {held} — raise the limit (`ulimit -f unlimited`), then run `invoke repro` "
            "again."
        )
    free, total = disk.free(written)
    mount = disk.mount_point(written)
    return (
        f"The disk is full: DVC could not write to {where} ({error.strerror}); the file system at {mount} has "
        f"{disk.size(free)} free of {disk.size(total)}, and {cached} holds {held} — free space there, or move the "
        "cache to a larger disk (`dvc cache dir PATH`), then run `invoke repro` again."
    )


def main(argv: list[str]) -> int:
    """`repro [--pull] [--force] [--no-run-cache] [--report FILE]`: DVC's reproduce, its exit codes and messages, no
    reminders; with --report, what the task reports afterwards, asked of the same open repository (no second DVC)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m src.runloop.pipeline")
    parser.add_argument("command", choices=["repro"])
    parser.add_argument("--pull", action="store_true", help="pull missing outputs and run-cache entries first")
    parser.add_argument("--force", action="store_true", help="run every stage, even those DVC finds up to date")
    parser.add_argument("--no-run-cache", action="store_true", help="execute stages instead of restoring them")
    parser.add_argument("--report", help="write the metrics and, when dvc.lock changed, DVC's status here (JSON)")
    args = parser.parse_args(argv)

    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.ui import ui

    from src.runloop.dvc_repo import Dvc

    log = logging.getLogger("dvc")  # DVC's own handler and format: "ERROR: failed to reproduce 'train': …"
    ui.enable()
    signal.signal(signal.SIGTERM, _stop_group)  # the task died (processes.die_with_parent): stop the stage too
    watch = _FullDisk()
    logging.getLogger().addHandler(watch)  # DVC's loggers pass their records on to the root's handlers
    lock_before = _lock_text()
    cache = environment.ROOT / ".dvc" / "cache"
    try:
        with Repo() as repo:
            cache = Path(repo.cache.local_cache_dir or cache)
            repo.scm_context.quiet = True
            stages = repo.reproduce(pull=args.pull, force=args.force, run_cache=not args.no_run_cache)
            if not stages:
                ui.write("Data and pipelines are up to date.")
            if args.report and not watch.error:
                dvc = Dvc(repo, environment.ROOT)
                status = None
                if _lock_text() != lock_before:  # a no-op repro leaves it alone: no status to ask for
                    status = {name: json.dumps(changes) for name, changes in repo.status().items()}
                outcome = Outcome(dvc.metrics_table(), dvc.metric_lines(), status)
                Path(args.report).write_text(json.dumps(outcome._asdict()), encoding="utf-8")
    except (DvcException, OSError) as exc:
        if not isinstance(exc, DvcException) and disk.full(exc) is None:
            raise
        log.exception("")
        watch.error = watch.error or disk.full(exc)
        failed = re.findall(r"'([^']+)'", str(exc)) if type(exc).__name__ == "ReproductionError" else []
        full = cache_full(watch.error, cache) if watch.error else ""
        if args.report:  # "failed to reproduce 'train'"; the cache's disk full
            Path(args.report).write_text(json.dumps(Outcome("", [], None, failed, full)._asdict()), encoding="utf-8")
        return 255
    except KeyboardInterrupt:
        log.exception("interrupted by the user")
        return 252
    if watch.error:  # DVC logged it and went on: what it made is not all in the cache
        if args.report:
            outcome = Outcome("", [], None, [], cache_full(watch.error, cache))
            Path(args.report).write_text(json.dumps(outcome._asdict()), encoding="utf-8")
        return 255
    return 0


def _stop_group(signum: int, _frame: object) -> None:
    """SIGTERM to this process alone (its task died): pass it to the stage DVC runs in this group, then unwind."""
    signal.signal(signum, signal.SIG_IGN)
    os.killpg(os.getpgrp(), signum)
    raise KeyboardInterrupt


def read_outcome(path: Path) -> Outcome:
    """What `main --report` wrote; an empty outcome when it wrote nothing."""
    try:
        return Outcome(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return Outcome("", [], None)


def _lock_text() -> str | None:
    path = environment.ROOT / lock.DVC_LOCK
    return path.read_text(encoding="utf-8") if path.is_file() else None


def keep_committed_lock(git: Git) -> None:
    """After a reproduction without the remote, keep the committed dvc.lock when only the run records differ.

    Without the remote, the runner's `runs/<stage>.json` (which name its MLflow runs) cannot come back, so DVC
    runs or restores the stages and records this machine's instead. When that is all dvc.lock says differently
    from HEAD's, the data reproduced byte for byte: HEAD's dvc.lock stays and the tree stays clean. Otherwise
    dvc.lock keeps the new hashes, and this says which outputs came out differently.
    """
    committed = git("show", f"HEAD:{lock.DVC_LOCK}")
    if committed is None or git.run("diff", "--quiet", "HEAD", "--", lock.DVC_LOCK).returncode == 0:
        return
    import yaml

    try:
        differ = lock.Lock(committed).changed_outputs(lock.Lock.read())
    except (OSError, yaml.YAMLError):
        return
    if differ is None:
        return  # code, params or data in changed: a new result, not a reproduction
    records = [path for path in differ if tracking.is_run_record(path)]
    name = lock.DVC_LOCK
    if records == differ:
        git.must(f"Restoring the committed {name}", "checkout", "HEAD", "--", name)
        print(
            f"{name}: every output is byte for byte what HEAD's records, except the MLflow run records "
            f"({listed(records)}), which name this machine's runs — so {name} stays as committed."
        )
    else:
        others = [path for path in differ if path not in records]
        print(f"{name}: same code, params and data in, but these outputs differ from HEAD's: {listed(others)}.")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
