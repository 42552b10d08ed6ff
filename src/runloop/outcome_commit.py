"""Outcome commits: the commit that ends a run (record.py writes its message), what it holds, where it lands, and
pushing it without ever forcing.

A results commit's only parent is the tagged commit, and it differs from it only in `dvc.lock` and the `.gitignore`
entries DVC adds for new outputs (a "same results" commit may differ in nothing: it only records the run). It goes
to the branch the tag names; when that branch cannot take it, to `results/<tag>` (or the first free name after it):
results belong to the code that made them, so they are never rebased onto other code. A failed or cancelled
attempt's commit holds the tagged commit's tree and goes to `failed/<tag>`, each attempt on the one before.

    result_files(git, tagged, outputs)        dvc.lock and DVC's .gitignore entries; anything else is refused
    earlier_results(git, remote, tagged, tree)   a commit that already holds these exact results, if one does
    existing(git, remote, tag, commit)        this tag's results record on the remote already (a re-run), if any
    pick_branch(git, remote, tag, launch, commit, requested)   where results belong, or None and why not
    side_branch(git, remote, tag, kind)       results/<tag> or failed/<tag>: the first name no branch blocks
    commit(git, env, tagged, files, text)     the results commit (on an interrupted share's, when that is it)
    push(git, auth, remote, target, …)        to its branch, else its side branch; what happened, in words
    fetch(git, auth, remote, tag)             the remote's branches and the tag itself, with the push token

Standard library only: the failure record (failure.py) uses it where nothing is installed.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from src.runloop import ci, record
from src.runloop.git import Git, last_lines
from src.runloop.push_credential import GitAuth
from src.runloop.record import SIDE, SIDE_PREFIXES
from src.runloop.refusal import Refused

LOCK = "dvc.lock"
# How `git diff --name-status` names a change, in words.
_CHANGE = {"A": "added", "D": "deleted", "M": "modified", "T": "type changed", "U": "unmerged"}


def side_branch(git: Git, remote: str, tag: str, kind: str = "results") -> str:
    """Where outcome commits of `tag` go off its branch (`kind` "results" or "failed"): the first name no branch on
    `remote` blocks; for a failure, the branch an earlier attempt's record is on, when there is one."""
    prefix, fallback = SIDE[kind]
    names = [f"{prefix}{tag}", f"{fallback}{tag}", *(f"{fallback}{tag}-{n}" for n in range(2, 10))]
    refs = git("for-each-ref", "--format=%(refname)", f"refs/remotes/{remote}/") or ""
    taken = [ref.removeprefix(f"refs/remotes/{remote}/") for ref in refs.splitlines()]
    if kind == "failed" and (earlier := next((n for n in names if n in taken), None)):
        return earlier
    return next((n for n in names if not any(_blocks(t, n) for t in taken)), names[0])


def _blocks(branch: str, name: str) -> bool:
    """Whether an existing `branch` keeps git from creating `name`: the same ref, or one a folder of the other."""
    return branch == name or name.startswith(f"{branch}/") or branch.startswith(f"{name}/")


def records_of(git: Git, refs: list[str], tag: str) -> list[tuple[str, list[str], record.Outcome]]:
    """(commit, its parents, what it records) for each outcome commit of `tag` reachable from `refs`, newest first."""
    out = git("log", *refs, "--fixed-strings", f"--grep={record.TAG}: {tag}", "--format=%H%x00%P%x00%B%x1e")
    found = []
    for entry in (out or "").split("\x1e"):
        if not entry.strip():
            continue
        sha, parents, text = entry.lstrip("\n").split("\0", 2)
        try:
            outcome = record.parse_outcome(text)
        except record.RecordError:
            continue  # a damaged record is no record of this run; `invoke runs` shows it as damaged
        if outcome is not None and outcome.tag == tag:
            found.append((sha, parents.split(), outcome))
    return found


