"""The DVC pipeline: what dvc.yaml declares and dvc.lock records, and `dvc repro` run as the tasks need it.

Reading the two files takes milliseconds, where each `python -m dvc …` is a second: the checks around a no-op
`invoke repro` read them here and ask DVC itself only when the pipeline changed something.

`dvc repro` runs as a process group a signal stops (`reproduce`), through `python -m src.runloop.pipeline repro`
(`main`): DVC's own reproduce without its reminders. After every repro that changes dvc.lock, DVC's command prints
"To track the changes with git, run: git add dvc.lock … Use `dvc push` to send your updates" — the opposite of this
template's flow, where the runner pushes the data and commits dvc.lock (`invoke share`) and a local dvc.lock stays
out of commits. DVC has a switch for the first reminder, its SCM context's `quiet` (its own experiment runner sets
it), but no config key or variable for it, and none for the second; `core.autostage` would silence the first by
staging dvc.lock, which would then ride along in the next `git commit` with data the remote may not have. So
`main` runs DVC's reproduce through its Python API with that switch set, DVC's log lines and errors unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from src.runloop import environment, tracking

if TYPE_CHECKING:
    from invoke import Context

# No invoke at import: `python -m src.runloop.pipeline repro` is the process that runs DVC, and every import there
# is paid on each `invoke repro`.

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
# `dvc repro` for the tasks (flags: --pull, --force, --no-run-cache), without DVC's reminders.
REPRO = [sys.executable, "-m", "src.runloop.pipeline", "repro"]
# After a stop signal: how long the stages get to close their MLflow runs before SIGTERM, then SIGKILL.
GRACE_SECONDS = (10.0, 5.0)


class Output(NamedTuple):
    stage: str
    path: str  # relative to the project's root
    cache: bool
    push: bool


def stages(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages; a file DVC could not read either is a SettingsError naming the file and the place."""
    path = (root or environment.ROOT) / DVC_YAML
    if not path.is_file():
        raise environment.SettingsError(f"There is no {DVC_YAML} in {path.parent} — run this in the project's root")
    content = environment.read_yaml(path)
    found = content.get("stages") if isinstance(content, dict) else None
    if not isinstance(found, dict) or not found:
        raise environment.SettingsError(f"{DVC_YAML} has no 'stages:' mapping — define the pipeline's stages there")
    for name, stage in found.items():
        if not isinstance(stage, dict) or not ("cmd" in stage or "do" in stage):
            raise environment.SettingsError(f"{DVC_YAML}: stage {name!r} has no 'cmd:' — give it the command to run")
    return found


def outputs(defined: Mapping[str, dict[str, Any]]) -> list[Output]:
    """Every output the stages declare (outs, metrics, plots), with its cache and push settings."""
    found = []
    for name, stage in defined.items():
        if "do" in stage:  # foreach/matrix: the paths are templates DVC expands
            continue
        wdir = Path(stage.get("wdir", "."))
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                options = options if isinstance(options, dict) else {}
                found.append(
                    Output(
                        name,
                        os.path.normpath(wdir / str(path)),
                        options.get("cache", True) is not False,
                        options.get("push", True) is not False,
                    )
                )
    return found


def unshareable(defined: Mapping[str, dict[str, Any]]) -> list[str]:
    """Outputs the DVC remote will never hold: `cache: false` (git would have to) and `push: false`."""
    return [
        f"{o.path} ({o.stage}, {'cache: false' if not o.cache else 'push: false'})"
        for o in outputs(defined)
        if not (o.cache and o.push)
    ]


def lock_text(root: Path | None = None) -> str | None:
    path = (root or environment.ROOT) / DVC_LOCK
    return path.read_text(encoding="utf-8") if path.is_file() else None


def not_up_to_date(defined: Mapping[str, dict[str, Any]], root: Path | None = None) -> dict[str, str]:
    """Stages that dvc.lock does not record, or whose outputs are missing or not the recorded size: stage → why.

    This is what DVC 3.67 gets wrong under `dvc repro --pull`: it says "up to date" and skips a new stage whose
    outputs are all `cache: false`, leaving no lock entry and no output.
    """
    root = root or environment.ROOT
    text = lock_text(root)
    locked = ((environment.read_yaml(root / DVC_LOCK) if text else None) or {}).get("stages") or {}
    by_stage: dict[str, list[Output]] = {}
    for out in outputs(defined):
        by_stage.setdefault(out.stage, []).append(out)
    found = {}
    for name, stage in defined.items():
        if stage.get("frozen"):
            continue
        if "do" in stage:
            if not any(key.startswith(f"{name}@") for key in locked):
                found[name] = f"{DVC_LOCK} records none of its instances"
            continue
        if name not in locked:
            found[name] = f"{DVC_LOCK} has no entry for it: it never ran"
            continue
        sizes = {os.path.normpath(o.get("path", "")): o.get("size") for o in locked[name].get("outs") or []}
        for out in by_stage.get(name, []):
            if "${" in out.path:
                continue
            path = root / out.path
            if not path.exists():
                found[name] = f"its output {out.path} is missing"
                break
            size = sizes.get(os.path.relpath(out.path, stage.get("wdir", ".")), sizes.get(out.path))
            if path.is_file() and isinstance(size, int) and path.stat().st_size != size:
                found[name] = f"its output {out.path} is not what {DVC_LOCK} records"
                break
    return found


