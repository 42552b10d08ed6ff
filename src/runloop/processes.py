"""Processes the machinery starts: each in a group of its own, stopped as a group, none outliving its user.

    start(cmd, env, log, cwd)        a server in a new session (its own process group) under a leader that stops
                                     the group when this process dies, even by SIGKILL (`python -m` this module)
    stop(proc, timeout)              SIGTERM the whole group, then SIGKILL what is left
    interrupt_on_signals()           SIGTERM (and a SIGINT this process was started ignoring) raise
                                     KeyboardInterrupt, as Ctrl-C does; ignore_signals() once stopping has begun
    run_stoppable(cmd, env, grace)   a child group that a SIGINT or SIGTERM here stops in order (SIGINT first,
                                     so a stage can close its MLflow run, then SIGTERM, then SIGKILL); its exit code
    stop_cleanly(task, where)        inside the block, a signal stops every child and exits in one line
    signal_descendants(signum)       pass a signal on to the processes below this one, in its group
    die_with_parent()                this process gets SIGTERM when its parent dies, even by SIGKILL (Linux)
    adopt_orphans()                  this process becomes the parent of its descendants' orphans (Linux)
    group_alive(pgid), descendants(pid)

A chain of processes that each die with their parent, and each stop their own group on SIGTERM, leaves nothing
running when any one of them is killed: the CI step's shell (step_log.py), the task (tasks.py), DVC's process
(pipeline.py) and, through DVC, the stage; and the servers of the tests and rehearsals (services.py), whose
group's leader stops them when the test session or the rehearsal dies.

Linux's /proc tells who is in a group (zombies, waiting to be reaped, do not count) and who descends from whom.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from src.runloop.refusal import Refused

SIGNALS = (signal.SIGINT, signal.SIGTERM)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory `src` is in
LEADER = [sys.executable, "-m", "src.runloop.processes"]
LEADER_GRACE = 5.0  # seconds the group has between SIGTERM and SIGKILL when the leader stops it


class Stopped(Refused):
    """A signal stopped the work; the message says where things stand, `code` is 128 + the signal."""


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send this process `signum` when its parent dies (Linux's PR_SET_PDEATHSIG; elsewhere
    nothing): a parent killed with SIGKILL cannot stop its children itself."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the line above: the signal would never come
        os.kill(os.getpid(), signum)


def adopt_orphans() -> bool:
    """Make this process the one its descendants' orphans are reparented to (Linux's PR_SET_CHILD_SUBREAPER), so
    that `descendants` still finds them after their parent died; False where the OS has no such thing."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


# -- groups --------------------------------------------------------------------------------------------------------