def existing(git: Git, remote: str, tag: str, commit: str) -> str | None:
    """A results record of `tag` already on the remote (a re-run of the same tag), if any."""
    for sha, parents, outcome in records_of(git, [f"--remotes={remote}"], tag):
        if outcome.has_results and outcome.commit == commit and parents == [commit]:
            return sha
    return None


def earlier_results(git: Git, remote: str, tagged: str, tree: str) -> str | None:
    """A commit that already holds these exact results: the tagged commit's own dvc.lock when the run changed
    nothing (the commit that last wrote it), else another run's results commit on `tagged` with the same tree (the
    one that first held them, when that run's record is itself of the same results)."""
    if git("rev-parse", f"{tagged}^{{tree}}") == tree:
        return git("log", "-1", "--format=%H", tagged, "--", LOCK) or tagged
    fmt = "--format=%H %P %T%x00%B%x1e"
    out = git("log", f"--remotes={remote}", "--fixed-strings", f"--grep={record.TAG}: ", fmt) or ""
    for entry in out.split("\x1e"):
        head, _, text = entry.strip("\n").partition("\0")
        sha, *rest = head.split() or [""]
        if rest != [tagged, tree]:
            continue
        try:
            found = record.parse_outcome(text)
        except record.RecordError:
            continue
        if found and found.has_results:
            return found.same_as if found.kind == record.SAME and found.same_as else sha
    return None


def pick_branch(
    git: Git, remote: str, tag: str, launch: record.Launch, commit: str, requested: str
) -> tuple[str | None, str]:
    """The branch the results belong on, or None and why there is no clear one.

    --branch wins; a sweep's leg has none (its results go to results/<tag>); else the branch tag-run recorded in
    the tag; else the only remote branch that contains the commit; else the only one whose tip is the commit.
    """
    refs = git("for-each-ref", "--contains", commit, "--format=%(refname)", f"refs/remotes/{remote}/") or ""
    candidates = [
        name
        for name in (ref.removeprefix(f"refs/remotes/{remote}/") for ref in refs.splitlines())
        if name != "HEAD" and not name.startswith(SIDE_PREFIXES)
    ]
    listed = ", ".join(candidates) or "none"
    if requested:
        if requested not in candidates:
            raise Refused(f"--branch {requested!r} on {remote} does not contain {commit[:12]} — use one of: {listed}.")
        return requested, ""
    if launch.sweep and launch.leg:  # legs run side by side: none may race its siblings or the branch
        return None, f"{tag} is a leg of sweep {launch.sweep}, whose legs keep their results apart"
    hint = launch.branch
    if hint in candidates:
        return hint, ""
    if hint:
        return None, f"Tag {tag} was made on branch {hint!r}, which no longer contains {commit[:12]} on {remote}"
    if len(candidates) == 1:
        return candidates[0], ""
    if not candidates:
        return None, f"No branch on {remote} contains {tag}'s commit {commit[:12]}"
    at_tip = [b for b in candidates if git("rev-parse", f"refs/remotes/{remote}/{b}") == commit]
    if len(at_tip) == 1:
        return at_tip[0], ""
    return None, f"Several branches on {remote} contain {commit[:12]} ({listed}) and the tag names none of them"


def identity(git: Git, env: Mapping[str, str]) -> list[str]:
    """`-c` options naming the committer when git has no identity (a fresh runner); global config is untouched."""
    if git("config", "user.email") and git("config", "user.name"):
        return []
    actor = ci.actor(env) or "invoke-share"
    return ["-c", f"user.name={actor}", "-c", f"user.email={actor}@users.noreply.github.com"]


