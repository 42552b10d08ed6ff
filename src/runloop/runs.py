"""Runs as git knows them: each run tag, what its annotation records, and the outcome commits that end it.

A run is a tag made by `invoke tag-run`; its outcome is a commit whose trailers name the tag (record.py): results
(on the tag's branch or on `results/<tag>`), same results, or a failed or cancelled attempt (on `failed/<tag>`).
`Runs` is the context of one command: the remote and the tag prefix, the runs listed once (three git commands for
any number of runs: it never imports MLflow or DVC), a spec resolved with one wording.

    Runs(remote).fetch_or_say(doing)     bring the remote's tags and branches here, or say why not
    Runs.all                             every run, newest first, as `Run`s
    Runs.resolve(spec)                   the run a tag, a commit or nothing (the branch's newest run) names
    Runs.with_results(spec)              the same, refusing a run without results in one wording
    Runs.previous(run)                   the run before it on its branch that has results
    Runs.of_branch(branch)               the runs of one branch
    Runs.find(needle)                    the runs whose results record a content hash or an MLflow run id
    Runs.outputs(run)                    what its results commit records: each output and input, with its hash
    needle(spec), as_json(runs)          what --find looks for; the runs as JSON
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

from src.runloop import lock, project, record
from src.runloop.git import Git, last_lines
from src.runloop.refusal import Refused

STAMP = re.compile(r"-(\d{8}-\d{6})(?:-(.+))?$")  # tag-run's "<prefix>-<branch>-<UTC stamp>[-<label>]"
HEX = re.compile(r"[0-9a-f]{7,64}")
SIDE_PREFIXES = record.SIDE_PREFIXES


class RunNotFound(Refused):
    """The run a user named does not exist here, or has no results (the message says what to do)."""


@dataclass(frozen=True)
class Run:
    """One run: its tag and tagged commit, what the tag records, and how it ended (if it has)."""

    tag: str
    date: str  # when it was tagged (ISO 8601)
    commit: str  # the tagged commit
    launch: record.Launch = field(default_factory=record.Launch)
    outcome: record.Outcome | None = None  # results if any attempt made them, else the newest failure
    results: str | None = None  # the commit holding its results (results or same results)
    where: str | None = None  # the branch holding the outcome commit
    attempts: int = 0  # outcome records found: failed or cancelled attempts, and the one with results
    problem: str | None = None  # why a record of it cannot be read

    @property
    def branch(self) -> str | None:
        return self.launch.branch

    @property
    def message(self) -> str:
        return self.launch.message

    @property
    def metrics(self) -> list[str]:
        return list(self.outcome.metrics) if self.outcome else []

    @property
    def mlflow_runs(self) -> list[str]:
        return list(self.outcome.mlflow_runs) if self.outcome else []

    @property
    def ci_run(self) -> str | None:
        return self.outcome.ci_run if self.outcome else None

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.outcome.machine) if self.outcome else {}

    @property
    def runner_class(self) -> str | None:
        """The runner class the run asked for (its tag), else the one its outcome record names."""
        return self.launch.runner or (self.outcome.runner if self.outcome else None)

    @property
    def label(self) -> str:
        match = STAMP.search(self.tag)
        return (match.group(2) or "") if match else ""

    @property
    def leg(self) -> bool:
        """Whether this run is a leg of a sweep (`invoke tag-run --set`)."""
        return self.launch.leg is not None

    @property
    def kind(self) -> str | None:
        """The outcome's kind (record.RESULTS, SAME, FAILED, CANCELLED), or None while there is none."""
        return self.outcome.kind if self.outcome else None

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def state(self) -> str:
        if self.problem:
            return f"record unreadable: {self.problem}"
        tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
        o = self.outcome
        if o is None:
            return "waiting for results"
        if o.kind == record.RESULTS:
            return f"results on {self.where}{tries}"
        if o.kind == record.SAME:
            return f"same results as {(o.same_as or '?')[:12]}, on {self.where}{tries}"
        at = f" at {failed_where(o)}" if failed_where(o) else ""
        return f"{record.describe(o.kind)}{at}{tries}"

    def as_dict(self) -> dict:
        found = asdict(self)
        found.pop("launch"), found.pop("outcome")
        return {
            **found,
            "branch": self.branch,
            "message": self.message,
            "kind": self.kind,
            "metrics": self.metrics,
            "mlflow_runs": self.mlflow_runs,
            "ci_run": self.ci_run,
            "environment": self.environment,
            "runner_class": self.runner_class,
            "sweep": self.launch.sweep,
            "leg": list(self.launch.leg) if self.launch.leg else None,
            "sets": [list(pair) for pair in self.launch.sets],
            "label": self.label,
            "state": self.state,
        }


