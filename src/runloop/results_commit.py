"""The "<subject>-results" commit: what it may hold, its message and trailers, its branch, and pushing it safely.

A results commit's only parent is the tagged commit, it differs from it only in `dvc.lock` and the `.gitignore`
entries DVC adds for new outputs, and its trailers name the tag (`Run-Tag`), the commit (`Run-Commit`), the MLflow
runs (`MLflow-Run`) and the CI run (`CI-Run`). When it cannot land on its branch it is kept on `results/<tag>` (or
the first free name after it): results belong to the code that made them, so they are never rebased onto other
code, and nothing is ever force-pushed.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping

from invoke import Context, Exit

from src.runloop import environment, run_tag
from src.runloop.commands import git, must, run
from src.runloop.push_credential import GitAuth

SUFFIX = "-results"
# Where results go when the tag's branch cannot take them: results/<tag>; when a branch on the remote blocks that
# name (git cannot hold a branch `results` and a branch `results/<tag>` at once), run-results/<tag>, -2, -3, …
SIDE_PREFIXES = ("results/", "run-results/")
LOCK = "dvc.lock"
# How `git diff --name-status` names a change, in words.
_CHANGE = {"A": "added", "D": "deleted", "M": "modified", "T": "type changed", "U": "unmerged"}


def side_branch(c: Context, remote: str, tag: str) -> str:
    """Where results of `tag` go when their branch cannot take them: the first name no branch on `remote` blocks."""
    prefix, fallback = SIDE_PREFIXES
    names = [f"{prefix}{tag}", f"{fallback}{tag}", *(f"{fallback}{tag}-{n}" for n in range(2, 10))]
    refs = git(c, "for-each-ref", "--format=%(refname)", f"refs/remotes/{remote}/") or ""
    taken = [ref.removeprefix(f"refs/remotes/{remote}/") for ref in refs.splitlines()]
    return next((n for n in names if not any(_blocks(t, n) for t in taken)), names[0])


def _blocks(branch: str, name: str) -> bool:
    """Whether an existing `branch` keeps git from creating `name`: the same ref, or one a folder of the other."""
    return branch == name or name.startswith(f"{branch}/") or branch.startswith(f"{name}/")


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

    --branch wins; a sweep's leg has none (its results go to results/<tag>); else the branch tag-run recorded in
    the tag; else the only remote branch that contains the commit; else the only one whose tip is the commit.
    """
    refs = git(c, "for-each-ref", "--contains", commit, "--format=%(refname)", f"refs/remotes/{remote}/") or ""
    candidates = [
        name
        for name in (ref.removeprefix(f"refs/remotes/{remote}/") for ref in refs.splitlines())
        if name != "HEAD" and not name.startswith(SIDE_PREFIXES)
    ]
    listed = ", ".join(candidates) or "none"
    if requested:
        if requested not in candidates:
            raise Exit(f"--branch {requested!r} on {remote} does not contain {commit[:12]} — use one of: {listed}.")
        return requested, ""
    if sweep := run_tag.sweep_of(c, tag):  # legs run side by side: none may race its siblings or the branch
        return None, f"{tag} is a leg of sweep {sweep}, whose legs keep their results apart"
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


def result_files(c: Context, tagged: str, outputs: Iterable[str]) -> list[str]:
    """The files a results commit of `tagged` holds: dvc.lock and the `.gitignore` files DVC added `outputs` to.

    Any other difference between the tagged commit and this checkout (index, working tree, untracked files) is
    refused by name: a stage that wrote outside its outputs, a hand edit on the runner, a deleted file.
    """
    ignores: dict[str, set[str]] = {}
    for out in outputs:  # DVC ignores a new output in its folder's .gitignore, as "/<name>"
        folder, name = posixpath.split(out.rstrip("/"))
        ignores.setdefault(posixpath.join(folder, ".gitignore"), set()).add(f"/{name}")
    files, others = [], []
    for path, change in _changes(c, tagged).items():
        if change != "deleted" and (path == LOCK or _adds_only(c, tagged, path, ignores.get(path, set()))):
            files.append(path)
        else:
            others.append(f"{path} ({change})")
    if others:
        raise Exit(
            f"This checkout differs from {tagged[:12]} in files that are not results: {', '.join(others)} — a "
            "results commit holds only dvc.lock and DVC's .gitignore entries: undo those changes (git status shows "
            "them; a stage must write only its outputs), or commit them, push, and tag again.",
            code=1,
        )
    return files


