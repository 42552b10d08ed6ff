"""Sweeps: `invoke tag-run --set KEY=VALUES …` makes one run per combination of values, a leg, for the runner pool.

Each leg is a commit whose only parent is HEAD and whose only change is params.yaml, tagged and pushed as a run
of its own (one push per tag: GitHub starts no workflow for a push that carries more than three tags). The tag
carries the commit to the remote: no branch is made for it, so no other workflow starts for it and nothing lands
on the user's branch. Its annotation records the branch, the sweep and the leg's values (record.Launch);
`invoke share` keeps each leg's results on `results/<tag>`, so legs never race each other or the branch.

    plan(params_text, specs, max_legs)    the legs: keys and types checked, each leg's params.yaml written
    tag_legs(git, runs, …)                each leg's commit made on the base and its tag pushed alone
    members(runs), named(runs, name)      the runs that are a sweep's legs; a sweep's stem and its legs
    table(stem, legs, sort, ascending)    `invoke runs --sweep`: swept params against metrics, the best marked
                                          (several legs tied for the best: a tie, none marked)
    adopt(git, best, remote)              the commands that bring the best leg's params onto its branch (a tie:
                                          each tied leg's, and how to break the tie)

The --set grammar is sweep_grammar.py's; params.yaml is read and edited by params_yaml.py.
"""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass
from typing import Any

from src.runloop import params_yaml, record, report, run_tag
from src.runloop.git import Git
from src.runloop.refusal import Refused
from src.runloop.runs import Run, Runs
from src.runloop.sweep_grammar import MAX_LEGS, PARAMS, Spec, parse, shown

__all__ = ["MAX_LEGS", "parse"]
DEFAULT_LABEL = "sweep"
# Said when the sweep's base has no results: nothing is in DVC's run cache for the stages the legs share.
COLD = (
    "Note: this clone knows no results of {base} (the sweep's base), so each leg also computes the stages the swept "
    "keys do not touch. To have the legs restore those from DVC's run cache, `invoke tag-run` the base first and "
    "sweep once its results are in (`invoke runs` fetches them)."
)


@dataclass(frozen=True)
class Leg:
    """One combination of values: its number, the values by key, and params.yaml as the leg's commit holds it."""

    number: int
    count: int
    values: dict[str, Any]
    params: str

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={shown(value)}" for key, value in self.values.items())


def plan(params_text: str, specs: list[Spec], max_legs: int = MAX_LEGS, allow_non_finite: bool = False) -> list[Leg]:
    """Every combination of the specs' values as a leg, each with its params.yaml; refuses before making any
    (a float that is not finite too, unless `allow_non_finite`)."""
    keys = [spec.key for spec in specs]
    if twice := next((k for i, k in enumerate(keys) if keys.index(k) != i), None):
        raise Refused(f"--set {twice} is given twice — give one --set per key, its values separated by commas.")
    size = 1
    for spec in specs:
        size *= len(spec.values)
    if size > max_legs:
        counts = " × ".join(str(len(spec.values)) for spec in specs)
        raise Refused(
            f"The sweep has {size} legs ({counts}), more than --max-legs {max_legs} — sweep fewer values, or raise "
            "--max-legs if the runners can take them."
        )
    current = params_yaml.load(params_text)
    typed = [
        (
            spec.key,
            [
                params_yaml.typed(current, spec.key, v, t, allow_non_finite)
                for v, t in zip(spec.values, spec.texts, strict=True)
            ],
        )
        for spec in specs
    ]
    combos = list(itertools.product(*[values for _, values in typed]))
    return [
        Leg(number, len(combos), values, params_yaml.edited(params_text, values))
        for number, values in enumerate((dict(zip(keys, combo, strict=True)) for combo in combos), start=1)
    ]


def tag_legs(
    runs: Runs,
    sets: list[str],
    label: str,
    message: str,
    branch: str,
    base: str,
    stamp: str,
    max_legs: int,
    runner: str | None = None,
    dry_run: bool = False,
    allow_non_finite: bool = False,
) -> list[str]:
    """A leg per combination of the --set values: a commit on `base` changing only params.yaml, tagged and pushed
    alone (GitHub starts no workflow for a push of more than three tags); its results go to results/<tag>."""
    git, remote = runs.git, runs.remote
    specs = [parse(text, max_legs) for text in sets]
    legs = plan(git("show", f"{base}:{PARAMS}") or "", specs, max_legs, allow_non_finite)
    label = label or DEFAULT_LABEL
    stem = run_tag.name(runs.prefix, branch, stamp, label)
    tags = tag_names(stem, len(legs))
    if clash := taken(git, tags, remote):
        raise Refused(f"Tag {clash[0]!r} already exists — wait a second or pass another --name.")
    if not has_run(runs, base):
        print(COLD.format(base=base[:12]))
    if dry_run:
        on = f" for runner class {runner}" if runner else ""
        print(f"Would make sweep {stem}: {len(legs)} leg(s){on} on {base[:12]} ({branch}), each a commit that")
        print(f"changes only {PARAMS}, its tag pushed alone to {remote}:")
        print("\n".join(f"  {tag}  {leg.label}" for leg, tag in zip(legs, tags, strict=True)))
        return tags
    pushed: list[str] = []
    for leg, tag in zip(legs, tags, strict=True):
        made = commit(git, base, leg, _message(leg, label))
        values = tuple((key, shown(value)) for key, value in leg.values.items())
        launch = record.Launch(
            message or f"Leg {leg.number}/{leg.count} of sweep {stem}",
            branch,
            stem,
            (leg.number, leg.count),
            values,
            runner,
        )
        try:
            run_tag.create_and_push(git, tag, launch, remote, made)
        except Refused as exc:
            rest = "; ".join(later.label for later in legs[leg.number - 1 :])
            left = f" Legs pushed (they run): {', '.join(pushed)}. Not made: {rest}." if pushed else ""
            raise Refused(f"{exc}{left}") from None
        pushed.append(tag)
        print(f"Tagged {made} (leg {leg.number}/{leg.count}: {leg.label}) as {tag} and pushed it to {remote}.")
    print(f"Each leg's results go to results/<its tag>; compare the legs: invoke runs --sweep {stem}")
    return tags


