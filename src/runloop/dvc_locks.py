"""DVC's locks in a workspace: who holds them, and what a process that died left behind, cleared.

DVC keeps two locks under .dvc/tmp/: `lock`, the repository's (an flock the kernel releases when its holder dies;
the file names the holder's pid), and `rwlock`, a JSON list of the outputs each running DVC process reads or writes,
by pid and command. A process killed outright (SIGKILL: the runner giving up on a cancelled job, the OOM killer)
leaves its rwlock entries behind. DVC clears an entry whose pid is gone, but takes any live process that has the
pid for the holder: after a runner's container restarts, pids are reused from the start, and the next run fails
with "is busy, it is being blocked by" as if a stage had failed.

    clear_stale(root, say)      before a task opens DVC: entries of processes that are gone (or whose pid another
                                process has taken since) removed, each with a line saying so; a lock a live process
                                holds waited for a while, then refused naming the process

A holder counts as alive when its pid runs a process that started before the entry was written (the rwlock file's
last change): a process started later cannot be the one that wrote it. Linux's /proc says when a process started.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from src.runloop.refusal import Refused

TMP = Path(".dvc") / "tmp"
WAIT = 20.0  # seconds to wait for a live holder (a killed task's DVC still stopping takes up to 15: pipeline.py)


def _started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch); None when no such process runs (a zombie neither).
    Without /proc (not Linux), 0 for any process that exists."""
    if pid <= 0:
        return None
    if not Path("/proc/self/stat").exists():
        return 0.0 if _exists(pid) else None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line[:6] == "btime "
        )
    except (OSError, IndexError, StopIteration, ValueError):
        return None
    if fields[0] == "Z":
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _holds(pid: int, since: float) -> bool:
    """Whether the process `pid` may hold an entry written at `since`: it runs, and it started before then."""
    started = _started(pid)
    return started is not None and started <= since + 1  # /proc counts in clock ticks: a second's slack


def clear_stale(root: Path, say: Callable[[str], None] = print, wait: float = WAIT) -> None:
    """Remove what dead processes left in `root`'s DVC locks (one line each); wait for a lock a live process holds,
    then refuse naming it: a stage never gets the blame for a lock."""
    tmp = root / TMP
    deadline = time.monotonic() + wait
    waited = False
    while True:
        holder = _repository_holder(tmp) or _clear_rwlock(tmp, say)
        if holder is None:
            return
        pid, command = holder
        if time.monotonic() >= deadline:
            raise Refused(
                f"DVC's lock in this workspace is held by process {pid} ({command}), which is still running — let "
                f"it finish, or stop it (kill {pid}), then run again."
            )
        if not waited:
            say(f"Waiting up to {wait:.0f} s for process {pid} ({command}), which holds DVC's lock in this workspace.")
            waited = True
        time.sleep(0.2)


def _repository_holder(tmp: Path) -> tuple[int, str] | None:
    """(pid, command) of the live process holding DVC's repository lock, or None when nobody does."""
    path = tmp / "lock"
    if not path.is_file():
        return None
    try:
        with open(path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        text = path.read_text(errors="replace").strip()
        pid = int(text) if text.isdigit() else 0
        return pid, _command(pid) if pid else "a process that did not write its pid"
    except OSError:
        return None


@contextlib.contextmanager
def _guard(tmp: Path) -> Iterator[None]:
    """Hold the flock DVC holds while it edits the rwlock file (its rwlock.lock)."""
    with open(tmp / "rwlock.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _clear_rwlock(tmp: Path, say: Callable[[str], None]) -> tuple[int, str] | None:
    """Drop the rwlock entries of processes that are gone; (pid, command) of a live holder, or None."""
    path = tmp / "rwlock"
    if not path.is_file():
        return None
    with _guard(tmp):  # as DVC reads and edits it: under its rwlock.lock
        try:
            since = path.stat().st_mtime
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entries, dict):
            return None
        live: tuple[int, str] | None = None
        kept: dict[str, dict] = {}
        gone: dict[tuple[int, str], list[str]] = {}
        for mode in ("write", "read"):
            for out, infos in (entries.get(mode) or {}).items():
                for info in infos if isinstance(infos, list) else [infos]:
                    pid, cmd = int(info.get("pid", 0)), str(info.get("cmd", "?"))
                    if not _holds(pid, since):
                        gone.setdefault((pid, cmd), []).append(out)
                        continue
                    live = live or (pid, cmd)
                    if mode == "write":
                        kept.setdefault(mode, {})[out] = info
                    else:
                        kept.setdefault(mode, {}).setdefault(out, []).append(info)
        if gone:
            path.write_text(json.dumps(kept), encoding="utf-8")
    for (pid, cmd), outs in gone.items():
        named = dict.fromkeys(_relative(out, tmp.parent.parent) for out in outs)
        say(
            f"Cleared DVC's lock on {', '.join(named)} left by process {pid} ({cmd}), which is no longer running "
            "(killed before it could release it)."
        )
    return live


def _relative(path: str, root: Path) -> str:
    """An rwlock entry's path (DVC writes absolute ones) relative to the workspace, when it is inside it."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path
