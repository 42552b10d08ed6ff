"""`invoke gc`: which runs are kept, what their records name on the DVC remote and in MLflow, and deleting the rest
in an order that never leaves a reference to something deleted.

Which runs are kept (where in doubt, a run is kept):
  1. every run reachable from a branch or a tag: its results commit or its tagged commit is in the history of a
     branch (origin's, or this clone's own) or of a tag that is no run tag. The side branches results/… and
     failed/… are no roots (they exist to keep records), and neither are run tags (every run has one);
  2. of the other runs, the `keep_last` newest that have results, and every run tagged since the oldest of them;
  3. every run tagged within the last `keep_days` days;
  4. every run whose record cannot be read.

What is kept on the DVC remote: every content hash named by a dvc.lock or .dvc file of any commit in the history of
the roots and of the kept runs' results commits (a user may check out any of them), with the files each named
directory (`.dir`) lists. What goes: objects named only by runs that are not kept, and objects no commit names at
all that are older than the newest run (a deleted branch's, say). An object no commit names that is newer stays,
and when there is one gc refuses unless told the prefix is this project's alone (another repository may be writing
there). A run-cache entry stays only while every object it names stays; entries go first, then the objects.
Objects of no layout DVC 3 writes stay. A run still going (waiting for results, tagged less than the longest a job
may queue and run ago) keeps everything written since it was tagged, and `--apply` waits for it to end; a kept run
whose record git no longer shows (its branch deleted) keeps what was written while it may have been going.

In MLflow, the runs tagged run_tag=<a run not kept> go with their artifacts, logged models and model versions,
unless a kept run's record names them (a restored stage names the run that made its outputs), one of their model
versions has an alias, or they are the parent of a run that stays.

    fetch(runs)                              every branch and tag of the remote, side branches too
    Policy(keep_last, keep_days, now)        how many of the runs no ref reaches are kept
    plan(runs, store, policy, …)             what stays and what goes, and why: a `Plan`
    Plan.text(), Plan.as_json()              the tables; the same as JSON
    check_can_apply(plan)                    refuse while a run may still be going
    apply(plan, store, client, say)          entries, then directory listings, then objects, then MLflow runs
    prune_cache(cache, max_bytes, keep)      a local DVC cache kept under a size: what no kept run names goes first
    kept_hashes(runs, policy)                what the kept runs and the roots name (for prune_cache)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from src.runloop import ci, dvc_remote, dvc_store, environment, lock, mlflow_runs, project, record, registry, report
from src.runloop.dvc_store import DIR, ENTRY, OBJECT, OTHER, Item, Store
from src.runloop.git import last_lines
from src.runloop.refusal import Refused
from src.runloop.runs import Run, Runs

KEEP_LAST = 10
KEEP_DAYS = 30
DAY = 86400.0

# Why an object or entry stays or goes.
NAMED = "named by a kept run, a branch or a tag"
NEWER = "written after the newest run was tagged"
IN_FLIGHT = "written since a run still going was tagged"
UNSEEN = "written while a kept run without a record may have been going"
RESCUED = "named by a run-cache entry that stays"
NOT_DVC = "not of DVC 3's layout: left alone"
UNREADABLE = "an entry that cannot be read: left alone"
ONLY_GONE = "named only by runs not kept"
UNNAMED = "named by no commit"
NAMES_GONE = "names an object that goes"
NAMES_MISSING = "names an object the remote does not hold"


# -- the runs ------------------------------------------------------------------------------------------------------


def fetch(runs: Runs) -> None:
    """Every branch and tag of the remote, the side branches too (whatever refspec this clone was made with);
    branches deleted there are forgotten here, tags are not (a tag here only keeps more). Refused if it fails:
    deciding what to delete from a partial view is what gc must never do."""
    git = runs.git
    if git("remote", "get-url", runs.remote) is None:
        raise Refused(f"There is no git remote {runs.remote!r} — name the remote the runs are on (--remote).")
    heads = f"+refs/heads/*:refs/remotes/{runs.remote}/*"
    done = git.run("fetch", "--quiet", "--prune", "--tags", runs.remote, heads)
    if done.returncode != 0:
        raise Refused(
            f"Fetching {runs.remote} failed ({last_lines(done.stderr, 2)}) — gc decides from every branch and tag of "
            "the remote: fix the connection and run it again."
        )
    runs.refresh()


@dataclass(frozen=True)
class Policy:
    """How many of the runs that no branch or tag reaches are kept: the newest `keep_last` with results (and any
    tagged since the oldest of them), and every run tagged within `keep_days` days of `now`."""

    keep_last: int = KEEP_LAST
    keep_days: int = KEEP_DAYS
    now: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.keep_last < 0 or self.keep_days < 0:
            raise Refused(
                f"--keep-last {self.keep_last} --keep-days {self.keep_days:g}: both are counts, 0 or more — 0 keeps "
                "nothing beyond the runs a branch or tag reaches."
            )


@dataclass(frozen=True)
class Verdict:
    run: Run
    kept: bool
    why: str


def _when(run: Run) -> float:
    try:
        return datetime.fromisoformat(run.date).timestamp()
    except ValueError:
        return 0.0


def roots(runs: Runs) -> list[str]:
    """The refs whose history is kept: every branch of the remote and of this clone but the side branches, and
    every tag but the run tags."""
    remote = runs.remote
    listed = runs.git("for-each-ref", "--format=%(refname)", "refs/heads", f"refs/remotes/{remote}", "refs/tags") or ""
    found = []
    for ref in listed.splitlines():
        if ref.startswith("refs/tags/"):
            if not ref.removeprefix("refs/tags/").startswith(runs.prefix):
                found.append(ref)
            continue
        name = ref.removeprefix("refs/heads/").removeprefix(f"refs/remotes/{remote}/")
        if name != "HEAD" and not name.startswith(record.SIDE_PREFIXES):
            found.append(ref)
    return found


def verdicts(runs: Runs, reachable: set[str], policy: Policy) -> list[Verdict]:
    """Each run (newest first), kept or not, and why."""
    found: dict[str, Verdict] = {}
    rest = []
    for run in runs.all:
        if run.problem:
            found[run.tag] = Verdict(run, True, f"its record cannot be read ({run.problem})")
        elif run.results and run.results in reachable:
            side = not run.where or run.where.startswith(record.SIDE_PREFIXES)
            where = "in the history of a branch or tag" if side else f"on {run.where}"
            found[run.tag] = Verdict(run, True, f"results {where}")
        elif run.commit in reachable:
            found[run.tag] = Verdict(run, True, f"tagged on a branch or tag ({run.branch or '?'})")
        else:
            rest.append(run)
    with_results = [r for r in rest if r.results]
    since = _when(with_results[: policy.keep_last][-1]) if policy.keep_last and with_results else None
    days_ago = policy.now - policy.keep_days * DAY if policy.keep_days else None
    for run in rest:
        if since is not None and _when(run) >= since:
            found[run.tag] = Verdict(run, True, f"among the newest (--keep-last {policy.keep_last})")
        elif days_ago is not None and _when(run) >= days_ago:
            found[run.tag] = Verdict(run, True, f"tagged in the last {policy.keep_days:g} days (--keep-days)")
        else:
            found[run.tag] = Verdict(run, False, "no branch or tag reaches it, and it is not among the newest")
    return [found[r.tag] for r in runs.all]


def judged(runs: Runs, policy: Policy) -> tuple[list[str], list[Verdict]]:
    """The roots (see `roots`) and each run's verdict."""
    refs = roots(runs)
    reachable = set((runs.git("rev-list", "--stdin", input="".join(f"{r}\n" for r in refs)) or "").split())
    return refs, verdicts(runs, reachable, policy)


