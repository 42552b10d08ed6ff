"""Runs as git knows them: each run tag, its tagged commit, and its results commit if there is one.

A run is a tag made by `invoke tag-run`; its results are a commit whose only parent is the tagged commit and whose
`Run-Tag` trailer names the tag, on the tag's branch or on `results/<tag>` (`run-results/<tag>`). Listing reads
git only (three git commands for any number of runs): it never imports MLflow or DVC.

    fetch(c, remote)                        bring the remote's tags and branches here
    listed(c, prefix, remote)               every run, newest first, as `Run`s
    resolve(c, prefix, spec, remote)        the run a tag, a commit or nothing (the branch's newest run) names
    previous(runs, tag, branch)             the run before it on the same branch that has results
    of_branch(runs, branch)                 the runs of one branch
    needle(spec)                            what --find looks for: a file's md5, a hash, an MLflow run id
    find(c, runs, needle)                   the runs whose results record a content hash or an MLflow run id
    outputs(c, run)                         what its results commit records: each output and input, with its hash
    as_json(runs)                           the runs as JSON (each Run's fields, its label and state)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from invoke import Context

from src.runloop import machine, results_commit
from src.runloop.commands import git, run

STAMP = re.compile(r"-(\d{8}-\d{6})(?:-(.+))?$")  # tag-run's "<prefix>-<branch>-<UTC stamp>[-<label>]"
HEX = re.compile(r"[0-9a-f]{7,64}")


class RunNotFound(Exception):
    """The run a user named does not exist here (the message says what to do)."""


@dataclass(frozen=True)
class Run:
    """One run: its tag and tagged commit, and what its results commit (if any) records."""

    tag: str
    date: str  # when it was tagged (ISO 8601)
    commit: str  # the tagged commit
    branch: str | None = None  # the branch tag-run recorded in the tag
    message: str = ""  # the tag's message
    results: str | None = None  # the results commit
    where: str | None = None  # the branch holding the results commit: the tag's branch, or results/<tag>
    metrics: list[str] = field(default_factory=list)  # "file key: value", as the results commit lists them
    mlflow_runs: list[str] = field(default_factory=list)
    ci_run: str | None = None
    environment: dict[str, str] = field(default_factory=dict)  # what machine.describe() said on the runner

    @property
    def label(self) -> str:
        match = STAMP.search(self.tag)
        return (match.group(2) or "") if match else ""

    @property
    def leg(self) -> bool:
        """Whether this run is a leg of a sweep (`invoke tag-run --set`): its tag records a `Sweep:` line."""
        return re.search(r"^Sweep: \S", self.message, flags=re.MULTILINE) is not None

    @property
    def state(self) -> str:
        if not self.results:
            return "waiting for results"
        return f"results on {self.where}"

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label, "state": self.state}


@dataclass(frozen=True)
class Output:
    """A file or directory a results commit records: a stage's output, or an input added with `dvc add`."""

    path: str
    md5: str
    stage: str  # the stage that writes it, or the .dvc file that tracks an input


def fetch(c: Context, remote: str) -> str | None:
    """Fetch the remote's run tags and branches; None when that worked, else git's reason (runs still list)."""
    if git(c, "remote", "get-url", remote) is None:
        return f"there is no git remote {remote!r}"
    result = run(c, "git", "fetch", "--quiet", "--prune", "--tags", remote)
    return None if result.ok else " / ".join((result.stderr or "").strip().splitlines()[-2:]) or "no output"


def fetch_or_say(c: Context, remote: str, doing: str) -> None:
    """Fetch (see `fetch`); when that fails, say why in one line and go on `doing` what this clone has."""
    if reason := fetch(c, remote):
        print(f"(Not fetched from {remote}: {reason}; {doing} what this clone has.)", flush=True)


