"""Run tags: the name `invoke tag-run` gives a run, the branch (and sweep) its annotation records, where to watch it."""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Iterable, Mapping

from invoke import Context, Exit

from src.runloop import environment
from src.runloop.commands import git, listed, must, run, uncommitted

# A --name label: safe in a ref, a URL and a shell word.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


def slug(text: str) -> str:
    """A branch name as it appears in a tag: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "branch"


def name(prefix: str, branch: str, stamp: str, label: str = "") -> str:
    """The tag of a run: <prefix>-<branch slug>-<UTC stamp>[-<label>]."""
    return "-".join([prefix, slug(branch), stamp, *([label] if label else [])])


def annotation(message: str, branch: str, lines: Iterable[tuple[str, str]] = ()) -> str:
    """The tag's message; the branch goes in it so `share` knows where the results belong (a sweep's leg also
    records its sweep, `lines`, so that share keeps its results apart)."""
    return f"{message}\n\n" + "".join(f"{key}: {value}\n" for key, value in lines) + f"Branch: {branch}\n"


def branch_of(c: Context, tag: str) -> str | None:
    """The branch `invoke tag-run` recorded in the tag's annotation."""
    return _recorded(c, tag, "Branch")


def sweep_of(c: Context, tag: str) -> str | None:
    """The sweep `invoke tag-run --set` recorded in a leg's tag annotation (None: the tag is no sweep's leg)."""
    return _recorded(c, tag, "Sweep")


def _recorded(c: Context, tag: str, key: str) -> str | None:
    body = git(c, "cat-file", "tag", f"refs/tags/{tag}")  # the tag object; None for a lightweight tag
    if not body:
        return None
    names = re.findall(rf"^{key}: (\S+)$", body.partition("\n\n")[2], flags=re.MULTILINE)
    return names[-1] if names else None


def at_head(c: Context, env: Mapping[str, str], prefix: str) -> str | None:
    """The run tag of this checkout: the pushed tag on CI, else the newest run tag pointing at HEAD."""
    if tag := environment.run_tag(env):
        return tag
    tags = git(c, "tag", "--points-at", "HEAD", "--list", f"{prefix}*", "--sort=-creatordate")
    return tags.splitlines()[0] if tags else None


def actions_url(remote_url: str | None, workflow: str) -> str | None:
    """The Actions page of `workflow` on a GitHub remote (https or ssh form), else None."""
    match = re.match(
        r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
        r"([\w.-]+/[\w.-]+?)(?:\.git)?/?$",
        remote_url or "",
    )
    return f"https://github.com/{match.group(1)}/actions/workflows/{workflow}" if match else None


def check_label(label: str) -> None:
    if label and not LABEL.fullmatch(label):
        raise Exit(
            f"--name {label!r} is not a safe label — use up to 50 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            code=1,
        )


def check_head_is_pushed(c: Context, remote: str) -> tuple[str, str, str]:
    """Refuse what the runner could not see; else the branch, the commit and the remote's URL."""
    if git(c, "rev-parse", "--is-inside-work-tree") != "true":
        raise Exit("Not inside a git repository — run this from the project's clone.", code=1)
    changes = uncommitted(c)
    if [path for _, path in changes] == ["dvc.lock"]:
        fix = "delete it: rm dvc.lock" if changes[0][0] == "??" else "restore it: git checkout HEAD -- dvc.lock"
        raise Exit(
            f"dvc.lock was changed by a local `invoke repro` — the runner makes its own from the tagged commit: {fix} "
            "(or commit and push it), then tag again.",
            code=1,
        )
    if changes:
        raise Exit(
            f"The working tree has uncommitted or untracked changes ({listed([path for _, path in changes])}) — "
            "commit (and push) or stash them: the runner only sees pushed commits.",
            code=1,
        )
    branch = git(c, "symbolic-ref", "--quiet", "--short", "HEAD")
    if not branch:
        raise Exit("HEAD is detached — check out the branch the run belongs to, then tag again.", code=1)
    commit = git(c, "rev-parse", "HEAD") or ""
    remote_url = git(c, "remote", "get-url", remote)
    if remote_url is None:
        raise Exit(f"There is no git remote {remote!r} — add it, or pass --remote NAME.", code=1)
    if git(c, "fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}") is None:
        push = shlex.join(["git", "push", "-u", remote, branch])
        raise Exit(f"Branch {branch!r} is not on {remote} — push it first: {push}", code=1)
    if git(c, "merge-base", "--is-ancestor", commit, "FETCH_HEAD") is None:
        raise Exit(
            f"HEAD {commit[:12]} is not on {remote}/{branch} yet — push it first: "
            + shlex.join(["git", "push", remote, branch]),
            code=1,
        )
    return branch, commit, remote_url


def check_new(c: Context, tag: str, remote: str) -> None:
    """Refuse a tag name git rejects or that exists here or on the remote."""
    if git(c, "check-ref-format", f"refs/tags/{tag}") is None:
        raise Exit(f"{tag!r} is not a valid git tag name — choose another --name.", code=1)
    if git(c, "rev-parse", "--quiet", "--verify", f"refs/tags/{tag}") is not None or git(
        c, "ls-remote", "--tags", remote, f"refs/tags/{tag}"
    ):
        raise Exit(f"Tag {tag!r} already exists — wait a second or pass another --name.", code=1)


def create_and_push(c: Context, tag: str, text: str, remote: str, commit: str = "HEAD") -> None:
    """Create the annotated tag of `commit` and push only it; a failed push removes the local tag again."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        must(c, "Creating the tag", "git", "tag", "--annotate", "--cleanup=verbatim", "--file", f.name, tag, commit)
    finally:
        os.unlink(f.name)
    pushed = run(c, "git", "push", "--quiet", remote, f"refs/tags/{tag}")
    if not pushed.ok:
        run(c, "git", "tag", "--delete", tag)
        error = " / ".join(pushed.stderr.strip().splitlines()[-4:])
        raise Exit(
            f"Pushing tag {tag} to {remote} failed ({error}) — the local tag is removed; fix that and tag again."
        )