def in_flight(runs: Runs, now: float) -> list[Run]:
    """Runs that may still be going: no record of how they ended, tagged less than the longest a job may take ago."""
    window = ci.longest_run(environment.ROOT / project.WORKFLOW)
    return [r for r in runs.all if r.outcome is None and not r.problem and now - _when(r) < window]


def remote_store(env: Mapping[str, str]) -> Store:
    """The DVC remote's objects, once a probe shows it answers (Refused in one line otherwise)."""
    where = dvc_remote.location(env)
    if where is None:
        raise Refused(
            "No DVC remote is configured — gc works on the remote runs push to: set it in .dvc/config (or "
            "DVC_REMOTE_URL) and its endpoint in MLFLOW_S3_ENDPOINT_URL (see .env.example)."
        )
    if problem := dvc_remote.probe(where, env):
        raise Refused(f"{problem[0]} — {problem[1]}.")
    return dvc_store.store(where, env)


def mlflow_store(env: Mapping[str, str]) -> tuple[Any, str]:
    """A client of the team's MLflow (registry.connect: checked first), and where it is; or None, and why not: the
    embedded store of a clone (no MLFLOW_URL) holds no team's runs."""
    uri = environment.tracking_uri(env)
    if uri == environment.embedded_tracking_uri():
        return None, "not asked: no tracking server is configured (MLFLOW_URL); this clone's own store is left alone"
    return registry.connect(env), environment.redact(uri)


