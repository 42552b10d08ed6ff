"""`invoke share`: a run's results made safe (their data on the DVC remote), then recorded in git.

    tag_to_share(git, env, tag, prefix)       the run tag: --tag, the pushed tag on CI, or the newest at HEAD
    check_shareable(git, env, tag, remote)    refuse what is not a run of the tag here; else the tagged commit
    plan(runs, dvc, env, tag, branch, machine)    what share will do: the outcome record and where it goes
    describe_meanwhile()                      the runner described in a process of its own, while share works
    push_data(dvc)                            `dvc push --run-cache`, refusing when the remote lacks an output after it
    record(runs, auth, env, plan)             commit the record and push it; what happened, in words

Every run gets exactly one results record: its own results, or "same results" naming the commit that already
held them (a second tag of a commit, a tag of a commit whose dvc.lock is already its results). A re-run of a tag
whose record is on the remote adds nothing.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from src.runloop import (
    ci,
    comparison,
    dvc_remote,
    environment,
    lock,
    machine,
    outcome_commit,
    processes,
    record,
    run_tag,
)
from src.runloop.dvc_repo import Dvc
from src.runloop.push_credential import GitAuth
from src.runloop.refusal import Refused
from src.runloop.runs import Runs


@dataclass(frozen=True)
class Plan:
    """What share will do for one run."""

    outcome: record.Outcome  # what the record will say (results or same results)
    existing: str | None  # the run's record already on the remote: nothing to commit
    target: str | None  # the branch the record belongs on
    unclear: str  # why there is no clear branch (target None)
    side: str  # where it goes when the branch cannot take it
    files: list[str]  # what the results commit holds

    @property
    def tag(self) -> str:
        return self.outcome.tag

    @property
    def commit(self) -> str:
        return self.outcome.commit

    def text(self, remote: str) -> str:
        """The plan in words (--dry-run)."""
        lines = [
            f"Tag {self.tag} → commit {self.commit}",
            "1. dvc push --run-cache, then check that the DVC remote holds every output dvc.lock names",
        ]
        if self.existing:
            return "\n".join(
                [*lines, f"2. nothing more: results of {self.tag} are already on {remote} as {self.existing}"]
            )
        what = shlex.join(self.files) or "(nothing changed: a record of the run)"
        message = "   " + record.message(self.outcome).replace("\n", "\n   ")
        lines += [f"2. git add {what}; commit on {self.commit[:12]}:\n", message]
        where = (
            f"{self.target}  (if it moved on or refuses: {self.side})"
            if self.target
            else f"{self.side}  ({self.unclear})"
        )
        return "\n".join([*lines, f"3. git push {shlex.quote(remote)} HEAD:refs/heads/{where}"])


def describe_meanwhile() -> Callable[[], dict[str, str]]:
    """Start describing this machine (machine.py) in a process of its own, which dies with this one (loading numpy
    and scipy takes a good part of a second), and return what waits for the description: share does its git and DVC
    work meanwhile."""
    proc = subprocess.Popen(
        [sys.executable, machine.__file__],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=processes.die_with_parent,
    )

    def described() -> dict[str, str]:
        out, _ = proc.communicate()
        try:
            found = json.loads(out)
        except ValueError:
            found = None
        return found if isinstance(found, dict) and set(machine.KEYS) <= found.keys() else machine.describe()

    return described


def tag_to_share(git, env: Mapping[str, str], tag: str, prefix: str) -> str:
    """--tag, else the tag CI says launched the run, else the newest run tag at HEAD."""
    if found := tag or run_tag.at_head(git, env, prefix):
        return found
    raise Refused("No run tag — pass --tag NAME (on CI it comes from the pushed tag).")


def fetch(runs: Runs, auth: GitAuth, tag: str) -> None:
    """The remote's branches and the tag itself, with the push token: what the record and its branch depend on."""
    outcome_commit.fetch(runs.git, auth, runs.remote, tag)
    runs.refresh()


def check_shareable(runs: Runs, env: Mapping[str, str], tag: str) -> str:
    """Refuse to share what is not a run of `tag` here; else the tagged commit."""
    git = runs.git
    commit = git.commit_of(f"refs/tags/{tag}")
    if not commit:
        fetch = shlex.join(["git", "fetch", runs.remote, "--tags"])
        raise Refused(f"Tag {tag!r} is not in this clone — check the name, or fetch it: {fetch}")
    # HEAD is the tagged commit, or the outcome commit an interrupted share made on it (this share finishes it).
    head = git("rev-parse", "HEAD")
    if head != commit and not _is_record_of(git, head or "", tag, commit):
        raise Refused(f"HEAD is not {tag} ({commit[:12]}) — check out the tag and run `invoke repro` there first.")
    if not (git.cwd / lock.DVC_LOCK).exists():
        raise Refused("There is no dvc.lock — run `invoke repro` first.")
    if not dvc_remote.configured(env):
        raise Refused(
            "No DVC remote is configured — set MLFLOW_S3_ENDPOINT_URL (or DVC_REMOTE_ENDPOINT_URL / DVC_REMOTE_URL) "
            "and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (see .env.example): results are shared through it."
        )
    return commit


def _is_record_of(git, rev: str, tag: str, commit: str) -> bool:
    parents = (git("rev-list", "--parents", "-n", "1", rev) or "").split()[1:]
    try:
        found = record.parse_outcome(git("log", "-1", "--format=%B", rev) or "")
    except record.RecordError:
        return False
    return parents == [commit] and found is not None and found.tag == tag and found.has_results


