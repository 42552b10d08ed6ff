"""Following runs until they end: `invoke watch` and `invoke tag-run --wait`.

Git alone tells when a run has ended: each look fetches the remote's tags and branches and reads the runs' outcome
records (runs.py): results, same results, or a failed or cancelled attempt, on its branch, `results/<tag>` or
`failed/<tag>`. With a GitHub token (GH_TOKEN or GITHUB_TOKEN) the Actions API tells more (actions_api.py):
queued, the step in progress. Big sweeps stay within the API's hourly limit: each look asks about at most
`interval / 2` runs, in turn (git still sees every ending at once).

    chosen(runs, specs, sweep)              the runs to follow: named, a sweep's legs, or the branch's newest
    follow(runs, tags, timeout, interval, env)   (exit status, what to say): 0 results, 1 failed, 2 not ended
    outcome(runs, tags)                     the final metrics, or the sweep's table
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from src.runloop import actions_api, ci, record, sweep
from src.runloop.runs import Run, RunNotFound, Runs, failed_where

LANDED, FAILED, TIMED_OUT = 0, 1, 2
TIMEOUT = 3600.0  # seconds: the workflow's own limit is an hour, and a sweep's legs may wait for a free runner
INTERVAL = 10.0  # seconds between two looks
STOPPED = 130  # Ctrl-C


@dataclass(frozen=True)
class Status:
    """One run as last seen: waiting / queued / running / succeeded / results / failed, and what more is known."""

    tag: str
    state: str
    detail: str = ""
    url: str = ""

    def line(self) -> str:
        return f"{self.tag}  {self.said}" + (f"  {self.url}" if self.url and self.state != "results" else "")

    @property
    def said(self) -> str:
        return self.state + (f": {self.detail}" if self.detail else "")


def chosen(runs: Runs, specs: list[str], name: str) -> list[Run]:
    """The runs to follow: each of `specs`, the legs of sweep `name`, or else the current branch's newest run (all
    the legs of its sweep when it is a leg). Refuses (RunNotFound) with what to do."""
    if name:
        return [m.run for m in sweep.named(runs.all, name)[1]]
    if specs:
        return list({r.tag: r for r in (runs.resolve(spec) for spec in specs)}.values())
    branch = runs.git.branch()
    newest = next((r for r in runs.all if branch and r.branch == branch), None)
    if newest is None:
        raise RunNotFound(
            f"No run of {'branch ' + repr(branch) if branch else 'a detached HEAD'} here — `invoke tag-run` starts "
            "one; name another with --run TAG or --sweep NAME.",
            code=TIMED_OUT,
        )
    leg = sweep.member(newest)
    return [m.run for m in sweep.named(runs.all, leg.stem)[1]] if leg else [newest]


def follow(
    runs: Runs, tags: list[str], timeout: float, interval: float, env: Mapping[str, str], out: TextIO | None = None
) -> tuple[int, str]:
    """Look at the remote (and GitHub) every `interval` seconds until every run has results, one failed, or
    `timeout` passed; a status line per run meanwhile. The exit status and a last line to print."""
    out = out or sys.stdout
    remote = runs.remote
    api, why = actions_api.connect(env, ci.repository(env, runs.git("remote", "get-url", remote)))
    how = f"git and GitHub's Actions API ({api.repo})" if api else f"git alone ({why})"
    print(f"Following {len(tags)} run(s) until they end on {remote}, through {how}.", file=out, flush=True)
    board = _Board(out)
    progress: dict[str, actions_api.Progress] = {}
    succeeded_seen: dict[str, int] = {}
    start, turn, statuses = time.monotonic(), 0, []
    try:
        while True:
            runs.fetch()  # a failed fetch leaves what this clone has: the next look tries again
            listed = {r.tag: r for r in runs.all}
            pending = [t for t in tags if not (t in listed and listed[t].results)]
            asking = [t for t in pending if t in listed and progress.get(t, _NONE).state != actions_api.SUCCEEDED]
            if api and asking:
                budget = max(1, int(interval // 2))
                for tag in (asking[turn % len(asking) :] + asking[: turn % len(asking)])[:budget]:
                    try:
                        progress[tag] = api.progress(listed[tag].commit, tag)
                    except actions_api.ApiError as exc:
                        api = None
                        board.note(f"({exc} — following through git alone.)")
                        break
                turn += budget
            for tag in pending:
                if progress.get(tag, _NONE).state == actions_api.SUCCEEDED:
                    succeeded_seen[tag] = succeeded_seen.get(tag, 0) + 1
            statuses = [_status(tag, listed.get(tag), progress.get(tag), succeeded_seen.get(tag, 0)) for tag in tags]
            elapsed = time.monotonic() - start
            board.show(statuses, elapsed)
            if failed := [s for s in statuses if s.state in ("failed", record.CANCELLED)]:
                s = failed[0]
                where = s.url or f"`invoke runs --run {s.tag}` shows its record"
                return FAILED, f"{s.tag} {s.state} at {s.detail}: {where} — its log says why; fix it and tag a new run."
            if all(s.state in ("results", "done") for s in statuses):
                return LANDED, ""
            if elapsed >= timeout:
                waiting = [s for s in statuses if s.state not in ("results", "done")]
                known = "; ".join(f"{s.tag} {s.said}" for s in waiting)
                return TIMED_OUT, (
                    f"Timed out after {elapsed:.0f} s: {len(tags) - len(waiting)} of {len(tags)} run(s) have results; "
                    f"{known}. The runs go on — `invoke watch` follows them again."
                )
            time.sleep(max(0.0, min(interval, timeout - elapsed)))
    except KeyboardInterrupt:
        return STOPPED, "Stopped following (Ctrl-C): the runs go on — `invoke watch` follows them again."


_NONE = actions_api.Progress("")


def _status(tag: str, r: Run | None, seen: actions_api.Progress | None, succeeded_looks: int) -> Status:
    if r is None:
        return Status(tag, "waiting", "the tag is not on the remote")
    if r.results:
        same = f"the same results as {r.outcome.same_as[:12]}, " if r.kind == record.SAME and r.outcome else ""
        return Status(tag, "results", f"{same}on {r.where}")
    rerun = seen is not None and seen.state in (actions_api.QUEUED, actions_api.RUNNING)
    if r.outcome and not rerun:  # failed or cancelled; a re-run the API shows going is followed instead
        recorded = ", ".join(filter(None, (failed_where(r.outcome), f"recorded on {r.where}")))
        return Status(tag, r.outcome.kind, recorded, seen.url if seen else "")
    if seen is None or not seen.state:
        return Status(tag, "waiting", "no results commit yet")
    if seen.state == actions_api.NOT_STARTED:
        return Status(tag, "waiting", "GitHub shows no workflow run for it yet")
    if seen.state == actions_api.SUCCEEDED:
        if succeeded_looks > 1:  # share pushes before the job ends: a look after that found no record
            return Status(tag, "done", "the job succeeded without a record (a runner of an older template)", seen.url)
        return Status(tag, "succeeded", "waiting for its results commit", seen.url)
    return Status(tag, seen.state, seen.step, seen.url)


class _Board:
    """Status lines: on a terminal, redrawn in place; elsewhere (a log, a pipe), a line whenever a run's changes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.drawn = 0
        self.last: dict[str, str] = {}

    def note(self, text: str) -> None:
        """A line of its own, below the status lines (which are drawn anew under it)."""
        self.out.write(f"{text}\n")
        self.out.flush()
        self.drawn = 0

    def show(self, statuses: list[Status], elapsed: float) -> None:
        clock = f"[{int(elapsed) // 60:d}:{int(elapsed) % 60:02d}]"
        if self.live:
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            lines = "".join(f"\x1b[2K{clock} {s.line()}\n" for s in statuses)
            self.out.write(up + lines)
            self.drawn = len(statuses)
        else:
            for s in statuses:
                if self.last.get(s.tag) != s.line():
                    self.out.write(f"{clock} {s.line()}\n")
                    self.last[s.tag] = s.line()
        self.out.flush()


def outcome(runs: Runs, tags: list[str]) -> str:
    """What landed: a sweep's table (its legs' params against their metrics, the best marked), else each run's
    metrics as its results commit lists them."""
    runs.refresh()
    followed = [r for r in runs.all if r.tag in tags]
    legs = [sweep.member(r) for r in followed]
    stems = {m.stem for m in legs if m}
    if len(stems) == 1 and all(legs):
        stem, members = sweep.named(runs.all, stems.pop())
        text, best = sweep.table(stem, members)
        return text + (f"\n\n{sweep.adopt(runs.git, best, runs.remote)}" if best else "")
    blocks = []
    for r in followed:
        lines = "\n".join(f"  {m}" for m in r.metrics) or "  (no metrics)"
        where = f"{r.results[:12]} on {r.where}" if r.results else "no results commit (see the job's share step)"
        blocks.append(f"Results of {r.tag}: {where}\n{lines}")
    return "\n\n".join(blocks)