# -- what stays and what goes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fate:
    """What becomes of one object of the store."""

    item: Item
    goes: bool
    why: str


@dataclass(frozen=True)
class MlflowFate:
    made: mlflow_runs.Made
    goes: bool
    why: str


@dataclass(frozen=True)
class Shield:
    """When what was written stays whatever names it: after the newest run was tagged, since a run still going was
    tagged, or while a kept run whose record git no longer shows (its branch deleted) may have been going."""

    newest: float
    cutoff: float  # the newest run's tag, or the oldest tag of a run still going
    unseen: tuple[tuple[float, float], ...] = ()  # (tagged, tagged + the longest a run takes) of such kept runs

    def why(self, written: float) -> str | None:
        if written > self.newest:
            return NEWER
        if written > self.cutoff:
            return IN_FLIGHT
        if any(start <= written <= end for start, end in self.unseen):
            return UNSEEN
        return None


@dataclass
class Plan:
    """What gc found and decided; nothing is deleted until `apply`."""

    remote: str  # the DVC remote's URL
    verdicts: list[Verdict]
    fates: list[Fate]
    outputs: dict[str, set[str]]  # run tag → the hashes its results commit's dvc.lock names
    going_runs: list[Run]  # in flight (see `in_flight`)
    shield: Shield
    mlflow: list[MlflowFate] | None = None  # None: MLflow not asked (mlflow_note says why)
    mlflow_note: str = ""

    def going(self, *kinds: str) -> list[Item]:
        return [f.item for f in self.fates if f.goes and f.item.kind in kinds]

    # -- in words ---------------------------------------------------------------------------------------------

    def text(self) -> str:
        lines = [self._runs_table(), "", self._store_table()]
        if self.mlflow is not None:
            lines += ["", self._mlflow_table()]
        elif self.mlflow_note:
            lines += ["", f"MLflow: {self.mlflow_note}"]
        going = sorted((f for f in self.fates if f.goes), key=lambda f: (f.item.kind != ENTRY, f.item.key))
        if going:
            lines += ["", "What goes:"]
            lines.append(report.table(("key", "bytes", "why"), [(f.item.key, size(f.item.size), f.why) for f in going]))
        if self.going_runs:
            tags = ", ".join(r.tag for r in self.going_runs)
            lines += ["", f"Still going (no record yet): {tags}; what was written since they were tagged stays."]
        return "\n".join(lines)

    def _runs_table(self) -> str:
        held = {f.item.md5: f for f in self.fates if f.item.kind in (OBJECT, DIR)}
        rows = []
        for v in self.verdicts:
            mine = [held[h] for h in self.outputs.get(v.run.tag, set()) if h in held]
            gone = [f for f in mine if f.goes]
            data = f"{len(mine)} objects, {size(sum(f.item.size for f in mine))}" if mine else "-"
            if gone:
                data += f"; {len(gone)} go ({size(sum(f.item.size for f in gone))})"
            rows.append((v.run.tag, v.run.state, f"yes: {v.why}" if v.kept else "no", data))
        kept = sum(v.kept for v in self.verdicts)
        head = f"Runs: {len(self.verdicts)}, {kept} kept, {len(self.verdicts) - kept} not kept."
        return f"{head}\n{report.table(('run', 'state', 'kept', 'its data on the remote'), rows)}"

    def _store_table(self) -> str:
        groups: dict[tuple[str, str, str], list[Item]] = {}
        for f in self.fates:
            what = "run-cache entries" if f.item.kind == ENTRY else "objects"
            groups.setdefault(("go" if f.goes else "stay", what, f.why), []).append(f.item)
        order = sorted(groups, key=lambda k: (k[0] == "go", k[1], k[2]))
        rows = [(*k, str(len(groups[k])), size(sum(i.size for i in groups[k]))) for k in order]
        for fate in ("stay", "go"):
            items = [i for (f, *_), listed in groups.items() if f == fate for i in listed]
            rows.append((fate, "in all", "", str(len(items)), size(sum(i.size for i in items))))
        listed = f"DVC remote {self.remote}: {len(self.fates)} objects listed."
        return f"{listed}\n{report.table(('', 'what', 'why', 'count', 'bytes'), rows)}"

    def _mlflow_table(self) -> str:
        rows = [
            (f.made.run_id, f.made.tag, "go" if f.goes else "stay", f.why, size(f.made.size), _made(f.made))
            for f in sorted(self.mlflow or [], key=lambda f: (f.goes, f.made.tag, f.made.run_id))
        ]
        if not rows:
            return f"MLflow at {self.mlflow_note}: no MLflow run is tagged with a run of this repository."
        header = ("MLflow run", "run tag", "", "why", "artifacts", "logged models, model versions")
        return f"MLflow at {self.mlflow_note}:\n{report.table(header, rows)}"

    def as_json(self) -> str:
        return json.dumps(
            {
                "remote": self.remote,
                "written_after_stays": datetime.fromtimestamp(self.shield.cutoff, UTC).isoformat(),
                "runs": [{"tag": v.run.tag, "state": v.run.state, "kept": v.kept, "why": v.why} for v in self.verdicts],
                "objects": [
                    {"key": f.item.key, "kind": f.item.kind, "size": f.item.size, "goes": f.goes, "why": f.why}
                    for f in self.fates
                ],
                "mlflow": None
                if self.mlflow is None
                else [
                    {"run_id": f.made.run_id, "tag": f.made.tag, "goes": f.goes, "why": f.why, "size": f.made.size}
                    for f in self.mlflow
                ],
                "still_going": [r.tag for r in self.going_runs],
            },
            indent=2,
        )


