"""Interrupts: on SIGINT or SIGTERM (Ctrl-C, or GitHub cancelling the job) a task stops its children and exits in
one line that says where things stand, instead of an invoke traceback while an orphaned push goes on.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invoke import Exit

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_cleanly(task: str, where: str) -> Iterator[None]:
    """Inside the block, a signal stops every process this one started and exits with `task` and `where`."""

    def stop(signum: int, _frame: object) -> None:
        for sig in SIGNALS:  # GitHub sends SIGINT, then SIGTERM: the first one decides
            signal.signal(sig, signal.SIG_IGN)
        stop_children()
        raise Exit(f"{task} stopped by {signal.Signals(signum).name} — {where}", code=128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is stop:
                signal.signal(sig, handler)


def stop_children(grace: float = 5.0) -> None:
    """SIGTERM every descendant of this process, then SIGKILL what is still there after `grace` seconds."""
    children = descendants(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while (children := [p for p in children if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not children:
            return


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (none where there is no /proc: the terminal's Ctrl-C reaches
    a foreground process group anyway)."""
    below: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        below.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in below.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has stopped; its parent reaps it
