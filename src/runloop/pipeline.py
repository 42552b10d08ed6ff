"""Reproducing the DVC pipeline as the tasks do: DVC's repro without its reminders, and what it leaves in dvc.lock.

After every repro that changes dvc.lock, DVC's command prints "To track the changes with git, run: git add
dvc.lock … Use `dvc push` to send your updates" — the opposite of this template's flow, where the runner pushes
the data and commits dvc.lock (`invoke share`) and a local dvc.lock stays out of commits. DVC has a switch for the
first reminder, its SCM context's `quiet` (its own experiment runner sets it), but no config key or variable for
it, and none for the second; `core.autostage` would silence the first by staging dvc.lock, which would then ride
along in the next `git commit` with data the remote may not have. So `python -m src.runloop.pipeline repro` runs
DVC's own reproduce through its Python API with that switch set, DVC's log lines and errors unchanged.
"""

from __future__ import annotations

import logging
import sys

from invoke import Context

from src.runloop import environment, tracking
from src.runloop.commands import git, listed, must, run

# `dvc repro` for the tasks (flags: --pull, --force, --no-run-cache).
REPRO = [sys.executable, "-m", "src.runloop.pipeline", "repro"]
LOCK = "dvc.lock"


def main(argv: list[str]) -> int:
    """`repro [--pull] [--force] [--no-run-cache]`: DVC's reproduce, its exit codes and messages, no reminders."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m src.runloop.pipeline")
    parser.add_argument("command", choices=["repro"])
    parser.add_argument("--pull", action="store_true", help="pull missing outputs and run-cache entries first")
    parser.add_argument("--force", action="store_true", help="run every stage, even those DVC finds up to date")
    parser.add_argument("--no-run-cache", action="store_true", help="execute stages instead of restoring them")
    args = parser.parse_args(argv)

    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.ui import ui

    log = logging.getLogger("dvc")  # DVC's own handler and format: "ERROR: failed to reproduce 'train': …"
    ui.enable()
    try:
        with Repo() as repo:
            repo.scm_context.quiet = True
            stages = repo.reproduce(pull=args.pull, force=args.force, run_cache=not args.no_run_cache)
    except DvcException:
        log.exception("")
        return 255
    except KeyboardInterrupt:
        log.exception("interrupted by the user")
        return 252
    if not stages:
        ui.write("Data and pipelines are up to date.")
    return 0


def keep_committed_lock(c: Context) -> None:
    """After a reproduction without the remote, keep the committed dvc.lock when only the run records differ.

    Without the remote, the runner's `runs/<stage>.json` (which name its MLflow runs) cannot come back, so DVC
    runs or restores the stages and records this machine's instead. When that is all dvc.lock says differently
    from HEAD's, the data reproduced byte for byte: HEAD's dvc.lock stays and the tree stays clean. Otherwise
    dvc.lock keeps the new hashes, and this says which outputs came out differently.
    """
    committed = git(c, "show", f"HEAD:{LOCK}")
    if committed is None or run(c, "git", "diff", "--quiet", "HEAD", "--", LOCK).ok:
        return
    import yaml

    try:
        differ = changed_outputs(yaml.safe_load(committed), yaml.safe_load((environment.ROOT / LOCK).read_text()))
    except (OSError, yaml.YAMLError):
        return
    if differ is None:
        return  # code, params or data in changed: a new result, not a reproduction
    records = [path for path in differ if tracking.is_run_record(path)]
    if records == differ:
        must(c, f"Restoring the committed {LOCK}", "git", "checkout", "HEAD", "--", LOCK)
        print(
            f"{LOCK}: every output is byte for byte what HEAD's records, except the MLflow run records "
            f"({listed(records)}), which name this machine's runs — so {LOCK} stays as committed."
        )
    else:
        others = [path for path in differ if path not in records]
        print(f"{LOCK}: same code, params and data in, but these outputs differ from HEAD's: {listed(others)}.")


def changed_outputs(old: dict, new: dict) -> list[str] | None:
    """The outputs whose hashes differ between two dvc.lock files; None when code, params or data in differ.

    A stage's run record as the dependency of a later stage (evaluate reads train's) is not data in: its change
    is the upstream output's, listed once.
    """
    old_stages, new_stages = (old or {}).get("stages", {}), (new or {}).get("stages", {})
    if old_stages.keys() != new_stages.keys():
        return None
    differ = []
    for stage, was in old_stages.items():
        now = new_stages[stage]
        if _inputs(was) != _inputs(now):
            return None
        was_outs = {o["path"]: o for o in was.get("outs", [])}
        now_outs = {o["path"]: o for o in now.get("outs", [])}
        if was_outs.keys() != now_outs.keys():
            return None
        differ += [path for path, out in was_outs.items() if out != now_outs[path]]
    return differ


def _inputs(stage: dict) -> dict:
    deps = [d for d in stage.get("deps", []) if not tracking.is_run_record(d.get("path", ""))]
    return {**{k: v for k, v in stage.items() if k != "outs"}, "deps": deps}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