def _made(made: mlflow_runs.Made) -> str:
    models = f"{len(made.models)} logged model(s)" if made.models else ""
    return ", ".join(filter(None, (models, *map(str, made.versions)))) or "-"


def size(n: int) -> str:
    """Bytes in words: 512 B, 1.5 KiB, 3.2 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@dataclass
class _Names:
    """The content hashes commits name: those kept, those only runs not kept name, and each run's outputs."""

    kept: set[str]
    gone: set[str]
    outputs: dict[str, set[str]]
    entries: dict[str, tuple[str, ...]]  # run-cache entry key → the objects it names, for every lock seen


def _names(runs: Runs, judgement: list[Verdict], refs: list[str]) -> _Names:
    kept_revs = refs + [v.run.results for v in judgement if v.kept and v.run.results]
    gone_revs = [v.run.results for v in judgement if not v.kept and v.run.results]
    kept_texts = lock.versions(runs.git, kept_revs)
    gone_texts = lock.versions(runs.git, gone_revs, exclude=kept_revs)
    locks = lock.locks_at(runs.git, [v.run.results for v in judgement if v.run.results])
    kept = set().union(*map(lock.named, kept_texts.values()))
    gone = set().union(*map(lock.named, gone_texts.values())) - kept
    outputs = {v.run.tag: lock.named(locks.get(v.run.results or "")) for v in judgement if v.run.results}
    entries = {
        dvc_store.entry_key(e.key, e.value): e.outs
        for text in {*kept_texts.values(), *gone_texts.values(), *locks.values()}
        for e in lock.run_cache_entries(text)
    }
    return _Names(kept, gone, outputs, entries)


