"""The steps of a CI job as they ran: each step's command, its output and how it ended, kept for the failure record.

The workflow runs every `run:` step through this module (its `defaults.run.shell` is
`python3 -m src.runloop.step_log {0}`): the step's script runs under bash as GitHub's default shell runs it
(`bash --noprofile --norc -eo pipefail`), its output passes through unchanged and a copy goes to the job's temp
folder ($RUNNER_TEMP/runloop/), which the runner empties after the job. When a step fails or the job is
cancelled, the workflow's last step (failure.py) reads here which step it was and its last lines. Tasks add what
only they know: `note_stages`, the stages DVC failed to reproduce.

    python3 -m src.runloop.step_log SCRIPT     run one step (what the workflow's shell line does)
    note_stages(env, stages)                   record the stages that failed (invoke repro)
    last_failure(env) -> Step | None           the step that failed or was stopped, with its last lines

Standard library only: the first step runs before anything is installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from src.runloop import ci, processes

FOLDER = "runloop"  # under the CI host's temp folder
JOURNAL = "steps.jsonl"  # one line when a step starts, one when it ends
STAGES = "failed-stages.json"
STEP_ENV = "RUNLOOP_STEP"  # the number of the running step, for the step itself (failure.py skips its own)
TAIL_BYTES = 64 * 1024  # read from the end of a step's log for its last lines


@dataclass(frozen=True)
class Step:
    """One step of the job, as the journal has it."""

    number: int
    command: str
    log: Path
    exit: int | None  # None: it never ended (killed, or the job was cancelled while it ran)
    stages: tuple[str, ...] = ()  # the stages DVC failed to reproduce in it

    def tail(self, lines: int) -> list[str]:
        """The step's last `lines` lines of output."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]


def folder(env: Mapping[str, str]) -> Path | None:
    base = ci.temp_dir(env)
    return base / FOLDER if base else None


def note_stages(env: Mapping[str, str], stages: list[str]) -> None:
    """Record the stages DVC failed to reproduce in the running step (on CI only; nothing elsewhere)."""
    where, step = folder(env), env.get(STEP_ENV, "")
    if where is None or not stages or not step.isdigit():
        return
    where.mkdir(parents=True, exist_ok=True)
    (where / STAGES).write_text(json.dumps({"step": int(step), "stages": stages}), encoding="utf-8")


def steps(env: Mapping[str, str]) -> list[Step]:
    """Every step the journal knows, in order."""
    where = folder(env)
    if where is None or not (where / JOURNAL).is_file():
        return []
    started: dict[int, dict] = {}
    ended: dict[int, int] = {}
    for line in (where / JOURNAL).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "exit" in entry:
            ended[entry["step"]] = entry["exit"]
        else:
            started[entry["step"]] = entry
    try:
        noted = json.loads((where / STAGES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        noted = {}
    return [
        Step(
            number,
            entry.get("command", "?"),
            where / entry.get("log", ""),
            ended.get(number),
            tuple(noted.get("stages", [])) if noted.get("step") == number else (),
        )
        for number, entry in sorted(started.items())
    ]


def last_failure(env: Mapping[str, str]) -> Step | None:
    """The step that failed (or never ended: killed, or running when the job was cancelled), this one aside."""
    me = env.get(STEP_ENV, "")
    others = [s for s in steps(env) if str(s.number) != me]
    return next((s for s in reversed(others) if s.exit != 0), None)


# -- the shell the workflow runs its steps with ----------------------------------------------------------------------


def run_step(script: Path, env: Mapping[str, str]) -> int:
    """Run the step's script under bash, its output to this process's stdout and to the journal's log; its exit code.

    The step stays in this process's group (a terminal's hangup reaches it, as act's cancel does); a SIGINT or
    SIGTERM sent to this process alone (a runner cancelling the job) goes on to every process of the step. Nothing
    of the step outlives it: the orphans of a process killed outright (a task's git push after `kill -9`) come to
    this process, and whatever of the step still runs when its script ends is stopped.
    """
    where = folder(env)
    command = script.read_text(encoding="utf-8", errors="replace").strip()
    bash = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    if where is None:  # not on a CI runner: just run it
        return subprocess.run(bash, check=False).returncode
    processes.adopt_orphans()
    where.mkdir(parents=True, exist_ok=True)
    number = 1 + sum(1 for line in _lines(where / JOURNAL) if '"exit"' not in line)
    log = where / f"step-{number}.log"
    _journal(where, {"step": number, "command": command, "log": log.name, "start": time.time()})
    out = sys.stdout.buffer
    proc = subprocess.Popen(
        bash,
        env={**env, STEP_ENV: str(number)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=processes.die_with_parent,  # this shell killed outright: bash gets SIGTERM
    )

    def forward(signum: int, _frame: object) -> None:
        processes.signal_descendants(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    with open(log, "ab") as copy:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            # Kept first: whatever the runner has shown (and a cancel may follow at once) is in the copy already.
            copy.write(chunk)
            copy.flush()
            out.write(chunk)
            out.flush()
    code = proc.wait()
    processes.stop_children()  # what the step left running (an orphan, a background job): stopped with it
    code = 128 - code if code < 0 else code  # killed by a signal: as a shell says it
    _journal(where, {"step": number, "exit": code})
    return code


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _journal(where: Path, entry: dict) -> None:
    with open(where / JOURNAL, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m src.runloop.step_log SCRIPT (the workflow's shell: defaults.run.shell)")
    sys.exit(run_step(Path(sys.argv[1]), dict(os.environ)))
