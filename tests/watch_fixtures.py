"""A local stand-in for GitHub's Actions REST API that replays documented responses, for `invoke watch` tests.

It answers the two endpoints watch reads, in the shapes GitHub documents them ("List workflow runs for a
repository" and "List jobs for a workflow run", API version 2022-11-28): a tag's run goes through the phases a
test scripts (queued → in_progress at a step → completed success or failure), one phase per look. It checks what
GitHub checks (the bearer token; the head_sha and event filters) and records every request it gets.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from json_api import Request, serving

import tasks

REPOSITORY = "example-org/mlproj"
WEB = f"https://github.com/{REPOSITORY}"
API = f"https://api.github.com/repos/{REPOSITORY}"
STAMP = "2026-11-28T10:00:00Z"
ABSENT = "absent"  # a phase in which GitHub lists no run for the tag yet
# The workflow's step names, as the Actions API reports them (GitHub adds "Set up job" and "Complete job").
STEPS = [
    "Set up job",
    *(s["name"] for s in yaml.safe_load(Path(tasks.WORKFLOW).read_text())["jobs"]["run"]["steps"]),
    "Complete job",
]


@dataclass
class Phase:
    """What a run looks like at one look: its status and conclusion, and the step in progress or that failed."""

    status: str
    conclusion: str | None = None
    step: str | None = None
    then: Callable[[], None] | None = None  # run once, when this phase is first served (e.g. share's push)
    # The run job waits for a runner with these labels (status "queued", no runner_name) since this time; the run
    # itself may be "in_progress" (its route job is done). None: the job was created a moment ago.
    queued_since: str | None = None
    labels: tuple[str, ...] = ("self-hosted", "igz", "cpu")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Scripted:
    """A workflow run of one tag, through its phases."""

    run_id: int
    sha: str
    tag: str
    phases: list[Phase]
    current: int = -1  # the phase the last list of runs showed

    def look(self) -> dict | None:
        """The run as a list of runs shows it (None while "absent"): the next phase, the last one staying."""
        self.current = min(self.current + 1, len(self.phases) - 1)
        phase = self.phase()
        shown = self.run() if phase.status != ABSENT else None
        if phase.then:
            phase.then()
            phase.then = None
        return shown

    def phase(self) -> Phase:
        return self.phases[max(self.current, 0)]

    def run(self) -> dict:
        phase = self.phase()
        return {
            "id": self.run_id,
            "name": "Run example pipeline",
            "node_id": f"WFR_{self.run_id}",
            "head_branch": self.tag,
            "head_sha": self.sha,
            "path": ".github/workflows/github_actions_pipeline.yml",
            "display_title": self.tag,
            "run_number": self.run_id,
            "event": "push",
            "status": phase.status,
            "conclusion": phase.conclusion,
            "workflow_id": 161335,
            "check_suite_id": 42 + self.run_id,
            "url": f"{API}/actions/runs/{self.run_id}",
            "html_url": f"{WEB}/actions/runs/{self.run_id}",
            "created_at": phase.queued_since or now(),
            "updated_at": STAMP,
            "run_attempt": 1,
            "run_started_at": phase.queued_since or now(),
            "jobs_url": f"{API}/actions/runs/{self.run_id}/jobs",
            "logs_url": f"{API}/actions/runs/{self.run_id}/logs",
            "head_commit": {"id": self.sha, "tree_id": self.sha, "message": "A run", "timestamp": STAMP},
            "repository": {"id": 1296269, "full_name": REPOSITORY},
        }

    def jobs(self) -> dict:
        phase = self.phase()
        at = STEPS.index(phase.step) if phase.step else (len(STEPS) if phase.status == "completed" else -1)
        steps = []
        for number, name in enumerate(STEPS, start=1):
            if number - 1 < at:
                status, conclusion = "completed", "success"
            elif number - 1 == at:
                status, conclusion = ("completed", phase.conclusion) if phase.status == "completed" else (
                    "in_progress", None)  # fmt: skip
            else:
                status, conclusion = ("completed", "skipped") if phase.status == "completed" else ("queued", None)
            steps.append({"name": name, "status": status, "conclusion": conclusion, "number": number,
                          "started_at": STAMP if status != "queued" else None,
                          "completed_at": STAMP if status == "completed" else None})  # fmt: skip
        waiting = phase.status == "queued" or phase.queued_since is not None
        job = {
            "id": 100 + self.run_id,
            "run_id": self.run_id,
            "run_url": f"{API}/actions/runs/{self.run_id}",
            "run_attempt": 1,
            "node_id": f"CR_{self.run_id}",
            "head_sha": self.sha,
            "head_branch": self.tag,
            "url": f"{API}/actions/jobs/{100 + self.run_id}",
            "html_url": f"{WEB}/actions/runs/{self.run_id}/job/{100 + self.run_id}",
            "status": "queued" if waiting else phase.status,
            "conclusion": phase.conclusion,
            "created_at": phase.queued_since or now(),
            "started_at": None if waiting else STAMP,
            "completed_at": STAMP if phase.status == "completed" else None,
            "name": "Reproduce and share results",
            "steps": [] if waiting else steps,
            "check_run_url": f"{API}/check-runs/{100 + self.run_id}",
            "labels": list(phase.labels),
            # GitHub's documented shape of a job no runner has taken yet: its runner fields are null.
            "runner_id": None if waiting else 1,
            "runner_name": None if waiting else "runner-1",
            "runner_group_id": None if waiting else 1,
            "runner_group_name": None if waiting else "Default",
            "workflow_name": "Run example pipeline",
        }
        return {"total_count": 1, "jobs": [job]}


@dataclass
class Replay:
    """The server's state: the token it accepts, the scripted runs, and every request it got."""

    token: str
    url: str = ""
    runs: list[Scripted] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, sha: str, tag: str, *phases: Phase) -> Scripted:
        scripted = Scripted(len(self.runs) + 1, sha, tag, list(phases))
        self.runs.append(scripted)
        return scripted

    def answer(self, path: str, query: dict[str, list[str]], authorization: str) -> tuple[int, dict]:
        if authorization != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        prefix = f"/repos/{REPOSITORY}/actions/runs"
        if path == prefix:
            sha, event = query.get("head_sha", [""])[0], query.get("event", [""])[0]
            looked = [r.look() for r in self.runs if r.sha == sha and event == "push"]
            runs = [run for run in looked if run]
            return 200, {"total_count": len(runs), "workflow_runs": runs}
        if path.startswith(f"{prefix}/") and path.endswith("/jobs"):
            run_id = int(path.removeprefix(f"{prefix}/").removesuffix("/jobs"))
            r = next((r for r in self.runs if r.run_id == run_id), None)
            if r is None:
                return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            return 200, r.jobs()
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


@pytest.fixture
def replay() -> Iterator[Replay]:
    """The replaying API on a free loopback port, stopped after the test."""
    state = Replay(token=f"ghp_{uuid.uuid4().hex}")

    def answer(request: Request) -> tuple[int, object]:
        with state.lock:
            state.requests.append({"path": request.path, "query": request.query, "headers": request.headers})
            return state.answer(request.path, request.query, request.headers.get("authorization", ""))

    with serving(answer) as url:
        state.url = url
        yield state