def result_files(git: Git, tagged: str, outputs: Iterable[str]) -> list[str]:
    """The files a results commit of `tagged` holds: dvc.lock and the `.gitignore` files DVC added `outputs` to.

    Any other difference between the tagged commit and this checkout (index, working tree, untracked files) is
    refused by name: a stage that wrote outside its outputs, a hand edit on the runner, a deleted file.
    """
    ignores: dict[str, set[str]] = {}
    for out in outputs:  # DVC ignores a new output in its folder's .gitignore, as "/<name>"
        folder, name = posixpath.split(out.rstrip("/"))
        ignores.setdefault(posixpath.join(folder, ".gitignore"), set()).add(f"/{name}")
    files, others = [], []
    for path, change in _changes(git, tagged).items():
        if change != "deleted" and (path == LOCK or _adds_only(git, tagged, path, ignores.get(path, set()))):
            files.append(path)
        else:
            others.append(f"{path} ({change})")
    if others:
        raise Refused(
            f"This checkout differs from {tagged[:12]} in files that are not results: {', '.join(others)} — a "
            "results commit holds only dvc.lock and DVC's .gitignore entries: undo those changes (git status shows "
            "them; a stage must write only its outputs), or commit them, push, and tag again."
        )
    return files


def _changes(git: Git, tagged: str) -> dict[str, str]:
    """Every path where the index or the working tree differs from `tagged`, and how; untracked files too."""
    found: dict[str, str] = {}
    for where in (["--cached"], []):
        out = git.must("Listing changes", "diff", *where, "--name-status", "--no-renames", "-z", tagged)
        fields = out.split("\0")
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            if path:
                found.setdefault(path, _CHANGE.get(status[:1], status))
    untracked = git.must("Listing untracked files", "ls-files", "--others", "--exclude-standard", "-z")
    found.update({path: "untracked" for path in untracked.split("\0") if path})
    return dict(sorted(found.items()))


def _adds_only(git: Git, tagged: str, path: str, entries: set[str]) -> bool:
    """Whether `path` is a .gitignore that gained only `entries` (and blank lines) since `tagged`, and lost none."""
    if not entries or not os.path.isfile(git.cwd / path):
        return False
    old = Counter((git("show", f"{tagged}:{path}") or "").splitlines())
    new = Counter(open(git.cwd / path, encoding="utf-8", errors="replace").read().splitlines())
    return not (old - new) and set(new - old) <= entries | {""}


def staged_tree(git: Git, files: list[str]) -> str:
    """The tree a results commit of `files` would hold, worked out in an index of its own (this one is untouched)."""
    import shutil
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="share-") as tmp:
        index = Path(tmp) / "index"
        real = git.cwd / git.must("Finding the index", "rev-parse", "--git-path", "index")
        if real.exists():
            shutil.copy2(real, index)
        env = {"GIT_INDEX_FILE": str(index)}
        git.must("Staging the results", "add", "--", *files, env=env)
        return git.must("Writing the results' tree", "write-tree", env=env)


def commit(git: Git, env: Mapping[str, str], tagged: str, files: list[str], text: str) -> str:
    """Commit `files` on `tagged` with message `text` (nothing changed: a commit that records the run only).

    HEAD may already be this run's results commit (a share interrupted before its push): it is kept when it holds
    the same tree, so the commit named in the interrupted run's log is the one that gets pushed.
    """
    git.must("Staging the results", "add", "--", *files)
    head = git("rev-parse", "HEAD")
    if head != tagged:
        if git.run("diff", "--cached", "--quiet", "HEAD").returncode == 0:
            return head or ""
        git.must("Setting an outdated results commit aside", "reset", "--quiet", "--soft", tagged)
    cmd = [*identity(git, env), "commit", "--quiet", "--allow-empty", "--cleanup=verbatim", "--file=-"]
    git.must("Committing the results", *cmd, input=text)
    return git("rev-parse", "HEAD") or ""


def record_commit(git: Git, env: Mapping[str, str], parent: str, text: str) -> str:
    """A commit of `parent`'s tree, `parent` its only parent: a record that changes no file (made without touching
    the checkout, the index or any branch)."""
    tree = git.must("Reading the tagged tree", "rev-parse", f"{parent}^{{tree}}")
    return git.must(
        "Committing the record", *identity(git, env), "commit-tree", tree, "-p", parent, "-F", "-", input=text
    )


