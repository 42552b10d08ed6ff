"""The DVC pipeline: what dvc.yaml declares and dvc.lock records, and `dvc repro` run as a group that can be stopped.

Reading the two files takes milliseconds, where each `python -m dvc …` is a second: the checks around a no-op
`invoke repro` read them here and ask DVC itself only when the pipeline changed something.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from invoke import Exit

from src.runloop import environment
from src.runloop.commands import DVC

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
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


def dvc_status(env: Mapping[str, str], defined: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """What `dvc status` reports changed (stage → DVC's words), stages marked always_changed aside."""
    shown = subprocess.run([*DVC, "status", "--json"], env=dict(env), capture_output=True, text=True)
    try:
        status = json.loads(shown.stdout) if shown.returncode == 0 else None
    except ValueError:
        status = None
    if not isinstance(status, dict):
        said = environment.one_line(environment.scrub((shown.stderr or shown.stdout).strip(), env))
        return {"(dvc status)": f"failed: {said or 'no output'}"}
    return {
        name: environment.one_line(json.dumps(changes), 200)
        for name, changes in status.items()
        if not (defined.get(name) or {}).get("always_changed")
    }


def reproduce(cmd: list[str], env: Mapping[str, str]) -> None:
    """Run `cmd` (dvc repro) in a process group of its own; a SIGINT or SIGTERM here stops the whole group.

    The group gets SIGINT first: DVC waits for the running stage, which closes its MLflow run as KILLED and exits;
    a second signal, or GRACE_SECONDS later, SIGTERM and then SIGKILL. Then one line says what happened.
    """
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
    while True:
        if code is None:
            try:
                code = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
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
