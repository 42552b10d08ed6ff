"""Two runs side by side: DVC's own `params diff`, `metrics diff` and `plots diff` of their results commits.

Metric and plot files are DVC outputs, not in git, so the revisions' files are fetched into the local cache
first (DVC's fetch, for those revisions, metrics and plots only). DVC shows a metric file it could not read as
"-" without a word (treeverse/dvc#6185): `missing` says which file, for which run, instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from src.runloop import environment
from src.runloop.dvc_repo import COMMAND, Dvc
from src.runloop.git import Git
from src.runloop.runs import Run

MISSING = "is missing for"


def fetch(dvc: Dvc, revs: list[str], types: tuple[str, ...] = ("metrics", "plots")) -> str | None:
    """Fetch the metric and plot files the revisions record; None, or the reason it failed."""
    return dvc.fetch(revs, list(types))


def declared_metrics(git: Git, rev: str | None) -> list[str]:
    """The metric files the revision's dvc.yaml declares (None: the working tree's)."""
    import yaml

    text = git("show", f"{rev}:dvc.yaml") if rev else (environment.ROOT / "dvc.yaml").read_text()
    stages = (yaml.safe_load(text or "") or {}).get("stages") or {}
    return [next(iter(m)) if isinstance(m, dict) else m for stage in stages.values() for m in stage.get("metrics", [])]


def missing(git: Git, diff: Mapping[str, Mapping[str, Mapping]], old: str, new: str | None) -> list[str]:
    """One line per metric file DVC could not read for a revision that declares it (new None: the working tree)."""
    lines = []
    for rev, side in ((old, "old"), (new, "new")):
        for path in declared_metrics(git, rev):
            values = [v.get(side) for v in (diff.get(path) or {}).values()]
            if not any(v is not None for v in values):
                lines.append(
                    f"{path} {MISSING} the working copy: run `invoke repro` here first."
                    if rev is None
                    else f"{path} {MISSING} {rev}: neither the local DVC cache nor the remote has it (push it from "
                    "the runner that made it: `invoke share` pushes every output)."
                )
    return lines


def text(git: Git, dvc: Dvc, old: str, new: str | None, md: bool = False) -> str:
    """The params that changed and every metric with its delta, from `old` to `new` (None: the working tree)."""
    try:
        params, metrics, diff = dvc.diff(old, new, md)
    except Exception as exc:  # noqa: BLE001 - DVC's own error, said in one line
        return f"DVC failed: {environment.one_line(environment.scrub(str(exc)))}\n"
    parts = ["Params:", params or "No param changed.", "", "Metrics:", metrics or "No metrics."]
    parts += ["", *missing(git, diff, old, new)]
    return "\n".join(parts).rstrip() + "\n"


def plots(env: Mapping[str, str], old: str, new: str | None, out: str) -> str | None:
    """Render DVC's plots of both revisions (new None: the working copy) into `out` (an HTML page); None, or DVC's
    reason."""
    cmd = [*COMMAND, "plots", "diff", old, *([new] if new else []), "--out", out]
    result = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return None if result.returncode == 0 else environment.scrub((result.stderr or result.stdout).strip())


def rev(r: Run) -> str:
    """The short name a comparison's columns show for a run: its results commit, abbreviated."""
    return (r.results or r.commit)[:12]


def against_previous(git: Git, dvc: Dvc, previous: Run | None, branch: str | None) -> str:
    """The comparison of the working tree's results with `previous` (the branch's run before), for share."""
    if previous is None or not previous.results:
        return f"Compared with: nothing (no earlier run of {branch or 'this branch'} has results).\n"
    failed = fetch(dvc, [previous.results], ("metrics",))
    body = text(git, dvc, rev(previous), None)
    note = f"(fetching its metric files failed: {failed})\n" if failed and MISSING in body else ""
    return f"Compared with {previous.tag} ({rev(previous)}):\n{note}{body}"
