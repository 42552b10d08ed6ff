"""Run tags, as `invoke tag-run` makes them: the checks before a launch, the tag's name, pushing that tag alone.

check_label(label)                       refuse a --name that is no safe part of a ref, a URL, a shell word
check_head_is_pushed(git, remote)        refuse what the runner could not see; else branch, commit, URL
name(prefix, branch, stamp, label)       <prefix>-<branch slug>-<UTC stamp>[-<label>]
check_new(git, tag, remote)              refuse a name git rejects or that exists here or on the remote
create_and_push(git, tag, launch, …)     the annotated tag (record.annotation), pushed alone
launch_of(git, tag)                      what a tag's annotation records
at_head(git, env, prefix)                this checkout's run tag: the pushed one on CI, else the newest at HEAD
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from src.runloop import ci, lock, record
from src.runloop.git import Git, last_lines, listed
from src.runloop.refusal import Refused

# A --name label: safe in a ref, a URL and a shell word.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


def slug(text: str) -> str:
    """A branch name as it appears in a tag: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "branch"


def name(prefix: str, branch: str, stamp: str, label: str = "") -> str:
    """The tag of a run: <prefix>-<branch slug>-<UTC stamp>[-<label>]."""
    return "-".join([prefix, slug(branch), stamp, *([label] if label else [])])


def launch_of(git: Git, tag: str) -> record.Launch:
    """What the tag's annotation records (a lightweight tag records nothing); a damaged record is refused."""
    body = git("cat-file", "tag", f"refs/tags/{tag}")  # the tag object; None for a lightweight tag
    try:
        return record.parse_launch(body.partition("\n\n")[2] if body else "")
    except record.RecordError as exc:
        raise Refused(
            f"Tag {tag}'s annotation cannot be read: {exc} — tag the commit again with `invoke tag-run`."
        ) from None


def at_head(git: Git, env: Mapping[str, str], prefix: str) -> str | None:
    """The run tag of this checkout: the pushed tag on CI, else the newest run tag pointing at HEAD."""
    if tag := ci.run_tag(env):
        return tag
    tags = git("tag", "--points-at", "HEAD", "--list", f"{prefix}*", "--sort=-creatordate")
    return tags.splitlines()[0] if tags else None


def check_label(label: str) -> None:
    if label and not LABEL.fullmatch(label):
        raise Refused(
            f"--name {label!r} is not a safe label — use up to 50 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )


def check_head_is_pushed(git: Git, remote: str) -> tuple[str, str, str]:
    """Refuse what the runner could not see; else the branch, the commit and the remote's URL."""
    if git("rev-parse", "--is-inside-work-tree") != "true":
        raise Refused("Not inside a git repository — run this from the project's clone.")
    changes = git.uncommitted()
    if [path for _, path in changes] == [lock.DVC_LOCK]:
        fix = lock.left_by_repro(changes)
        raise Refused(
            f"dvc.lock was changed by a local `invoke repro` — the runner makes its own from the tagged commit: {fix} "
            "(or commit and push it), then tag again."
        )
    if changes:
        raise Refused(
            f"The working tree has uncommitted or untracked changes ({listed([path for _, path in changes])}) — "
            "commit (and push) or stash them: the runner only sees pushed commits."
        )
    branch = git.branch()
    if not branch:
        raise Refused("HEAD is detached — check out the branch the run belongs to, then tag again.")
    commit = git("rev-parse", "HEAD") or ""
    remote_url = git("remote", "get-url", remote)
    if remote_url is None:
        raise Refused(f"There is no git remote {remote!r} — add it, or pass --remote NAME.")
    if git("fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}") is None:
        push = shlex.join(["git", "push", "-u", remote, branch])
        raise Refused(f"Branch {branch!r} is not on {remote} — push it first: {push}")
    if git("merge-base", "--is-ancestor", commit, "FETCH_HEAD") is None:
        raise Refused(
            f"HEAD {commit[:12]} is not on {remote}/{branch} yet — push it first: "
            + shlex.join(["git", "push", remote, branch])
        )
    return branch, commit, remote_url


def check_new(git: Git, tag: str, remote: str) -> None:
    """Refuse a tag name git rejects or that exists here or on the remote."""
    if git("check-ref-format", f"refs/tags/{tag}") is None:
        raise Refused(f"{tag!r} is not a valid git tag name — choose another --name.")
    if git("rev-parse", "--quiet", "--verify", f"refs/tags/{tag}") is not None or git(
        "ls-remote", "--tags", remote, f"refs/tags/{tag}"
    ):
        raise Refused(f"Tag {tag!r} already exists — wait a second or pass another --name.")


def create_and_push(git: Git, tag: str, launch: record.Launch, remote: str, commit: str = "HEAD") -> None:
    """Create the annotated tag of `commit`, its annotation the launch's record, and push only that tag; a failed
    push removes the local tag again."""
    text = record.annotation(launch)
    git.must("Creating the tag", "tag", "--annotate", "--cleanup=verbatim", "--file=-", tag, commit, input=text)
    pushed = git.run("push", "--quiet", remote, f"refs/tags/{tag}")
    if pushed.returncode != 0:
        git.run("tag", "--delete", tag)
        raise Refused(
            f"Pushing tag {tag} to {remote} failed ({last_lines(pushed.stderr)}) — the local tag is removed; fix that "
            "and tag again."
        )