@dataclass(frozen=True)
class Landing:
    """Where an outcome commit went: what happened in words, the commit, the branch holding it, and the branch that
    refused it (a protected branch or a ruleset: not a tip that moved on), when one did."""

    said: str
    commit: str
    branch: str
    refused: str | None = None

    def pull_request_command(self, subject: str) -> str | None:
        """The one command that opens a pull request of results a protected branch refused, else None."""
        if not self.refused:
            return None
        title, body = f"{subject} (results of a run)", "Results the branch took no direct push of (see their record)."
        return shlex.join(
            ["gh", "pr", "create", "--base", self.refused, "--head", self.branch, "--title", title, "--body", body]
        )


def push(
    git: Git,
    auth: GitAuth,
    remote: str,
    target: str | None,
    unclear: str,
    tag: str,
    tagged: str,
    results: str,
    same_as: str | None = None,
) -> Landing:
    """Push the results commit to `target`, else to a side branch; where it went and why."""
    short = results[:12]
    refused = None
    if target is None:
        reason = unclear
    else:
        tip = git("rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{target}")
        reason = f"{remote}/{target} moved on since {tag}"
        if tip == tagged:
            pushed = git.run(*auth.args, "push", "--quiet", remote, f"{results}:refs/heads/{target}", env=auth.env)
            if pushed.returncode == 0:
                return Landing(f"Results committed as {short} on {remote}/{target}.", results, target)
            ref = f"refs/remotes/{remote}/{target}"
            git.run(*auth.args, "fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{target}:{ref}", env=auth.env)
            if git("rev-parse", "--verify", "--quiet", ref) == tagged:  # not a race: the push was refused
                reason = f"{remote}/{target} refused the push ({last_lines(pushed.stderr, 6)})"
                refused = target
        elif same_as and tip == same_as:
            reason = f"{remote}/{target} holds these results already ({same_as[:12]})"
    side = side_branch(git, remote, tag)
    pushed = git.run(*auth.args, "push", "--quiet", remote, f"{results}:refs/heads/{side}", env=auth.env)
    if pushed.returncode != 0:
        raise Refused(
            f"{reason}, and pushing to {remote}/{side}{auth.used} failed too ({last_lines(pushed.stderr, 6)}) — the "
            f"results commit {short} is kept in this clone (HEAD) and its data is on the DVC remote: fix that and run "
            "`invoke share` again here, or push it yourself: "
            + shlex.join(["git", "push", remote, f"{results}:refs/heads/{side}"])
        )
    blocked = "" if side.startswith(SIDE["results"][0]) else f" ({remote} has a branch in the way of results/{tag})"
    if same_as:
        said = f"{reason}: the run is recorded as {short} on branch {side}{blocked}; its results are {same_as[:12]}'s."
    elif refused:
        said = (
            f"{reason}: results committed as {short} on branch {side} instead{blocked} — open a pull request of it "
            f"into {refused}, which takes no direct push."
        )
    else:
        into = f" into {target}" if target else ""
        said = (
            f"{reason}: results committed as {short} on branch {side} instead{blocked} — merge it{into} to keep "
            "them there."
        )
    return Landing(said, results, side, refused)


def fetch(git: Git, auth: GitAuth, remote: str, tag: str) -> None:
    """Fetch the remote's branches (pruned) and the tag itself, with the push token when there is one."""
    cmd = [*auth.args, "fetch", "--quiet", "--no-tags"]
    git.must(f"Fetching {remote}{auth.used}", *cmd, "--prune", remote, env=auth.env)
    # A checkout may have turned the annotated tag into a lightweight one (actions/checkout#290); the annotation
    # names the tag's branch, so fetch the tag object itself.
    git.run(*cmd, remote, f"+refs/tags/{tag}:refs/tags/{tag}", env=auth.env)