def check_results(git, dvc: Dvc, tagged: str) -> list[str]:
    """Refuse outputs the remote cannot carry, a pipeline DVC calls out of date, and changes that are not results;
    else the files the results commit holds."""
    outputs = dvc.outputs()
    if unshareable := lock.unshareable(outputs):
        raise Refused(
            f"Outputs the DVC remote cannot carry: {', '.join(unshareable)}, so a clone of the results could not pull "
            "them — drop those options in dvc.yaml, then repro and share."
        )
    if stale := dvc.stale():
        raise Refused(
            f"DVC says the pipeline is not up to date here: {'; '.join(stale)} — run `invoke repro` (and fix the "
            "stage that fails) before sharing; nothing was pushed."
        )
    return outcome_commit.result_files(git, tagged, [o.path for o in outputs])


def plan(runs: Runs, dvc: Dvc, env: Mapping[str, str], tag: str, branch: str, machine: Mapping[str, str]) -> Plan:
    """Check the run can be shared, and work out its record and where it goes (nothing is changed but the index)."""
    git, remote = runs.git, runs.remote
    commit = check_shareable(runs, env, tag)
    launch = run_tag.launch_of(git, tag)
    existing = outcome_commit.existing(git, remote, tag, commit)
    target, unclear = (None, "") if existing else outcome_commit.pick_branch(git, remote, tag, launch, commit, branch)
    files = check_results(git, dvc, commit)
    tree = outcome_commit.staged_tree(git, files)
    same_as = None if existing else outcome_commit.earlier_results(git, remote, commit, tree)
    run = runs.get(tag)
    previous = runs.previous(run) if run else None
    took = ci.runner(env)  # the runner of this job, and the class and labels the route job sent the run to
    outcome = record.Outcome(
        kind=record.SAME if same_as else record.RESULTS,
        tag=tag,
        commit=commit,
        subject=git("log", "-1", "--format=%s", commit) or tag,
        metrics=tuple(dvc.metric_lines()),
        mlflow_runs=tuple(r["run_id"] for r in lock.run_records()),
        ci_run=ci.run_url(env),
        machine={**machine, **record.runner_facts(took.name, took.labels)},
        comparison=_indented(comparison.against_previous(git, dvc, previous, launch.branch)),
        same_as=same_as,
        same_note=_whose(runs, same_as, commit) if same_as else "",
        attempt=ci.attempt(env),
        runner=launch.runner or took.runner_class,
    )
    return Plan(outcome, existing, target, unclear, outcome_commit.side_branch(git, remote, tag), files)


def _indented(text: str) -> str:
    """The comparison as a section of the record: its first line, then DVC's tables indented."""
    head, _, body = text.partition("\n")
    return head + "\n" + "".join(f"    {line}\n" if line else "\n" for line in body.splitlines())


def _whose(runs: Runs, same_as: str, tagged: str) -> str:
    """Whose results `same_as` are, in words."""
    holder = next((r for r in runs.all if r.results == same_as), None)
    if holder:
        return f"the results of run {holder.tag}"
    if same_as == tagged:
        return "the dvc.lock the tagged commit holds"
    return "the dvc.lock the tagged commit holds, written by that commit"


def push_data(dvc: Dvc) -> None:
    """`dvc push --run-cache`; refuse when the remote lacks data dvc.lock names after it (DVC only warns)."""
    print("$ dvc push --run-cache", flush=True)
    try:
        pushed, lacking = dvc.push()
    except Exception as exc:  # noqa: BLE001 - DVC's own error (its details are logged above), in one line
        said = environment.one_line(environment.scrub(str(exc)))
        raise Refused(
            f"Pushing the data failed ({said}) — nothing was committed or pushed to git; fix the remote and run "
            "`invoke share` again."
        ) from None
    print(f"{pushed} file{'s' if pushed != 1 else ''} pushed" if pushed else "Everything is up to date.")
    if lacking:
        paths = {o.md5: o.path for o in lock.Lock.read().outputs() if o.md5}
        missing = [f"{paths[md5]} (missing)" if md5 in paths else f"content {md5} (missing)" for md5 in lacking]
        raise Refused(
            f"The DVC remote lacks data dvc.lock names: {', '.join(missing)} — nothing was pushed to git; check "
            "the remote and share again (if this clone lost the data too, `invoke repro --force` remakes it)."
        )


def record_and_push(runs: Runs, auth: GitAuth, env: Mapping[str, str], plan: Plan) -> outcome_commit.Landing:
    """Commit the run's record on the tagged commit and push it where it belongs; where it went, in words."""
    if plan.existing:
        said = (
            f"Results of {plan.tag} are already on {runs.remote} as {plan.existing[:12]}: nothing to commit (a re-run)."
        )
        return outcome_commit.Landing(said, plan.existing, "")
    made = outcome_commit.commit(runs.git, env, plan.commit, plan.files, record.message(plan.outcome))
    o = plan.outcome
    landing = outcome_commit.push(
        runs.git, auth, runs.remote, plan.target, plan.unclear, o.tag, o.commit, made, o.same_as
    )
    if o.kind == record.SAME:
        return replace(landing, said=f"The same results as {o.same_as[:12]} ({o.same_note}). {landing.said}")
    return landing
