"""`dvc repro` as the tasks run it: in a process group a signal stops, and without DVC's reminders.

`dvc repro` runs through `python -m src.runloop.pipeline repro` (`main`): DVC's own reproduce. After every repro
that changes dvc.lock, DVC's command prints "To track the changes with git, run: git add dvc.lock … Use `dvc push`
to send your updates" — the opposite of this template's flow, where the runner pushes the data and commits dvc.lock
(`invoke share`) and a local dvc.lock stays out of commits. DVC has a switch for the first reminder, its SCM
context's `quiet` (its own experiment runner sets it), but no config key or variable for it, and none for the
second; `core.autostage` would silence the first by staging dvc.lock, which would then ride along in the next
`git commit` with data the remote may not have. So `main` runs DVC's reproduce through its Python API with that
switch set, DVC's log lines and errors unchanged.
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

from src.runloop import environment, lock, processes, tracking
from src.runloop.git import Git, listed
from src.runloop.refusal import Refused

# No invoke at import: `python -m src.runloop.pipeline repro` is the process that runs DVC, and every import there
# is paid on each `invoke repro`.

# `dvc repro` for the tasks (flags: --pull, --force, --no-run-cache), without DVC's reminders.
REPRO = [sys.executable, "-m", "src.runloop.pipeline", "repro"]
# After a stop signal: how long the stages get to close their MLflow runs before SIGTERM, then SIGKILL.
GRACE_SECONDS = (10.0, 5.0)


def reproduce(cmd: list[str], env: Mapping[str, str]) -> None:
    """Run `cmd` (dvc repro) in a process group of its own; a SIGINT or SIGTERM here stops the whole group (see
    processes.run_stoppable), then one line says what happened."""
    code, signum = processes.run_stoppable(cmd, env, GRACE_SECONDS)
    if signum:
        raise processes.Stopped(
            f"Stopped by {signal.Signals(signum).name}: the pipeline and its stages were stopped (a running stage "
            "marks its MLflow run KILLED) — run `invoke repro` again to finish it.",
            code=128 + signum,
        )
    if code != 0:
        raise Refused("The pipeline failed (DVC's message is above) — fix the failing stage and run again.")


class Outcome(NamedTuple):
    """What the reproducing process found after DVC's reproduce, for the task that started it."""

    metrics_table: str  # `dvc metrics show`, as DVC prints it
    metric_lines: list[str]  # the same, one `file key: value` per line
    status: dict[str, str] | None  # `dvc status` (stage → DVC's words) when dvc.lock changed, else None
    failed: list[str] = []  # the stages DVC failed to reproduce


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
    lock_before = _lock_text()
    try:
        with Repo() as repo:
            repo.scm_context.quiet = True
            stages = repo.reproduce(pull=args.pull, force=args.force, run_cache=not args.no_run_cache)
            if not stages:
                ui.write("Data and pipelines are up to date.")
            if args.report:
                dvc = Dvc(repo, environment.ROOT)
                status = None
                if _lock_text() != lock_before:  # a no-op repro leaves it alone: no status to ask for
                    status = {name: json.dumps(changes) for name, changes in repo.status().items()}
                outcome = Outcome(dvc.metrics_table(), dvc.metric_lines(), status)
                Path(args.report).write_text(json.dumps(outcome._asdict()), encoding="utf-8")
    except DvcException as exc:
        log.exception("")
        if args.report and type(exc).__name__ == "ReproductionError":  # "failed to reproduce 'train'"
            failed = re.findall(r"'([^']+)'", str(exc))
            Path(args.report).write_text(json.dumps(Outcome("", [], None, failed)._asdict()), encoding="utf-8")
        return 255
    except KeyboardInterrupt:
        log.exception("interrupted by the user")
        return 252
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