def failed_where(o: record.Outcome) -> str:
    """Where a failed or cancelled run stopped, as far as its record knows: "step `invoke repro` (stage train)"."""
    return " ".join(filter(None, (f"step `{o.step}`" if o.step else "", f"(stage {o.stage})" if o.stage else "")))


class Runs:
    """The runs of this project on one remote, for one command: listed once, resolved with one wording."""

    def __init__(
        self, remote: str = "origin", prefix: str | None = None, git: Git | None = None, known: list[Run] | None = None
    ) -> None:
        self.remote = remote
        self.prefix = prefix or project.tag_prefix()
        self.git = git or Git()
        if known is not None:  # these runs, not git's (a view of given runs)
            self.__dict__["all"] = known

    # -- the remote --------------------------------------------------------------------------------------------

    def fetch(self) -> str | None:
        """Fetch the remote's tags and branches; None when that worked, else git's reason (runs still list)."""
        if self.git("remote", "get-url", self.remote) is None:
            return f"there is no git remote {self.remote!r}"
        done = self.git.run("fetch", "--quiet", "--prune", "--tags", self.remote)
        self.refresh()
        return None if done.returncode == 0 else last_lines(done.stderr, 2)

    def fetch_or_say(self, doing: str) -> None:
        """Fetch (see `fetch`); when that fails, say why in one line and go on `doing` what this clone has."""
        if reason := self.fetch():
            print(f"(Not fetched from {self.remote}: {reason}; {doing} what this clone has.)", flush=True)

    # -- listing ---------------------------------------------------------------------------------------------

    @cached_property
    def all(self) -> list[Run]:
        """Every run (a tag named `prefix*`), newest first, with its outcome where there is one."""
        fmt = "%(refname:strip=2)%00%(creatordate:iso-strict)%00%(objectname)%00%(*objectname)%00%(contents)%1e"
        tags = self.git("for-each-ref", "--sort=-creatordate", f"--format={fmt}", f"refs/tags/{self.prefix}*") or ""
        outcomes = self._outcomes()
        found = []
        for entry in tags.split("\x1e"):
            if not entry.strip():
                continue
            tag, date, obj, peeled, contents = entry.lstrip("\n").split("\0", 4)
            commit = peeled or obj  # an annotated tag points at a tag object; a lightweight one at the commit
            run = Run(tag=tag, date=date, commit=commit)
            try:
                run = replace(run, launch=record.parse_launch(contents if peeled else ""))
            except record.RecordError as exc:
                run = replace(run, problem=f"its tag's annotation: {exc}")
            found.append(outcomes.get((tag, commit), _Ended()).applied(run))
        return found

    def refresh(self) -> None:
        """Forget the listing: the next `all` reads git again (after a fetch)."""
        self.__dict__.pop("all", None)

    def _outcomes(self) -> dict[tuple[str, str], _Ended]:
        """(tag, tagged commit) → what the outcome commits of the run record, found on every branch.

        Results on a branch win over a copy on a side branch (the side branch merged later, say).
        """
        remote = self.remote
        # git's --exclude patterns leave out the refs/heads/ or refs/remotes/ of the --branches/--remotes after them.
        sides = SIDE_PREFIXES
        kept = [f"--branches={side}*" for side in sides] + [f"--remotes={remote}/{side}*" for side in sides]
        branches = [f"--exclude={side}*" for side in sides] + ["--branches"]
        # origin/HEAD names no branch of its own: the branch it points at (reached as well) is where results are.
        branches += [f"--exclude={remote}/{side}*" for side in sides]
        branches += [f"--exclude={remote}/HEAD", f"--remotes={remote}"]
        found: dict[tuple[str, str], _Ended] = {}
        for refs in (kept, branches):  # the second pass overrides where results are: the tag's branch wins
            fmt = "%x1e%H%x00%P%x00%S%x00%B"
            out = self.git("log", "--source", "--fixed-strings", f"--grep={record.TAG}: ", f"--format={fmt}", *refs)
            for entry in (out or "").split("\x1e"):
                if not entry.strip():
                    continue
                sha, parents, source, message = entry.split("\0", 3)
                # git names the ref it reached the commit from in full or short (`origin/main`): the branch's name.
                where = re.sub(rf"^(refs/heads/|refs/remotes/{re.escape(remote)}/|{re.escape(remote)}/)", "", source)
                try:
                    outcome = record.parse_outcome(message)
                except record.RecordError as exc:
                    tag = re.search(rf"^{record.TAG}: (\S+)$", message, flags=re.MULTILINE)
                    commit = re.search(rf"^{record.COMMIT}: (\S+)$", message, flags=re.MULTILINE)
                    key = (tag.group(1) if tag else "", commit.group(1) if commit else parents.split()[0])
                    found.setdefault(key, _Ended()).problem = f"outcome commit {sha[:12]}: {exc}"
                    continue
                if outcome is None or not _well_placed(outcome, parents.split()):
                    continue
                found.setdefault((outcome.tag, outcome.commit), _Ended()).add(sha, where, outcome)
        return found

    # -- finding one ------------------------------------------------------------------------------------------

    def get(self, tag: str) -> Run | None:
        return next((r for r in self.all if r.tag == tag), None)

    def resolve(self, spec: str = "") -> Run:
        """The run `spec` names: a run tag, an outcome commit or a tagged commit; nothing = the branch's newest run.

        "The branch's newest run" is the newest run of the checked-out branch that has results, a sweep's legs aside
        (their results stay on results/<tag>: name one to pick it); on a detached HEAD, the run whose results or
        tagged commit HEAD is. Raises RunNotFound with what to do.
        """
        if not spec:
            branch = self.git.branch()
            if branch:
                mine = [r for r in self.of_branch(branch) if r.results and not r.leg]
                if mine:
                    return mine[0]
                raise RunNotFound(
                    f"No run of branch {branch!r} has results yet — name one (`invoke runs` lists them), "
                    "or wait for the running job to share its results (`invoke watch`)."
                )
            spec = "HEAD"
        if named := self.get(spec):
            return named
        sha = self.git.commit_of(spec)
        if sha:
            of_commit = [r for r in self.all if r.results == sha] or [r for r in self.all if r.commit == sha]
            if of_commit:
                return next((r for r in of_commit if r.results), of_commit[0])
            raise RunNotFound(
                f"{spec!r} ({sha[:12]}) is no run's tagged or results commit — name a run tag "
                "(`invoke runs` lists them)."
            )
        raise RunNotFound(
            f"{spec!r} is neither a run tag nor a commit here — `invoke runs` lists the runs "
            "(it fetches them first; a new run may need that)."
        )

    def with_results(self, spec: str = "", say=print) -> Run:
        """The run `spec` names, when it has results; else RunNotFound saying where it stands and what to do.

        A run of an older template whose dvc.lock another run's results commit already held got no record of its
        own: the run whose results commit holds it stands in, and `say` tells so.
        """
        run = self.resolve(spec)
        if run.problem:
            raise RunNotFound(f"Run {run.tag}'s {run.problem} — fix or delete that record, or name another run.")
        if run.results:
            return run
        if run.outcome is None and (stand_in := self._holding(run)):
            holder = f"{stand_in.tag}'s ({(stand_in.results or '')[:12]})"
            say(f"{run.tag} has no results commit of its own: {holder} holds its results")
            return stand_in
        follow = (
            f"`invoke runs --run {run.tag}` shows why" if run.ended else f"`invoke watch --run {run.tag}` follows it"
        )
        raise RunNotFound(f"Run {run.tag} has no results ({run.state}) — {follow}; or name another run.")

    def _holding(self, run: Run) -> Run | None:
        """The run whose results commit holds `run`'s results, for a run of an older template that made none: a
        second tag of a commit, or a tag of a results commit itself (dvc.lock unchanged)."""
        same = [
            r
            for r in self.all
            if r.results
            and r.tag != run.tag
            and (r.results == run.commit or (r.commit, r.where) == (run.commit, run.branch))
        ]
        return same[0] if same else None

    def previous(self, run: Run) -> Run | None:
        """The newest run before `run` on its branch that has results, a sweep's legs aside."""
        if not run.branch:
            return None
        tags = [r.tag for r in self.all]
        older = self.all[tags.index(run.tag) + 1 :] if run.tag in tags else self.all
        return next((r for r in self.of_branch(run.branch, older) if r.results and not r.leg), None)

    def of_branch(self, branch: str, runs: list[Run] | None = None) -> list[Run]:
        """The runs tagged on `branch`, or whose results landed on it."""
        return [r for r in (self.all if runs is None else runs) if branch in (r.branch, r.where)]

    def forked_from(self, run: Run) -> Run | None:
        """The newest run with results (a sweep's legs aside) of the branch `run`'s branch was forked from: the
        other branch on the remote whose common ancestor with it is the nearest (the default branch on a tie)."""
        if not run.branch:
            return None
        heads = self.git("for-each-ref", "--format=%(refname:strip=3)", f"refs/remotes/{self.remote}/") or ""
        others = [b for b in heads.splitlines() if b not in ("HEAD", run.branch) and not b.startswith(SIDE_PREFIXES)]
        default = (self.git("symbolic-ref", "--quiet", "--short", f"refs/remotes/{self.remote}/HEAD") or "").split("/")[
            -1
        ]
        nearest: tuple[int, bool, str] | None = None
        for other in others:
            fork = self.git("merge-base", run.commit, f"refs/remotes/{self.remote}/{other}")
            when = self.git("log", "-1", "--format=%ct", fork) if fork else None
            if when and fork != run.commit:
                candidate = (int(when), other == default, other)
                nearest = max(nearest, candidate) if nearest else candidate
        if nearest is None:
            return None
        return next((r for r in self.of_branch(nearest[2]) if r.results and not r.leg), None)

    def base_of(self, leg: Run) -> Run | None:
        """For a sweep's leg, the run of the sweep's base (the leg's parent) that has results; else None."""
        if not leg.leg:
            return None
        base = self.git.commit_of(f"{leg.commit}^")
        return next((r for r in self.all if base in (r.commit, r.results) and r.results and not r.leg), None)

    # -- what runs made ---------------------------------------------------------------------------------------

    def outputs(self, run: Run) -> list[lock.Output]:
        """Each output the results commit's dvc.lock records and each input a .dvc file tracks, with its hash."""
        return lock.recorded(self.git, run.results) if run.results else []

    def find(self, needle: str) -> list[tuple[Run, str]]:
        """The runs whose results record `needle` (an MLflow run id, or a content hash), and what records it."""
        hits = [(r, f"MLflow run {needle}") for r in self.all if needle in r.mlflow_runs]
        commits = [r.results for r in self.all if r.results]
        if HEX.fullmatch(needle) and commits:
            grep = [
                "grep",
                "--fixed-strings",
                "--files-with-matches",
                "-e",
                needle,
                *commits,
                "--",
                "dvc.lock",
                "*.dvc",
            ]
            holding = {line.split(":", 1)[0] for line in (self.git(*grep) or "").splitlines()}
            for r in (r for r in self.all if r.results in holding):
                named = [f"{o.path} ({o.stage})" for o in self.outputs(r) if o.md5 == needle]
                hits.append((r, ", ".join(dict.fromkeys(named)) or f"a hash starting {needle}"))
        return hits