def plan(
    runs: Runs,
    store: Store,
    policy: Policy,
    own_prefix: str = "",
    mlflow: Any = None,
    mlflow_note: str = "",
) -> Plan:
    """What stays and what goes, and why; Refused when the store holds newer objects no commit names (unless
    `own_prefix` names the store as this project's alone). `mlflow` is a client when MLflow is to be asked
    (`mlflow_note`: where it is, or why it is not asked)."""
    if not runs.all:
        raise Refused(
            f"There is no run ({runs.prefix}*) here — gc keeps data by the runs that name it; with none it cannot "
            "tell this project's data from anything else."
        )
    if own_prefix and own_prefix.rstrip("/") != store.url.rstrip("/"):
        raise Refused(
            f"--prefix {own_prefix} is not the DVC remote's URL {store.url} — name exactly the remote gc works on "
            "(.dvc/config's url, or DVC_REMOTE_URL) to say it is this project's alone."
        )
    refs, judgement = judged(runs, policy)
    names = _names(runs, judgement, refs)
    going = in_flight(runs, policy.now)
    newest = max(_when(r) for r in runs.all)
    window = ci.longest_run(environment.ROOT / project.WORKFLOW)
    unseen = [v.run for v in judgement if v.kept and v.run.outcome is None and not v.run.problem]
    shield = Shield(newest, min([newest, *map(_when, going)]), tuple((_when(r), _when(r) + window) for r in unseen))

    items = store.items()
    listings = dvc_store.read_many(store, [i.key for i in items if i.kind == DIR])
    members = {key: dvc_store.dir_listing(data) or [] for key, data in listings.items()}
    for item in (i for i in items if i.kind == DIR):  # a kept directory keeps its files; a gone one names them
        listed = set(members[item.key])
        if item.md5 in names.kept:
            names.kept |= listed
        elif item.md5 in names.gone:
            names.gone |= listed - names.kept
    names.gone -= names.kept
    unknown = [i.key for i in items if i.kind == ENTRY and i.key not in names.entries]
    read = {
        key: lock.entry_outs((data or b"").decode("utf-8", "replace"))
        for key, data in dvc_store.read_many(store, unknown).items()
    }

    fates = {i.key: _object_fate(i, names, shield) for i in items if i.kind in (OBJECT, DIR, OTHER)}
    by_md5 = {fate.item.md5: fate for fate in fates.values() if fate.item.kind in (OBJECT, DIR)}
    entries = [(i, names.entries.get(i.key, read.get(i.key))) for i in items if i.kind == ENTRY]
    # A shielded entry stays (a push may be under way), and so does every object it names.
    rescue = [md5 for item, outs in entries if shield.why(item.modified) for md5 in outs or ()]
    while rescue:
        fate = by_md5.get(rescue.pop())
        if fate and fate.goes:
            by_md5[fate.item.md5] = fates[fate.item.key] = Fate(fate.item, False, RESCUED)
            rescue += members.get(fate.item.key, [])
    for item, outs in entries:
        fates[item.key] = _entry_fate(item, outs, by_md5, shield)

    # What no commit names (an object, or an entry of no lock seen), written after the newest run: whose is it?
    foreign = [
        i
        for i in items
        if i.modified > newest
        and (i.kind in (OBJECT, DIR) and i.md5 not in names.kept | names.gone or i.kind == ENTRY and i.key in read)
    ]
    if foreign and not own_prefix:
        raise Refused(_foreign(store.url, foreign, runs, going))

    found = Plan(store.url, judgement, list(fates.values()), names.outputs, going, shield, mlflow_note=mlflow_note)
    if mlflow is not None:
        found.mlflow = _mlflow_fates(mlflow, judgement, runs.prefix)
    return found