def reproduce(cmd: list[str], env: Mapping[str, str]) -> None:
    """Run `cmd` (dvc repro) in a process group of its own; a SIGINT or SIGTERM here stops the whole group.

    The group gets SIGINT first: DVC waits for the running stage, which closes its MLflow run as KILLED and exits;
    a second signal, or GRACE_SECONDS later, SIGTERM and then SIGKILL. Then one line says what happened.
    """
    from invoke import Exit

    received: list[tuple[int, float]] = []  # (signal, when)
    proc: subprocess.Popen | None = None

    def on_signal(signum: int, _frame: object) -> None:
        received.append((signum, time.monotonic()))
        if proc is not None:
            _signal_group(proc.pid, signal.SIGINT if len(received) == 1 else signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(cmd, env=dict(env), start_new_session=True)
        if received:  # it came between the start and `proc` being set
            _signal_group(proc.pid, signal.SIGINT)
        code = _wait(proc, received)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        signum = received[0][0]
        raise Exit(
            f"Stopped by {signal.Signals(signum).name}: the pipeline and its stages were stopped (a running stage "
            "marks its MLflow run KILLED) — run `invoke repro` again to finish it.",
            code=128 + signum,
        )
    if code != 0:
        raise Exit("The pipeline failed (DVC's message is above) — fix the failing stage and run again.", code=1)


def _wait(proc: subprocess.Popen, received: list[tuple[int, float]]) -> int:
    """The leader's exit code; after a stop signal, once the whole group is gone, escalating while it lingers."""
    code: int | None = None
    escalated = 0
    exited = _exit_notice(proc.pid)
    try:
        while True:
            if code is None:
                code = _wait_for_exit(proc, exited, 0.5)
            if not received:
                if code is not None:
                    return code
                continue
            if code is not None and not _group_alive(proc.pid):
                return code
            elapsed = time.monotonic() - received[0][1]
            if escalated < len(GRACE_SECONDS) and elapsed > sum(GRACE_SECONDS[: escalated + 1]):
                _signal_group(proc.pid, (signal.SIGTERM, signal.SIGKILL)[escalated])
                escalated += 1
            elif escalated == len(GRACE_SECONDS) and elapsed > sum(GRACE_SECONDS) + 5:
                return proc.wait()  # SIGKILLed; what still shows is beyond reach (a process stuck in the kernel)
            if code is not None:
                time.sleep(0.1)
    finally:
        if exited is not None:
            os.close(exited)


def _exit_notice(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux's pidfd), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_for_exit(proc: subprocess.Popen, exited: int | None, seconds: float) -> int | None:
    """`proc`'s exit code if it exits within `seconds`, else None. Woken by the exit itself where the OS can tell
    (Popen.wait(timeout) polls with sleeps of up to 50 ms, which every no-op `invoke repro` paid)."""
    if exited is not None:
        select.select([exited], [], [], seconds)
        return proc.poll()
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for init to reap them do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


class Outcome(NamedTuple):
    """What the reproducing process found after DVC's reproduce, for the task that started it."""

    metrics_table: str  # `dvc metrics show`, as DVC prints it
    metric_lines: list[str]  # the same, one `file key: value` per line
    status: dict[str, str] | None  # `dvc status` (stage → DVC's words) when dvc.lock changed, else None


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
    lock_before = lock_text()
    try:
        with Repo() as repo:
            repo.scm_context.quiet = True
            stages = repo.reproduce(pull=args.pull, force=args.force, run_cache=not args.no_run_cache)
            if not stages:
                ui.write("Data and pipelines are up to date.")
            if args.report:
                dvc = Dvc(repo, environment.ROOT)
                status = None
                if lock_text() != lock_before:  # a no-op repro leaves it alone: no status to ask for
                    status = {name: json.dumps(changes) for name, changes in repo.status().items()}
                outcome = Outcome(dvc.metrics_table(), dvc.metric_lines(), status)
                Path(args.report).write_text(json.dumps(outcome._asdict()), encoding="utf-8")
    except DvcException:
        log.exception("")
        return 255
    except KeyboardInterrupt:
        log.exception("interrupted by the user")
        return 252
    return 0


def read_outcome(path: Path) -> Outcome:
    """What `main --report` wrote; an empty outcome when it wrote nothing."""
    try:
        return Outcome(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return Outcome("", [], None)


def keep_committed_lock(c: Context) -> None:
    """After a reproduction without the remote, keep the committed dvc.lock when only the run records differ.

    Without the remote, the runner's `runs/<stage>.json` (which name its MLflow runs) cannot come back, so DVC
    runs or restores the stages and records this machine's instead. When that is all dvc.lock says differently
    from HEAD's, the data reproduced byte for byte: HEAD's dvc.lock stays and the tree stays clean. Otherwise
    dvc.lock keeps the new hashes, and this says which outputs came out differently.
    """
    from src.runloop.commands import git, listed, must, run

    committed = git(c, "show", f"HEAD:{DVC_LOCK}")
    if committed is None or run(c, "git", "diff", "--quiet", "HEAD", "--", DVC_LOCK).ok:
        return
    import yaml

    try:
        differ = changed_outputs(yaml.safe_load(committed), yaml.safe_load((environment.ROOT / DVC_LOCK).read_text()))
    except (OSError, yaml.YAMLError):
        return
    if differ is None:
        return  # code, params or data in changed: a new result, not a reproduction
    records = [path for path in differ if tracking.is_run_record(path)]
    if records == differ:
        must(c, f"Restoring the committed {DVC_LOCK}", "git", "checkout", "HEAD", "--", DVC_LOCK)
        print(
            f"{DVC_LOCK}: every output is byte for byte what HEAD's records, except the MLflow run records "
            f"({listed(records)}), which name this machine's runs — so {DVC_LOCK} stays as committed."
        )
    else:
        others = [path for path in differ if path not in records]
        print(f"{DVC_LOCK}: same code, params and data in, but these outputs differ from HEAD's: {listed(others)}.")


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