@dataclass
class _Ended:
    """The outcome commits found for one run, as they are gathered."""

    results: tuple[str, str, record.Outcome] | None = None  # (commit, branch, outcome)
    failures: dict[str, tuple[str, record.Outcome]] = field(default_factory=dict)  # commit → (branch, outcome)
    problem: str | None = None

    def add(self, sha: str, where: str, outcome: record.Outcome) -> None:
        if outcome.has_results:
            if self.results is None or self.results[0] == sha:  # newest first; the later pass says where
                self.results = (sha, where, outcome)
            return
        self.failures.setdefault(sha, (where, outcome))

    def applied(self, run: Run) -> Run:
        attempts = len(self.failures) + (1 if self.results else 0)
        problem = run.problem or self.problem
        if self.results:
            sha, where, outcome = self.results
            return replace(run, outcome=outcome, results=sha, where=where, attempts=attempts, problem=problem)
        if self.failures:  # the newest failure: the highest attempt, else the first git listed
            where, outcome = max(self.failures.values(), key=lambda f: f[1].attempt or 0)
            return replace(run, outcome=outcome, where=where, attempts=attempts, problem=problem)
        return replace(run, problem=problem)


def _well_placed(outcome: record.Outcome, parents: list[str]) -> bool:
    """A results commit's only parent is the tagged commit; a failure's is that or the attempt before it."""
    if len(parents) != 1:
        return False
    return parents == [outcome.commit] or not outcome.has_results


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


def as_json(runs: list[Run]) -> str:
    return json.dumps([r.as_dict() for r in runs], indent=2)