def _changes(c: Context, tagged: str) -> dict[str, str]:
    """Every path where the index or the working tree differs from `tagged`, and how; untracked files too."""
    found: dict[str, str] = {}
    for where in (["--cached"], []):
        out = must(c, "Listing changes", "git", "diff", *where, "--name-status", "--no-renames", "-z", tagged)
        fields = out.split("\0")
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            if path:
                found.setdefault(path, _CHANGE.get(status[:1], status))
    untracked = must(c, "Listing untracked files", "git", "ls-files", "--others", "--exclude-standard", "-z")
    found.update({path: "untracked" for path in untracked.split("\0") if path})
    return dict(sorted(found.items()))


def _adds_only(c: Context, tagged: str, path: str, entries: set[str]) -> bool:
    """Whether `path` is a .gitignore that gained only `entries` (and blank lines) since `tagged`, and lost none."""
    if not entries or not os.path.isfile(path):
        return False
    old = Counter((git(c, "show", f"{tagged}:{path}") or "").splitlines())
    new = Counter(open(path, encoding="utf-8", errors="replace").read().splitlines())
    return not (old - new) and set(new - old) <= entries | {""}


def commit(c: Context, env: Mapping[str, str], tagged: str, files: list[str], text: str) -> str | None:
    """Commit `files` on `tagged` with message `text`; the results commit, or None when nothing changed.

    HEAD may already be a results commit of this run (a share interrupted before its push): it is kept when it
    holds the same files, so the commit named in the interrupted run's message is the one that gets pushed.
    """
    must(c, "Staging the results", "git", "add", "--", *files)
    head = git(c, "rev-parse", "HEAD")
    if head != tagged:
        if run(c, "git", "diff", "--cached", "--quiet", "HEAD").ok:
            return head
        must(c, "Setting an outdated results commit aside", "git", "reset", "--quiet", "--soft", tagged)
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


def fetch(c: Context, auth: GitAuth, remote: str, tag: str) -> None:
    """Fetch the remote's branches (pruned) and the tag itself, with the push token when there is one."""
    cmd = ["git", *auth.args, "fetch", "--quiet", "--no-tags"]
    must(c, f"Fetching {remote}{auth.used}", *cmd, "--prune", remote, env=auth.env)
    # A checkout may have turned the annotated tag into a lightweight one (actions/checkout before v6.0.2 re-fetched
    # it as <sha>:refs/tags/<tag>); the annotation names the tag's branch, so fetch the tag object itself.
    run(c, *cmd, remote, f"+refs/tags/{tag}:refs/tags/{tag}", env=auth.env)


def push(
    c: Context, auth: GitAuth, remote: str, target: str | None, unclear: str, tag: str, tagged: str, results: str
) -> str:
    """Push the results commit (HEAD) to `target`, else to a side branch; say where it went and why."""
    short = results[:12]
    if target is None:
        reason = unclear
    else:
        tip = git(c, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{target}")
        if tip and git(c, "rev-parse", f"{tip}^{{tree}}") == git(c, "rev-parse", "HEAD^{tree}"):
            return f"{remote}/{target} already holds these exact results ({tip[:12]}): nothing to push."
        reason = f"{remote}/{target} moved on since {tag}"
        if tip == tagged:
            pushed = run(c, "git", *auth.args, "push", "--quiet", remote, f"HEAD:refs/heads/{target}", env=auth.env)
            if pushed.ok:
                return f"Results committed as {short} on {remote}/{target}."
            ref = f"refs/remotes/{remote}/{target}"
            fetch = ["fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{target}:{ref}"]
            run(c, "git", *auth.args, *fetch, env=auth.env)
            if git(c, "rev-parse", "--verify", "--quiet", ref) == tagged:  # not a race: the push was refused
                reason = f"{remote}/{target} refused the push ({_last_lines(pushed.stderr)})"
    side = side_branch(c, remote, tag)
    pushed = run(c, "git", *auth.args, "push", "--quiet", remote, f"HEAD:refs/heads/{side}", env=auth.env)
    if not pushed.ok:
        raise Exit(
            f"{reason}, and pushing to {remote}/{side}{auth.used} failed too ({_last_lines(pushed.stderr)}) — the "
            f"results commit {short} is kept in this clone (HEAD) and its data is on the DVC remote: fix that and run "
            "`invoke share` again here, or push it yourself: "
            + shlex.join(["git", "push", remote, f"{results}:refs/heads/{side}"]),
            code=1,
        )
    into = f" into {target}" if target else ""
    blocked = (
        "" if side.startswith(SIDE_PREFIXES[0]) else f" ({remote} has a branch in the way of {SIDE_PREFIXES[0]}{tag})"
    )
    return (
        f"{reason}: results committed as {short} on branch {side} instead{blocked} — merge it{into} to keep them there."
    )


def _last_lines(text: str) -> str:
    return " / ".join(text.strip().splitlines()[-6:]) or "no output"