def _object_fate(item: Item, names: _Names, shield: Shield) -> Fate:
    if item.kind == OTHER:
        return Fate(item, False, NOT_DVC)
    if item.md5 in names.kept:
        return Fate(item, False, NAMED)
    if why := shield.why(item.modified):
        return Fate(item, False, why)
    return Fate(item, True, ONLY_GONE if item.md5 in names.gone else UNNAMED)


def _entry_fate(item: Item, outs: tuple[str, ...] | None, objects: dict[str, Fate], shield: Shield) -> Fate:
    if outs is None:
        return Fate(item, False, UNREADABLE)
    if why := shield.why(item.modified):
        return Fate(item, False, why)
    if any(objects[md5].goes for md5 in outs if md5 in objects):
        return Fate(item, True, NAMES_GONE)
    if any(md5 not in objects for md5 in outs):
        return Fate(item, True, NAMES_MISSING)
    return Fate(item, False, NAMED)


def _foreign(url: str, items: list[Item], runs: Runs, going: list[Run]) -> str:
    last = max(items, key=lambda i: i.modified)
    newest_run = max(runs.all, key=_when)
    still = f"; a run still going may be writing them ({', '.join(r.tag for r in going)})" if going else ""
    return (
        f"The DVC remote {url} holds {len(items)} object(s) no commit of this repository names, written after its "
        f"newest run {newest_run.tag} ({newest_run.date}), e.g. {last.key}{still} — another repository may be "
        "writing there: give each repository its own prefix (`invoke init` sets s3://<bucket>/<name>); if this "
        f"prefix is this project's alone, say so: --prefix {url} (what no commit names yet stays)."
    )


def _mlflow_fates(client: Any, judged: list[Verdict], prefix: str) -> list[MlflowFate]:
    kept_tags = {v.run.tag for v in judged if v.kept}
    named = {run_id for v in judged if v.kept for run_id in v.run.mlflow_runs}
    found = mlflow_runs.tagged(client, [v.run.tag for v in judged], prefix)
    whys: dict[str, str] = {}
    for made in found:
        if made.tag in kept_tags:
            whys[made.run_id] = "of a kept run"
        elif made.run_id in named:
            whys[made.run_id] = "a kept run's record names it"
        elif made.aliased:
            whys[made.run_id] = f"its model version has an alias: {made.aliased[0]}"
    parents = {m.run_id: m.parent for m in found}
    staying = list(whys)
    while staying:  # the parent of a run that stays (train's run, with evaluate's nested in it) stays too
        parent = parents.get(staying.pop())
        if parent and parent in parents and parent not in whys:
            whys[parent] = "the parent of an MLflow run that stays"
            staying.append(parent)
    fates = []
    for made in found:
        if made.run_id in whys:
            fates.append(MlflowFate(made, False, whys[made.run_id]))
        elif not made.deleted or made.size or made.models or made.versions:  # a deleted run with nothing left: done
            fates.append(MlflowFate(made, True, "of a run not kept"))
    return fates


# -- deleting ---------------------------------------------------------------------------------------------------------


def check_can_apply(found: Plan) -> None:
    """Refuse to delete while a run may still be going: it may be about to name data that is going (DVC pushes no
    object the remote already holds)."""
    if found.going_runs:
        tags = ", ".join(r.tag for r in found.going_runs)
        hours = ci.longest_run(environment.ROOT / project.WORKFLOW) / 3600
        raise Refused(
            f"Run(s) {tags} may still be going (no record yet; a job may queue and run for {hours:g} h) and may name "
            "data gc would delete — run `invoke gc --apply` once they have ended (`invoke watch` follows them)."
        )


