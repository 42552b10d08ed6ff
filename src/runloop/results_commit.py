"""The "<subject>-results" commit: its message and trailers, the branch it belongs on, and pushing it safely.

A results commit's only parent is the tagged commit and its trailers name the tag (`Run-Tag`), the commit
(`Run-Commit`), the MLflow runs (`MLflow-Run`) and the CI run (`CI-Run`). When it cannot land on its branch it is
kept on `results/<tag>`: results belong to the code that made them, so they are never rebased onto other code,
and nothing is ever force-pushed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

from invoke import Context, Exit

from src.runloop import environment, run_tag
from src.runloop.commands import git, must, run

SUFFIX = "-results"
# Where results go when the tag's branch moved on before they could land on it.
BRANCH_PREFIX = "results/"


def side_branch(tag: str) -> str:
    return f"{BRANCH_PREFIX}{tag}"


def trailers(c: Context, rev: str, key: str) -> list[str]:
    out = git(c, "log", "-1", f"--format=%(trailers:key={key},valueonly,separator=%x00)", rev)
    return [v for v in (out or "").split("\0") if v]


def is_results_of(c: Context, rev: str, tag: str, commit: str) -> bool:
    """True when `rev` is a results commit of `tag`: its only parent is the tagged commit and it names the tag."""
    parents = (git(c, "rev-list", "--parents", "-n", "1", rev) or "").split()[1:]
    return parents == [commit] and tag in trailers(c, rev, "Run-Tag")


def existing(c: Context, remote: str, tag: str, commit: str) -> str | None:
    """A results commit of `tag` already on the remote (a re-run of the same tag), if any."""
    found = git(c, "log", f"--remotes={remote}", "--fixed-strings", f"--grep=Run-Tag: {tag}", "--format=%H")
    return next((sha for sha in (found or "").split() if is_results_of(c, sha, tag, commit)), None)


def pick_branch(c: Context, remote: str, tag: str, commit: str, requested: str) -> tuple[str | None, str]:
    """The branch the results belong on, or None and why there is no clear one.

    --branch wins; else the branch tag-run recorded in the tag; else the only remote branch that contains the
    commit; else the only one whose tip is the commit.
    """
    refs = git(c, "for-each-ref", "--contains", commit, "--format=%(refname)", f"refs/remotes/{remote}/") or ""
    candidates = [
        name
        for name in (ref.removeprefix(f"refs/remotes/{remote}/") for ref in refs.splitlines())
        if name != "HEAD" and not name.startswith(BRANCH_PREFIX)
    ]
    listed = ", ".join(candidates) or "none"
    if requested:
        if requested not in candidates:
            raise Exit(f"--branch {requested!r} on {remote} does not contain {commit[:12]} — use one of: {listed}.")
        return requested, ""
    hint = run_tag.branch_of(c, tag)
    if hint in candidates:
        return hint, ""
    if hint:
        return None, f"Tag {tag} was made on branch {hint!r}, which no longer contains {commit[:12]} on {remote}"
    if len(candidates) == 1:
        return candidates[0], ""
    if not candidates:
        return None, f"No branch on {remote} contains {tag}'s commit {commit[:12]}"
    at_tip = [b for b in candidates if git(c, "rev-parse", f"refs/remotes/{remote}/{b}") == commit]
    if len(at_tip) == 1:
        return at_tip[0], ""
    return None, f"Several branches on {remote} contain {commit[:12]} ({listed}) and the tag names none of them"


def message(
    subject: str, tag: str, commit: str, metrics: list[str], runs: list[dict], ci_url: str | None, details: str = ""
) -> str:
    """The results commit's message: "<subject>-results", the metrics, `details`, and the trailers of the run."""
    lines = [f"Run-Tag: {tag}", f"Run-Commit: {commit}"]
    lines += [f"MLflow-Run: {r}" for r in dict.fromkeys(r["run_id"] for r in runs)]
    lines += [f"CI-Run: {ci_url}"] if ci_url else []
    body = "".join(f"    {line}\n" for line in metrics) or "    (none)\n"
    details = f"{details.strip()}\n\n" if details.strip() else ""
    head = f"{subject}{SUFFIX}\n\nResults of run {tag} for {commit}.\n\nMetrics:\n{body}\n{details}"
    return head + "\n".join(lines) + "\n"


def identity(c: Context, env: Mapping[str, str]) -> list[str]:
    """`-c` options naming the committer when git has no identity (a fresh runner); global config is untouched."""
    if git(c, "config", "user.email") and git(c, "config", "user.name"):
        return []
    actor = environment.env_value("GITHUB_ACTOR", env) or "invoke-share"
    return ["-c", f"user.name={actor}", "-c", f"user.email={actor}@users.noreply.github.com"]


def commit(c: Context, env: Mapping[str, str], text: str) -> str | None:
    """Commit dvc.lock (and tracked result files) with message `text`; the new commit, or None if nothing changed."""
    must(c, "Staging dvc.lock", "git", "add", "--", "dvc.lock")
    must(c, "Staging result files", "git", "add", "--update")
    if run(c, "git", "diff", "--cached", "--quiet").ok:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        cmd = ["git", *identity(c, env), "commit", "--quiet", "--cleanup=verbatim", "--file", f.name]
        must(c, "Committing the results", *cmd)
    finally:
        os.unlink(f.name)
    return git(c, "rev-parse", "HEAD") or ""


def push(c: Context, remote: str, target: str | None, unclear: str, tag: str, tagged: str, results: str) -> str:
    """Push the results commit (HEAD) to `target`, else to results/<tag>; say where it went and why."""
    short = results[:12]
    if target is None:
        reason = unclear
    else:
        tip = git(c, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{target}")
        if tip and git(c, "rev-parse", f"{tip}^{{tree}}") == git(c, "rev-parse", "HEAD^{tree}"):
            return f"{remote}/{target} already holds these exact results ({tip[:12]}): nothing to push."
        reason = f"{remote}/{target} moved on since {tag}"
        if tip == tagged:
            pushed = run(c, "git", "push", "--quiet", remote, f"HEAD:refs/heads/{target}")
            if pushed.ok:
                return f"Results committed as {short} on {remote}/{target}."
            ref = f"refs/remotes/{remote}/{target}"
            run(c, "git", "fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{target}:{ref}")
            if git(c, "rev-parse", "--verify", "--quiet", ref) == tagged:  # not a race: the push was refused
                error = " / ".join(pushed.stderr.strip().splitlines()[-6:])
                reason = f"{remote}/{target} refused the push ({error})"
    side = side_branch(tag)
    must(c, f"Pushing the results to {side}", "git", "push", "--quiet", remote, f"HEAD:refs/heads/{side}")
    into = f" into {target}" if target else ""
    return f"{reason}: results committed as {short} on branch {side} instead — merge it{into} to keep them there."