def commit(git: Git, base: str, leg: Leg, message: str) -> str:
    """The leg's commit: `base`'s tree with the leg's params.yaml, `base` its only parent; the checkout, the index
    and every branch stay as they are (the commit is reachable only once its tag points at it)."""
    import os
    import tempfile

    listed = git.must(f"Reading {PARAMS} at {base[:12]}", "ls-tree", base, "--", PARAMS)
    mode = listed.split()[0] if listed else "100644"
    blob = git.must(
        f"Storing leg {leg.number}'s {PARAMS}", "hash-object", "-w", "--stdin", f"--path={PARAMS}", input=leg.params
    )
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        git.must("Reading HEAD's tree", "read-tree", base, env=env)
        git.must("Staging the leg's params", "update-index", "--cacheinfo", f"{mode},{blob},{PARAMS}", env=env)
        tree = git.must("Writing the leg's tree", "write-tree", env=env)
    return git.must(f"Committing leg {leg.number}", "commit-tree", tree, "-p", base, "-F", "-", input=message)


def _message(leg: Leg, label: str) -> str:
    """The leg commit's message: its values first (the results commit's subject adds "-results")."""
    return (
        f"Set {leg.label} (leg {leg.number}/{leg.count} of sweep {label})\n\n"
        f"Made by `invoke tag-run --set`: this commit changes only {PARAMS}; its parent is the sweep's base.\n"
    )


def tag_names(stem: str, count: int) -> list[str]:
    width = len(str(count))
    return [f"{stem}-{n:0{width}d}" for n in range(1, count + 1)]


def taken(git: Git, tags: list[str], remote: str) -> list[str]:
    """Those of `tags` that git refuses as names, or that exist here or on the remote (one ls-remote for all)."""
    bad = [t for t in tags if git("check-ref-format", f"refs/tags/{t}") is None]
    here = [t for t in tags if git("rev-parse", "--quiet", "--verify", f"refs/tags/{t}") is not None]
    there = git.run("ls-remote", "--tags", remote, *(f"refs/tags/{t}" for t in tags)).stdout
    remote_tags = {line.split("refs/tags/", 1)[1] for line in there.splitlines() if "refs/tags/" in line}
    return [t for t in tags if t in bad or t in here or t in remote_tags]


def has_run(runs: Runs, base: str) -> bool:
    """Whether the base's stages are in DVC's run cache: a run of it has results, or it holds a dvc.lock."""
    return any(r.commit == base and r.results for r in runs.all) or runs.git("cat-file", "-e", f"{base}:dvc.lock") == ""


# -- looking back ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A run that is a leg of a sweep, with what its tag records of it."""

    run: Run
    stem: str
    number: int
    count: int
    values: tuple[tuple[str, str], ...]  # (key, value as recorded)


def member(r: Run) -> Member | None:
    """The sweep leg `r` is, as its tag records it; None for a run that is no leg."""
    launch = r.launch
    if not (launch.sweep and launch.leg):
        return None
    return Member(r, launch.sweep, launch.leg[0], launch.leg[1], launch.sets)


def named(runs: list[Run], name: str) -> tuple[str, list[Member]]:
    """The sweep `name` names (its stem, or the label it was given: the newest with that label) and its legs."""
    members = [m for m in (member(r) for r in runs) if m]
    stems = list(dict.fromkeys(m.stem for m in members))  # newest first, as listed
    stem = next((s for s in stems if s == name), None) or next((s for s in stems if s.endswith(f"-{name}")), None)
    if stem is None:
        known = ", ".join(stems[:5]) or "none yet"
        raise Refused(f"No sweep named {name!r} — sweeps here (newest first): {known}. `invoke runs` fetches them.")
    return stem, sorted((m for m in members if m.stem == stem), key=lambda m: m.number)


