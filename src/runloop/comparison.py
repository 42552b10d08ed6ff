"""Two runs side by side: DVC's own `params diff`, `metrics diff` and `plots diff` of their results commits.

Metric and plot files are DVC outputs, not in git, so the revisions' files are fetched into the local cache
first (DVC's fetch, for those revisions, metrics and plots only). DVC shows a metric file it could not read as
"-" without a word (treeverse/dvc#6185): `missing` says which file, for which run, instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

from invoke import Context

from src.runloop import environment
from src.runloop.commands import DVC, git, run
from src.runloop.runs import Run

# DVC's Python API, because `dvc fetch` has no option for one revision (its API has `revs`).
_FETCH = """
import sys
from dvc.repo import Repo
with Repo(".") as repo:
    repo.fetch(revs=sys.argv[2:], types=sys.argv[1].split(","), workspace=False)
"""


MISSING = "is missing for"


def fetch(c: Context, env: Mapping[str, str], revs: list[str], types: str = "metrics,plots") -> str | None:
    """Fetch the metric and plot files the revisions record; None, or the reason it failed (DVC's last line)."""
    result = run(c, sys.executable, "-c", _FETCH, types, *revs, env=env)
    if result.ok:
        return None
    return environment.scrub(((result.stderr or result.stdout or "").strip().splitlines() or ["no output"])[-1])


def declared_metrics(c: Context, rev: str | None) -> list[str]:
    """The metric files the revision's dvc.yaml declares (None: the working tree's)."""
    import yaml

    text = git(c, "show", f"{rev}:dvc.yaml") if rev else (environment.ROOT / "dvc.yaml").read_text()
    stages = (yaml.safe_load(text or "") or {}).get("stages") or {}
    return [next(iter(m)) if isinstance(m, dict) else m for stage in stages.values() for m in stage.get("metrics", [])]


def missing(c: Context, env: Mapping[str, str], old: str, new: str | None) -> list[str]:
    """One line per metric file DVC could not read for a revision that declares it (new None: the working tree)."""
    result = run(c, *DVC, "metrics", "diff", *_revs(old, new), "--all", "--json", env=env)
    try:
        diff = json.loads(result.stdout) if result.ok else {}
    except ValueError:
        diff = {}
    lines = []
    for rev, side in ((old, "old"), (new, "new")):
        for path in declared_metrics(c, rev):
            values = [v.get(side) for v in (diff.get(path) or {}).values()]
            if not any(v is not None for v in values):
                lines.append(
                    f"{path} {MISSING} {rev or 'the working tree'}: neither the local DVC cache nor the remote "
                    "has it (push it from the runner that made it: `invoke share` pushes every output)."
                )
    return lines


def _revs(old: str, new: str | None) -> list[str]:
    return [old, new] if new else [old]


def text(c: Context, env: Mapping[str, str], old: str, new: str | None, md: bool = False) -> str:
    """The params that changed and every metric with its delta, from `old` to `new` (None: the working tree)."""
    style = ["--md"] if md else []
    params = run(c, *DVC, "params", "diff", *_revs(old, new), *style, env=env)
    metrics = run(c, *DVC, "metrics", "diff", *_revs(old, new), "--all", *style, env=env)
    parts = ["Params:", _shown(params, "No param changed."), "", "Metrics:", _shown(metrics, "No metrics.")]
    parts += ["", *missing(c, env, old, new)] if metrics.ok else []
    return "\n".join(parts).rstrip() + "\n"


def _shown(result, empty: str) -> str:
    """DVC's table, or what DVC said when it failed (without credentials)."""
    if not result.ok:
        return f"DVC failed: {environment.scrub((result.stderr or result.stdout or '').strip())}"
    return result.stdout.strip() or empty


def plots(c: Context, env: Mapping[str, str], old: str, new: str, out: str) -> str | None:
    """Render DVC's plots of both revisions into `out` (an HTML page); None, or DVC's reason."""
    result = run(c, *DVC, "plots", "diff", old, new, "--out", out, env=env)
    return None if result.ok else environment.scrub((result.stderr or result.stdout).strip())


def rev(r: Run) -> str:
    """The short name a comparison's columns show for a run: its results commit, abbreviated."""
    return (r.results or r.commit)[:12]


def against_previous(c: Context, env: Mapping[str, str], previous: Run | None, branch: str | None) -> str:
    """The comparison of the working tree's results with `previous` (the branch's run before), for share."""
    if previous is None or not previous.results:
        return f"Compared with: nothing (no earlier run of {branch or 'this branch'} has results).\n"
    failed = fetch(c, env, [previous.results], "metrics")
    body = text(c, env, rev(previous), None)
    note = f"(fetching its metric files failed: {failed})\n" if failed and MISSING in body else ""
    return f"Compared with {previous.tag} ({rev(previous)}):\n{note}{body}"
