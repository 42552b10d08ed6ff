"""A run that failed or was cancelled leaves a record on the remote too: the workflow's last step writes it.

    python3 -m src.runloop.failure      (the workflow's last step: `if: failure() || cancelled()`)

It commits a record on the tagged commit (record.py: failed or cancelled, which step, which stage, the last lines of
the step's output with every secret cut out) and pushes it to `failed/<tag>`, on top of an earlier attempt's record
when there is one, so every attempt stays in history and nothing is forced. A tag whose results are on the remote
already (a step after share failed) gets none: its results are its record. `invoke runs` and `invoke watch` read it
with git alone, so a failed run is reported as failed without any GitHub token.

Standard library and git only: it must work when the environment step itself failed and nothing is installed. It
runs no code of the pipeline's, and gets the push token (ACCESS_TOKEN) as `invoke share` does: for its git fetch
and push alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from src.runloop import ci, environment, outcome_commit, push_credential, record, step_log
from src.runloop.git import Git, last_lines
from src.runloop.refusal import Refused

JOB_STATUS = "JOB_STATUS"  # what the workflow passes of ${{ job.status }}: "failure" or "cancelled"
LINES = 30  # of the failed step's output kept in the record


def outcome(env: Mapping[str, str], git: Git, tag: str, commit: str, secrets: list[str]) -> record.Outcome:
    """What the record says: how the job ended, the step that did not finish, its stage and last lines."""
    step = step_log.last_failure(env)
    kind = record.CANCELLED if env.get(JOB_STATUS) == "cancelled" else record.FAILED
    output = tuple(environment.scrub(line, env, secrets) for line in step.tail(LINES)) if step else ()
    took = ci.runner(env)  # the runner that ran the failed job, and the labels it was sent to
    return record.Outcome(
        kind=kind,
        tag=tag,
        commit=commit,
        subject=git("log", "-1", "--format=%s", commit) or tag,
        ci_run=ci.run_url(env),
        attempt=ci.attempt(env),
        step=environment.scrub(step.command.splitlines()[0], env, secrets) if step else None,
        stage=", ".join(step.stages) if step and step.stages else None,
        output=output,
        runner=_runner_class(git, tag) or took.runner_class,
        machine=record.runner_facts(took.name, took.labels),
    )


def _runner_class(git: Git, tag: str) -> str | None:
    body = git("cat-file", "tag", f"refs/tags/{tag}")
    try:
        return record.parse_launch(body.partition("\n\n")[2] if body else "").runner
    except record.RecordError:
        return None


def main(env: Mapping[str, str], remote: str = "origin") -> int:
    """Record how the job ended; 0 once the record is on the remote (or the run has results already), else 1."""
    token = os.environ.pop(push_credential.VARIABLE, "").strip() or None  # for git alone, as share does
    auth = push_credential.git_auth(token)
    secrets = [token] if token else []
    git = Git()
    tag = ci.run_tag(env)
    if not tag:
        print("No run tag in this job (it was not started by a tag): nothing to record.")
        return 0
    try:
        outcome_commit.fetch(git, auth, remote, tag)
        commit = git.commit_of(f"refs/tags/{tag}") or ci.sha(env)
        if not commit:
            raise Refused(f"Tag {tag} is not in this clone and the job names no commit")
        if done := outcome_commit.existing(git, remote, tag, commit):
            print(f"{tag} has its results on {remote} already ({done[:12]}): they are its record.")
            return 0
        said = record_attempt(git, auth, remote, env, outcome(env, git, tag, commit, secrets))
    except Refused as exc:
        print(f"Could not record the {_ended(env)} of {tag} on {remote}: {environment.scrub(str(exc), env, secrets)}")
        return 1
    print(said)
    return 0


def record_attempt(git: Git, auth, remote: str, env: Mapping[str, str], o: record.Outcome) -> str:
    """Commit the record on the last attempt's (or the tagged commit) and push it to failed/<tag>; what happened.
    A push that lost a race with another attempt's is made again on top of that one."""
    side = outcome_commit.side_branch(git, remote, o.tag, "failed")
    for _ in range(3):
        parent = git("rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{side}") or o.commit
        made = outcome_commit.record_commit(git, env, parent, record.message(o))
        pushed = git.run(*auth.args, "push", "--quiet", remote, f"{made}:refs/heads/{side}", env=auth.env)
        if pushed.returncode == 0:
            where = f"{record.describe(o.kind)}{f' at step `{o.step}`' if o.step else ''}"
            return f"Recorded {o.tag} as {where} in {made[:12]} on {remote}/{side}."
        fetch = [
            *auth.args,
            "fetch",
            "--quiet",
            "--no-tags",
            remote,
            f"+refs/heads/{side}:refs/remotes/{remote}/{side}",
        ]
        if git.run(*fetch, env=auth.env).returncode != 0 or git("rev-parse", f"refs/remotes/{remote}/{side}") == parent:
            raise Refused(f"pushing to {remote}/{side}{auth.used} failed ({last_lines(pushed.stderr)})")
    raise Refused(f"{remote}/{side} kept moving while this attempt's record was pushed")


def _ended(env: Mapping[str, str]) -> str:
    return "cancellation" if env.get(JOB_STATUS) == "cancelled" else "failure"


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