def metrics(r: Any) -> dict[str, float]:
    """A run's metrics as its results commit lists them ("file key: value"), the numbers only."""
    found = {}
    for line in r.metrics:
        name, _, value = line.rpartition(": ")
        try:
            found[name] = float(value)
        except ValueError:
            continue
    return found


def metric_name(wanted: str, available: list[str]) -> str:
    """The metric `wanted` names: "file key" / "file:key" as listed, or a key alone when one file has it."""
    if not available:
        raise Refused("No leg has results yet, so there is no metric to sort by — wait for the legs (invoke watch).")
    if not wanted:
        last = available[-1].split(" ", 1)[0]  # the headline: the last metric file's first metric
        return next(m for m in available if m.split(" ", 1)[0] == last)
    spelled = wanted.replace(":", " ", 1)
    matches = [m for m in available if m == spelled] or [m for m in available if m.split(" ", 1)[-1] == wanted]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(m.replace(" ", ":", 1) for m in available)
    why = "several files have it" if matches else "no leg's results list it"
    raise Refused(f"--sort {wanted!r}: {why} — name one of: {listed}.")


def table(stem: str, legs: list[Member], sort: str = "", ascending: bool = False) -> tuple[str, list[Member]]:
    """The legs' swept params against their metrics, sorted by `sort`, the best marked; and the best leg, or the
    legs that tie for the best (none is marked then: which to keep is not the metric's to say)."""
    values = {m.run.tag: metrics(m.run) for m in legs}
    available = list(dict.fromkeys(name for v in values.values() for name in v))
    key = metric_name(sort, available) if available or sort else ""
    with_results = [m for m in legs if key in values[m.run.tag]]
    ranked = sorted(with_results, key=lambda m: values[m.run.tag][key], reverse=not ascending)
    ordered = ranked + [m for m in legs if m not in ranked]
    best = [m for m in ranked if values[m.run.tag][key] == values[ranked[0].run.tag][key]] if ranked else []
    keys = list(dict.fromkeys(k for m in legs for k, _ in m.values))
    shown_metrics = [key] + [n for n in available if n != key] if key else []
    header = ("", "leg", "tag", *keys, *(n.replace(" ", ":", 1) for n in shown_metrics), "state")
    rows = [
        (
            "*" if best == [m] else "",
            f"{m.number}/{m.count}",
            m.run.tag,
            *(dict(m.values).get(k, "?") for k in keys),
            *(f"{values[m.run.tag][n]:g}" if n in values[m.run.tag] else "-" for n in shown_metrics),
            "results" if m.run.results else "waiting",
        )
        for m in ordered
    ]
    direction = "lower is better" if ascending else "higher is better"
    metric = key.replace(" ", ":", 1)
    if len(best) > 1:
        tied = ", ".join(f"{m.number}/{m.count}" for m in best)
        marks = f"; legs {tied} tie for the best ({metric} {values[best[0].run.tag][key]:g}): none is marked"
    else:
        marks = "; * marks the best"
    by = f", sorted by {metric} ({direction}){marks}" if key else ""
    base = legs[0].run.branch or "?"
    head = f"Sweep {stem}: {len(legs)} of {legs[0].count} legs on {base}{by}."
    return f"{head}\n\n{report.table(header, rows)}", best


def adopt(git: Git, best: list[Member], remote: str) -> str:
    """How to bring the best leg's params onto its branch (and, when the branch has not moved, its results too);
    for legs tied for the best, how to bring each one's, and how to break the tie."""
    branch = best[0].run.branch or "BRANCH"
    switch = shlex.join(["git", "switch", branch]) + " && " + shlex.join(["git", "pull", "--ff-only", remote, branch])
    if len(best) > 1:
        legs = "; ".join(f"{m.number}/{m.count} ({', '.join(f'{k}={v}' for k, v in m.values)})" for m in best)
        return "\n".join(
            [
                f"Tie: legs {legs} score the same. Rank them by another metric (--sort METRIC), or bring the params of "
                f"the one you choose onto {branch} (a commit that changes only {PARAMS}), then `invoke tag-run` it:",
                *(f"  {switch} && {shlex.join(['git', 'cherry-pick', m.run.commit])}   # leg {m.number}" for m in best),
                "Then push the branch.",
            ]
        )
    [one] = best
    r = one.run
    base = git("rev-parse", "--verify", "--quiet", f"{r.commit}^") or ""
    tip = git("rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{branch}")
    lines = [
        f"Best: leg {one.number}/{one.count} ({', '.join(f'{k}={v}' for k, v in one.values)}), {r.tag}.",
        f"Bring its params onto {branch} (a commit that changes only {PARAMS}), then `invoke tag-run` it there:",
        f"  {switch} && {shlex.join(['git', 'cherry-pick', r.commit])}",
    ]
    if r.results and tip and tip == base:
        lines += [
            f"Or, as {branch} has not moved since the sweep, take the leg's commit and its results as they are:",
            f"  {switch} && {shlex.join(['git', 'merge', '--ff-only', r.results])}",
        ]
    return "\n".join(lines + ["Then push the branch."])