def start(cmd: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start `cmd` in a new session (its own process group), its output to `log_path`, under a leader (`lead`) that
    stops the whole group when this process dies, however it dies: a server must not outlive its user.

    The leader exits as `cmd` does (its code, or the signal that killed it); `command(proc)` is `cmd`.
    """
    leader = [*LEADER, str(os.getpid()), str(cwd or os.getcwd()), *cmd]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            leader,
            env=dict(env),
            cwd=PACKAGE_ROOT,  # where `python -m src.runloop.processes` finds this module; `cmd` runs in `cwd`
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def command(proc: subprocess.Popen) -> list[str]:
    """The command `start` runs under its leader."""
    args = list(proc.args)  # type: ignore[arg-type]
    return args[len(LEADER) + 2 :] if args[: len(LEADER)] == LEADER else args


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the whole process group of `proc` (started in a session of its own), then kill what is left."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not signal_group(pgid, sig):
            break
        # Workers may outlive the leader, so wait for the group, not just the leader.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_alive(pgid):
                return
            time.sleep(0.05)
    proc.wait(timeout=timeout)


def signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to process group `pgid`; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for init to reap them do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self/stat").exists():
        return True
    return any(group == pgid and state != "Z" for _pid, _ppid, group, state in _table())


def _table() -> Iterator[tuple[int, int, int, str]]:
    """(pid, parent, group, state) of every process /proc lists."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            yield int(stat.parent.name), int(ppid), int(group), state
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile


def signal_descendants(signum: int) -> None:
    """Send `signum` to every process below this one that is in its process group (a child that made a group of
    its own, as the pipeline does, is its parent's to stop)."""
    group = os.getpgrp()
    for pid in descendants(os.getpid()):
        try:
            if os.getpgid(pid) == group:
                os.kill(pid, signum)
        except ProcessLookupError:
            continue


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (none where there is no /proc: a terminal's Ctrl-C reaches its group anyway)."""
    below: dict[int, list[int]] = {}
    for child, parent, _group, _state in _table():
        below.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in below.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# -- a child group a signal stops in order ---------------------------------------------------------------------------


def run_stoppable(cmd: list[str], env: Mapping[str, str], grace: tuple[float, float] = (10.0, 5.0)) -> tuple[int, int]:
    """Run `cmd` in a process group of its own; a SIGINT or SIGTERM here stops the whole group.

    The group gets SIGINT first (a running stage closes its MLflow run as KILLED and exits); at a second signal, or
    `grace[0]` seconds later, SIGTERM; `grace[1]` seconds after that, SIGKILL. Returns (exit code, the first signal
    received or 0).
    """
    received: list[tuple[int, float]] = []  # (signal, when)
    proc: subprocess.Popen | None = None

    def on_signal(signum: int, _frame: object) -> None:
        received.append((signum, time.monotonic()))
        if proc is not None:
            signal_group(proc.pid, signal.SIGINT if len(received) == 1 else signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in SIGNALS}
    try:
        proc = subprocess.Popen(cmd, env=dict(env), start_new_session=True, preexec_fn=die_with_parent)
        if received:  # it came between the start and `proc` being set
            signal_group(proc.pid, signal.SIGINT)
        code = _wait(proc, received, grace)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code, received[0][0] if received else 0


def _wait(proc: subprocess.Popen, received: list[tuple[int, float]], grace: tuple[float, float]) -> int:
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
            if code is not None and not group_alive(proc.pid):
                return code
            elapsed = time.monotonic() - received[0][1]
            if escalated < len(grace) and elapsed > sum(grace[: escalated + 1]):
                signal_group(proc.pid, (signal.SIGTERM, signal.SIGKILL)[escalated])
                escalated += 1
            elif escalated == len(grace) and elapsed > sum(grace) + 5:
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


# -- this process's children -----------------------------------------------------------------------------------------


@contextmanager
def stop_cleanly(task: str, where: str) -> Iterator[None]:
    """Inside the block, a SIGINT or SIGTERM (Ctrl-C, or CI cancelling the job) stops every process this one started
    and raises Stopped with `task` and `where`, instead of a traceback while an orphaned push goes on."""

    def on_signal(signum: int, _frame: object) -> None:
        for sig in SIGNALS:  # CI sends SIGINT, then SIGTERM: the first one decides
            signal.signal(sig, signal.SIG_IGN)
        stop_children()
        raise Stopped(f"{task} stopped by {signal.Signals(signum).name} — {where}", code=128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
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


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has stopped; its parent reaps it


# -- interrupts ------------------------------------------------------------------------------------------------------


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in this process, so that either unwinds it in order (a test
    session stops its servers): SIGTERM's default would end it on the spot, and a SIGINT it was started ignoring
    (a background job of a script) would not stop it at all. Only from the main thread; elsewhere nothing."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _interrupt)


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: what is stopping must finish (a second Ctrl-C must not cut it short)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


# -- the leader of a group that dies with its parent (`start`) -------------------------------------------------------


def lead(parent: int, cwd: str, cmd: list[str]) -> int:
    """Run `cmd` in this process's group and return its exit code (-N: killed by signal N).

    A SIGTERM here — `stop` signalling the group, or the kernel when `parent` dies (die_with_parent) — stops the
    whole group: SIGTERM, and SIGKILL after LEADER_GRACE seconds. So does `cmd` ending: whatever it left running
    in the group goes with it. A SIGINT is for `cmd` alone (it gets it from the group); the leader stays.
    """
    stopping: list[float] = []

    def stop(_signum: int = signal.SIGTERM, _frame: object = None) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            signal_group(os.getpgrp(), signal.SIGTERM)  # this process too: its handler, which returns here

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)  # caught, not ignored: `cmd` must not inherit SIG_IGN
    die_with_parent()
    if os.getppid() != parent:  # it died before the line above
        stop()
    if stopping:
        return -signal.SIGTERM
    child = subprocess.Popen(cmd, cwd=cwd)
    exited = _exit_notice(child.pid)
    try:
        while (code := _wait_for_exit(child, exited, 1.0)) is None:
            if stopping and time.monotonic() - stopping[0] > LEADER_GRACE:
                signal_group(os.getpgrp(), signal.SIGKILL)
    finally:
        if exited is not None:
            os.close(exited)
    if _others_alive():
        stop()
        while _others_alive():
            if time.monotonic() - stopping[0] > LEADER_GRACE:
                signal_group(os.getpgrp(), signal.SIGKILL)
            time.sleep(0.05)
    return code


def _exit_as(code: int) -> None:
    """Exit with `code`, or killed by the same signal when it is negative, as the command did."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code if code >= 0 else 128 - code)


def _others_alive() -> bool:
    """Whether a process of this group other than this one still runs."""
    me, group = os.getpid(), os.getpgrp()
    return any(g == group and pid != me and state != "Z" for pid, _ppid, g, state in _table())


if __name__ == "__main__":  # the leader `start` runs: PARENT_PID CWD CMD...
    _exit_as(lead(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