def apply(found: Plan, store: Store, client: Any, say: Callable[[str], None] = print) -> None:
    """Delete what goes, in the order that keeps every reference whole if it stops anywhere: the run-cache entries
    (nothing names them), the directory listings, the objects, then the MLflow runs of runs not kept."""
    freed = 0
    for kinds, what in (((ENTRY,), "run-cache entries"), ((DIR,), "directory listings"), ((OBJECT,), "objects")):
        items = found.going(*kinds)
        if items:
            bytes_ = sum(i.size for i in items)
            say(f"Deleting {len(items)} {what} ({size(bytes_)}) from {store.url}...")
            store.delete([i.key for i in items])
            freed += bytes_
    going = [f.made for f in found.mlflow or [] if f.goes]
    if going:
        say(f"Deleting {len(going)} MLflow run(s) of runs not kept, with what they made...")
        for made in going:
            mlflow_runs.delete(client, made)
        freed += sum(m.size for m in going)
    say(f"Done: {size(freed)} freed." if freed or going else "Nothing goes: nothing was deleted.")


# -- a local DVC cache ------------------------------------------------------------------------------------------------


def kept_hashes(runs: Runs, policy: Policy) -> set[str]:
    """Every content hash a kept run or a commit of a branch or tag names (git only: a directory's files are not
    listed; prune_cache reads the listings from the cache itself)."""
    refs, judgement = judged(runs, policy)
    kept_revs = refs + [v.run.results for v in judgement if v.kept and v.run.results]
    return set().union(*map(lock.named, lock.versions(runs.git, kept_revs).values()))


@dataclass(frozen=True)
class Pruned:
    """What prune_cache did: entries and objects deleted, bytes freed, bytes left, whether the bound was reached."""

    entries: int
    objects: int
    freed: int
    left: int
    within: bool


def prune_cache(cache: Path, max_bytes: int, keep: set[str], now: float | None = None, grace: float = 0) -> Pruned:
    """Bring a local DVC cache (`.dvc/cache`: files/md5/… and runs/…) under `max_bytes`: the objects no kept run
    names go, least recently written first, until it fits; what `keep` names never goes (nor do the files of a
    kept directory, nor anything written in the last `grace` seconds: a job may be using it). A run-cache entry
    goes before any object it names: DVC never finds an entry here whose outputs this pruning took (one naming an
    object the cache never had stays: `dvc repro --pull` fetches that from the remote). The cache stays over the
    bound when what is kept is bigger; `within` says so."""
    store = dvc_store.folder(cache)
    items = store.items()
    now = time.time() if now is None else now
    kept = set(keep)
    for item in (i for i in items if i.kind == DIR and i.md5 in keep):
        kept |= set(dvc_store.dir_listing(store.read(item.key)) or [])
    total = sum(i.size for i in items)
    candidates = sorted(
        (i for i in items if i.kind in (OBJECT, DIR) and i.md5 not in kept and now - i.modified >= grace),
        key=lambda i: i.modified,
    )
    evicted, freed = [], 0
    for item in candidates:
        if total - freed <= max_bytes:
            break
        evicted.append(item)
        freed += item.size
    gone = {i.md5 for i in evicted}
    entries = []
    for item in (i for i in items if i.kind == ENTRY):
        outs = lock.entry_outs((store.read(item.key) or b"").decode("utf-8", "replace"))
        if outs is not None and any(md5 in gone for md5 in outs):
            entries.append(item)
    store.delete([i.key for i in entries])
    store.delete([i.key for i in sorted(evicted, key=lambda i: i.kind != DIR)])
    freed += sum(i.size for i in entries)
    return Pruned(len(entries), len(evicted), freed, total - freed, total - freed <= max_bytes)
