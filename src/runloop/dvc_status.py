"""What DVC says of the pipeline in this checkout, asked in-process (no extra `python -m dvc`): is every stage up to
date with its outputs present, which outputs the DVC remote cannot carry, which are not on the remote yet.

share asks all three before any git ref moves: a results commit must never record a stage DVC calls changed, nor
point at data a fresh clone cannot pull.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke import Exit

from src.runloop import environment


@dataclass(frozen=True)
class Output:
    path: str  # relative to the project root, as dvc.yaml names it
    stage: str
    cached: bool  # `cache: false` keeps it out of DVC's cache: only git could hold it
    pushed: bool  # `push: false` keeps it off the remote


@contextmanager
def _repo(root: Path) -> Iterator[Any]:
    environment.quiet()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            yield repo
    except DvcException as exc:
        raise Exit(
            f"DVC could not read the pipeline: {exc} — fix dvc.yaml/dvc.lock, then run `invoke repro`."
        ) from None


def outputs(root: Path = environment.ROOT) -> list[Output]:
    """Every output the pipeline declares (outs, metrics, plots)."""
    with _repo(root) as repo:
        return [
            Output(Path(out.fs_path).relative_to(root).as_posix(), out.stage.addressing, out.use_cache, out.can_push)
            for out in repo.index.outs
        ]


def stale(root: Path = environment.ROOT) -> list[str]:
    """One line per stage that `dvc status` does not call up to date (changed, never run, or outputs missing)."""
    with _repo(root) as repo:
        found = repo.status()
    return [f"{stage} ({'; '.join(_describe(change) for change in changes)})" for stage, changes in found.items()]


def _describe(change: Any) -> str:
    if isinstance(change, dict):  # {"changed outs": {"models/model.pkl": "not in cache"}}
        return "; ".join(
            f"{kind}: " + ", ".join(f"{p} {s}" for p, s in paths.items()) for kind, paths in change.items()
        )
    return str(change)  # "always changed", "changed command"


def not_on_remote(root: Path = environment.ROOT) -> list[str]:
    """Outputs whose data the DVC remote lacks, as `dvc status --cloud` sees them: `path (new|missing|…)`."""
    with _repo(root) as repo:
        try:
            found = repo.status(cloud=True)
        except Exception as exc:  # noqa: BLE001 - the remote's own error, said in one line
            raise Exit(
                f"Asking the DVC remote what it holds failed: {exc} — check the remote, then share again."
            ) from None
    return [f"{path} ({state})" for path, state in sorted(found.items())]