def listed(c: Context, prefix: str, remote: str = "origin") -> list[Run]:
    """Every run (a tag named `prefix*`), newest first, with its results commit where there is one."""
    fmt = "%(refname:strip=2)%00%(creatordate:iso-strict)%00%(objectname)%00%(*objectname)%00%(contents)%1e"
    tags = git(c, "for-each-ref", "--sort=-creatordate", f"--format={fmt}", f"refs/tags/{prefix}*") or ""
    found = _results_commits(c, remote)
    runs = []
    for record in tags.split("\x1e"):
        if not record.strip():
            continue
        tag, date, obj, peeled, contents = record.lstrip("\n").split("\0", 4)
        commit = peeled or obj  # an annotated tag points at a tag object; a lightweight one at the commit
        body = contents.partition("\n\n")[2] if peeled else ""
        branches = re.findall(r"^Branch: (\S+)$", body, flags=re.MULTILINE)
        message = re.sub(r"\n*^Branch: \S+$\n?", "", contents, flags=re.MULTILINE).strip() if peeled else ""
        runs.append(Run(tag=tag, date=date, commit=commit, branch=branches[-1] if branches else None, message=message))
    return [_with_results(r, found.get((r.tag, r.commit))) for r in runs]


def _results_commits(c: Context, remote: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(tag, tagged commit) → (results commit, the branch holding it, its message), for every results commit.

    Results on a branch win over a copy on results/<tag> (the side branch merged later, say).
    """
    # git's --exclude patterns leave out the refs/heads/ or refs/remotes/ of the --branches/--remotes after them.
    sides = results_commit.SIDE_PREFIXES  # results/<tag>, or run-results/<tag> where a branch blocks that name
    kept = [f"--branches={side}*" for side in sides] + [f"--remotes={remote}/{side}*" for side in sides]
    branches = [f"--exclude={side}*" for side in sides] + ["--branches"]
    # origin/HEAD names no branch of its own: the branch it points at (reached as well) is where the results are.
    branches += [f"--exclude={remote}/{side}*" for side in sides] + [f"--exclude={remote}/HEAD", f"--remotes={remote}"]
    found: dict[tuple[str, str], tuple[str, str, str]] = {}
    for refs in (kept, branches):  # the second pass overwrites: the tag's branch wins
        fmt = "%x1e%H%x00%P%x00%S%x00%B"
        out = git(c, "log", "--source", "--fixed-strings", "--grep=Run-Tag: ", f"--format={fmt}", *refs) or ""
        this_pass: dict[tuple[str, str], tuple[str, str, str]] = {}
        for record in out.split("\x1e"):
            if not record.strip():
                continue
            sha, parents, source, message = record.split("\0", 3)
            if len(parents.split()) != 1:
                continue
            # git names the ref it reached the commit from in full or short (`origin/main`): the branch's name.
            where = re.sub(rf"^(refs/heads/|refs/remotes/{re.escape(remote)}/|{re.escape(remote)}/)", "", source)
            for tag in re.findall(r"^Run-Tag: (.+)$", message, flags=re.MULTILINE):
                this_pass.setdefault((tag.strip(), parents.strip()), (sha, where, message))  # newest first
        found.update(this_pass)
    return found


def _with_results(r: Run, found: tuple[str, str, str] | None) -> Run:
    if not found:
        return r
    sha, where, message = found
    listed_metrics = re.search(r"^Metrics:\n((?:    [^\n]*\n)*)", message, flags=re.MULTILINE)
    lines = (listed_metrics.group(1) if listed_metrics else "").splitlines()
    ci = re.findall(r"^CI-Run: (\S+)$", message, flags=re.MULTILINE)
    return replace(
        r,
        results=sha,
        where=where,
        metrics=[m.strip() for m in lines if m.strip() and m.strip() != "(none)"],
        mlflow_runs=list(dict.fromkeys(re.findall(r"^MLflow-Run: (\S+)$", message, flags=re.MULTILINE))),
        ci_run=ci[-1] if ci else None,
        environment=machine.parse(message),
    )


def resolve(c: Context, prefix: str, spec: str = "", remote: str = "origin") -> Run:
    """The run `spec` names: a run tag, a results commit or a tagged commit; nothing = the branch's newest run.

    "The branch's newest run" is the newest run of the checked-out branch that has results, a sweep's legs aside
    (their results stay on results/<tag>: name one to pick it); on a detached HEAD, the run whose results or
    tagged commit HEAD is. Raises RunNotFound with what to do.
    """
    runs = listed(c, prefix, remote)
    if not spec:
        branch = git(c, "symbolic-ref", "--quiet", "--short", "HEAD")
        if branch:
            mine = [r for r in of_branch(runs, branch) if r.results and not r.leg]
            if mine:
                return mine[0]
            raise RunNotFound(
                f"No run of branch {branch!r} has results yet — name one (`invoke runs` lists them), "
                "or wait for the running job to share its results."
            )
        spec = "HEAD"
    if named := next((r for r in runs if r.tag == spec), None):
        return named
    sha = git(c, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if sha:
        of_commit = [r for r in runs if r.results == sha] or [r for r in runs if r.commit == sha]
        if of_commit:
            return next((r for r in of_commit if r.results), of_commit[0])
        raise RunNotFound(
            f"{spec!r} ({sha[:12]}) is no run's tagged or results commit — name a run tag (`invoke runs` lists them)."
        )
    raise RunNotFound(
        f"{spec!r} is neither a run tag nor a commit here — `invoke runs` lists the runs "
        "(it fetches them first; a new run may need that)."
    )


def previous(runs: list[Run], tag: str, branch: str | None) -> Run | None:
    """The newest run before `tag` on `branch` that has results, a sweep's legs aside (for a leg: its sweep's base
    run, when that has results). `runs`: newest first, as `listed` gives them."""
    tags = [r.tag for r in runs]
    older = runs[tags.index(tag) + 1 :] if tag in tags else runs
    return next((r for r in of_branch(older, branch or "") if r.results and not r.leg), None) if branch else None


def of_branch(runs: list[Run], branch: str) -> list[Run]:
    """The runs tagged on `branch`, or whose results landed on it."""
    return [r for r in runs if branch in (r.branch, r.where)]


def find(c: Context, runs: list[Run], needle: str) -> list[tuple[Run, str]]:
    """The runs whose results record `needle` (an MLflow run id, or a content hash), and what records it."""
    hits = [(r, f"MLflow run {needle}") for r in runs if needle in r.mlflow_runs]
    commits = [r.results for r in runs if r.results]
    if HEX.fullmatch(needle) and commits:
        out = git(
            c, "grep", "--fixed-strings", "--files-with-matches", "-e", needle, *commits, "--", "dvc.lock", "*.dvc"
        )
        holding = {line.split(":", 1)[0] for line in (out or "").splitlines()}
        for r in (r for r in runs if r.results in holding):
            named = [f"{o.path} ({o.stage})" for o in outputs(c, r) if o.md5 == needle]
            hits.append((r, ", ".join(dict.fromkeys(named)) or f"a hash starting {needle}"))
    return hits


def needle(spec: str) -> str:
    """What --find looks for: a file's md5 (DVC's hash of its content), else a hash or MLflow run id as given."""
    path = Path(spec)
    if path.is_file():
        digest = hashlib.md5()  # noqa: S324 - DVC's content hash, not a security measure
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    if path.is_dir():
        raise RunNotFound(f"{spec} is a directory — name a file in it, or the directory's hash (.dir) from dvc.lock.")
    if HEX.fullmatch(spec.lower()):
        return spec.lower()
    raise RunNotFound(f"{spec!r} is no file here, no content hash (md5) and no MLflow run id — check the name.")


def outputs(c: Context, r: Run) -> list[Output]:
    """Each output the results commit's dvc.lock records and each input a .dvc file tracks, with its hash."""
    import yaml

    if not r.results:
        return []
    lock = yaml.safe_load(git(c, "show", f"{r.results}:dvc.lock") or "") or {}
    found = [
        Output(out["path"], out.get("md5", ""), stage)
        for stage, entry in (lock.get("stages") or {}).items()
        for out in entry.get("outs", [])
    ]
    tracked = (git(c, "ls-tree", "-r", "--name-only", r.results) or "").splitlines()
    for name in (n for n in tracked if n.endswith(".dvc") and not n.startswith(".dvc/")):
        dvc_file = yaml.safe_load(git(c, "show", f"{r.results}:{name}") or "") or {}
        folder = name.rpartition("/")[0]
        for out in dvc_file.get("outs", []):
            path = f"{folder}/{out['path']}" if folder else out["path"]
            found.append(Output(path, out.get("md5", ""), name))
    return found


def as_json(runs: list[Run]) -> str:
    return json.dumps([r.as_dict() for r in runs], indent=2)
