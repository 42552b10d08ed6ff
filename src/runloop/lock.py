"""The pipeline's two files: dvc.yaml (what the stages declare) and dvc.lock (what a run recorded).

One `Output` for every output and input a run knows of, one `Lock` for a dvc.lock, and the one rule for which
outputs a results commit can carry. Reading the files takes milliseconds where a `dvc` command takes a second:
the checks around a no-op `invoke repro` read them here.

    stages(root)                   dvc.yaml's stages (a file DVC could not read either is a SettingsError)
    declared(stages)               every output they declare, with its cache and push settings
    unshareable(outputs)           those the DVC remote will never hold, in words
    Lock.read(root) / Lock(text)   a dvc.lock: its outputs and their hashes
    Lock.changed_outputs(other)    which outputs differ between two locks of the same inputs
    recorded(git, rev)             what a commit records: each output of its dvc.lock and each .dvc file's input
    versions(git, revs, exclude)   every dvc.lock and .dvc file in the history of revs (not of exclude): blob → text
    locks_at(git, revs)            the dvc.lock of each of these commits: rev → its text
    named(text)                    every content hash a dvc.lock or .dvc file names (outs, deps, a directory's files)
    run_cache_entries(text)        the run-cache entries DVC makes of a dvc.lock's stages: where, and what they name
    entry_outs(text)               what a run-cache entry's outputs are (their hashes)
    run_records(root)              the MLflow run records (runs/<stage>.json) the stages write, as they are here
    not_up_to_date(stages, root)   stages dvc.lock does not record, or whose outputs are missing or changed
    left_by_repro(changes)         how to drop the dvc.lock a local `invoke repro` left, when git status lists one
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.runloop import environment
from src.runloop.git import Git
from src.runloop.tracking import is_run_record, read_record

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
_MD5 = re.compile(r"[0-9a-f]{32}(?:\.dir)?")
# What DVC leaves out when it names a run-cache entry (dvc.stage.cache._get_cache_hash): sizes may differ, the
# content may not.
_UNHASHED = ("size", "nfiles")


@dataclass(frozen=True)
class Output:
    """A file or directory a run makes or reads: a stage's output, or an input a .dvc file tracks."""

    path: str  # relative to the project root
    stage: str  # the stage that writes it, or the .dvc file that tracks an input
    md5: str = ""  # DVC's hash, where a lock records one
    cache: bool = True  # `cache: false` keeps it out of DVC's cache: only git could hold it
    push: bool = True  # `push: false` keeps it off the remote

    @property
    def shareable(self) -> bool:
        """Whether the DVC remote carries it, so a clone of the results can pull it."""
        return self.cache and self.push

    @property
    def is_input(self) -> bool:
        return self.stage.endswith(".dvc")

    @property
    def is_run_record(self) -> bool:
        return is_run_record(self.path)


def left_by_repro(changes: list[tuple[str, str]]) -> str | None:
    """How to drop the dvc.lock a local `invoke repro` left, when `changes` (git status: (status, path) pairs) list
    one: untracked, delete it; changed, restore the committed one. None when dvc.lock is unchanged.

    Neither `git stash` (it leaves untracked files) nor a commit (a dvc.lock is committed by `invoke share` alone,
    with its data on the remote) is the fix.
    """
    status = next((code for code, path in changes if path == DVC_LOCK), None)
    if status is None:
        return None
    return f"delete it: rm {DVC_LOCK}" if status == "??" else f"restore it: git checkout HEAD -- {DVC_LOCK}"


def unshareable(outputs: list[Output]) -> list[str]:
    """The outputs the DVC remote will never hold (`cache: false`: git would have to; `push: false`), in words."""
    return [
        f"{o.path} ({o.stage}, {'cache: false' if not o.cache else 'push: false'})" for o in outputs if not o.shareable
    ]


# -- dvc.yaml -------------------------------------------------------------------------------------------------------


def stages(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages; a file DVC could not read either is a SettingsError naming the file and the place."""
    path = (root or environment.ROOT) / DVC_YAML
    if not path.is_file():
        raise environment.SettingsError(f"There is no {DVC_YAML} in {path.parent} — run this in the project's root")
    content = environment.read_yaml(path)
    found = content.get("stages") if isinstance(content, dict) else None
    if not isinstance(found, dict) or not found:
        raise environment.SettingsError(f"{DVC_YAML} has no 'stages:' mapping — define the pipeline's stages there")
    for name, stage in found.items():
        if not isinstance(stage, dict) or not ("cmd" in stage or "do" in stage):
            raise environment.SettingsError(f"{DVC_YAML}: stage {name!r} has no 'cmd:' — give it the command to run")
    return found


def declared(defined: Mapping[str, dict[str, Any]]) -> list[Output]:
    """Every output the stages declare (outs, metrics, plots), with its cache and push settings; foreach/matrix
    stages are left out (their paths are templates DVC expands)."""
    found = []
    for name, stage in defined.items():
        if "do" in stage:
            continue
        wdir = Path(stage.get("wdir", "."))
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                options = options if isinstance(options, dict) else {}
                found.append(
                    Output(
                        os.path.normpath(wdir / str(path)),
                        name,
                        cache=options.get("cache", True) is not False,
                        push=options.get("push", True) is not False,
                    )
                )
    return found


# -- dvc.lock ----------------------------------------------------------------------------------------------------


class Lock:
    """A dvc.lock's content (an empty lock for no text)."""

    def __init__(self, text: str | None) -> None:
        import yaml

        loaded = yaml.safe_load(text or "") or {}
        self.stages: dict[str, dict[str, Any]] = (loaded.get("stages") if isinstance(loaded, dict) else None) or {}

    @classmethod
    def read(cls, root: Path | None = None) -> Lock:
        path = (root or environment.ROOT) / DVC_LOCK
        return cls(path.read_text(encoding="utf-8") if path.is_file() else None)

    def outputs(self) -> list[Output]:
        """Every output the lock records, with its hash."""
        return [
            Output(out["path"], stage, out.get("md5", ""))
            for stage, entry in self.stages.items()
            for out in entry.get("outs") or []
        ]

    def hashes(self, records: bool = False) -> dict[str, str]:
        """Output path → hash; the MLflow run records (runs/*.json, which name a machine's MLflow runs) only with
        `records`: without them, two runs that made the same data have the same hashes."""
        return {o.path: o.md5 for o in self.outputs() if records or not o.is_run_record}

    def changed_outputs(self, new: Lock) -> list[str] | None:
        """The outputs whose hashes differ from this lock's in `new`; None when code, params or data in differ.

        A stage's run record as the dependency of a later stage (evaluate reads train's) is not data in: its change
        is the upstream output's, listed once.
        """
        if self.stages.keys() != new.stages.keys():
            return None
        differ = []
        for stage, was in self.stages.items():
            now = new.stages[stage]
            if _inputs(was) != _inputs(now):
                return None
            was_outs = {o["path"]: o for o in was.get("outs", [])}
            now_outs = {o["path"]: o for o in now.get("outs", [])}
            if was_outs.keys() != now_outs.keys():
                return None
            differ += [path for path, out in was_outs.items() if out != now_outs[path]]
        return differ


def _inputs(stage: dict) -> dict:
    deps = [d for d in stage.get("deps", []) if not is_run_record(d.get("path", ""))]
    return {**{k: v for k, v in stage.items() if k != "outs"}, "deps": deps}


def recorded(git: Git, rev: str) -> list[Output]:
    """Each output `rev`'s dvc.lock records and each input a .dvc file of `rev` tracks, with its hash."""
    import yaml

    found = Lock(git("show", f"{rev}:{DVC_LOCK}")).outputs()
    tracked = (git("ls-tree", "-r", "--name-only", rev) or "").splitlines()
    for name in (n for n in tracked if n.endswith(".dvc") and not n.startswith(".dvc/")):
        dvc_file = yaml.safe_load(git("show", f"{rev}:{name}") or "") or {}
        folder = posixpath.dirname(name)
        for out in dvc_file.get("outs", []):
            found.append(Output(posixpath.join(folder, out["path"]), name, out.get("md5", "")))
    return found


# Every dvc.lock and .dvc file, wherever it lies (not DVC's own .dvc/ folder).
_PATHSPECS = (f":(glob)**/{DVC_LOCK}", ":(glob)**/*.dvc", ":(exclude,glob).dvc/**")


def versions(git: Git, revs: list[str], exclude: list[str] | None = None) -> dict[str, str]:
    """Every version of dvc.lock and of the .dvc files that a commit in the history of `revs` holds, leaving out
    the history of `exclude`: blob id → text. Each version a commit holds entered in some commit of that history,
    so the blobs its diffs add are all of them (every parent's diff of a merge; every side of a merge too)."""
    if not revs:
        return {}
    log = ["log", "--stdin", "--raw", "--no-abbrev", "--no-renames", "--root", "-m", "--full-history", "--format=%x1e"]
    asked = "".join(f"{rev}\n" for rev in revs) + "".join(f"^{rev}\n" for rev in exclude or [])
    out = git(*log, "--", *_PATHSPECS, input=asked) or ""
    blobs = {fields[3] for line in out.splitlines() if line.startswith(":") and len(fields := line.split()) > 4}
    return texts(git, sorted(blobs - {"0" * 40}))


def locks_at(git: Git, revs: list[str]) -> dict[str, str]:
    """The dvc.lock each of these commits holds (none for a commit without one): rev → text."""
    asked = "".join(f"{rev}:{DVC_LOCK}\n" for rev in revs)
    out = git.run("cat-file", "--batch-check=%(objectname) %(objecttype)", input=asked)
    blob_of = {}
    for rev, line in zip(revs, out.stdout.splitlines(), strict=False):
        blob, _, kind = line.partition(" ")
        if kind == "blob":
            blob_of[rev] = blob
    found = texts(git, sorted(set(blob_of.values())))
    return {rev: found[blob] for rev, blob in blob_of.items() if blob in found}


def texts(git: Git, blobs: list[str]) -> dict[str, str]:
    """Blob id → text, read by one `git cat-file --batch` (each blob by itself, should that output not parse)."""
    if not blobs:
        return {}
    out = git.run("cat-file", "--batch", input="".join(f"{b}\n" for b in blobs)).stdout
    found: dict[str, str] = {}
    data = out.encode("utf-8", errors="surrogateescape")
    at = 0
    for blob in blobs:
        end = data.find(b"\n", at)
        header = data[at:end].decode(errors="replace").split() if end >= 0 else []
        if len(header) != 3 or header[0] != blob or not header[2].isdigit():
            break  # the rest is read blob by blob below
        size = int(header[2])
        content = data[end + 1 : end + 1 + size]
        if data[end + 1 + size : end + 2 + size] != b"\n":
            break
        found[blob] = content.decode("utf-8", errors="replace")
        at = end + 2 + size
    for blob in (b for b in blobs if b not in found):
        if (text := git("cat-file", "blob", blob)) is not None:
            found[blob] = text
    return found


@functools.lru_cache(maxsize=4096)
def _load(text: str | None) -> Any:
    """YAML as DVC wrote it, read by libyaml when PyYAML has it (gc reads hundreds of locks: 1 ms each, not 8), and
    each text once (callers never change what it returns)."""
    import yaml

    try:
        return yaml.load(text or "", Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe
    except yaml.YAMLError:
        return None


def named(text: str | None) -> set[str]:
    """Every content hash a dvc.lock or .dvc file names: outputs, dependencies, a directory's listed files. More
    than any one use needs, on purpose: what decides which data to keep errs on the side of keeping."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "md5" and isinstance(inner, str) and _MD5.fullmatch(inner):
                    found.add(inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(_load(text))
    return found


@dataclass(frozen=True)
class CacheEntry:
    """A run-cache entry: DVC's record of one execution of a stage, which `dvc repro` restores outputs from."""

    key: str  # the sha256 of the stage's command, deps, params and output paths: runs/<key[:2]>/<key>/
    value: str  # the sha256 of the entry itself: its file's name
    outs: tuple[str, ...]  # the hashes of its outputs in DVC 3's layout (`hash: md5`)


def _sha256(value: Any) -> str:
    """DVC's dict_sha256: the hash of the value as sorted JSON, sizes left out."""

    def without(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: without(inner) for k, inner in v.items() if k not in _UNHASHED}
        return [without(inner) for inner in v] if isinstance(v, list) else v

    return hashlib.sha256(json.dumps(without(value), sort_keys=True).encode()).hexdigest()


def _outs(stage: Any) -> tuple[str, ...]:
    """The hashes of a lock stage's outputs that DVC 3 keeps in files/md5/ (DVC 2's, without `hash: md5`, live
    elsewhere)."""
    outs = stage.get("outs") if isinstance(stage, dict) else None
    return tuple(
        o["md5"]
        for o in outs or []
        if isinstance(o, dict) and o.get("hash") == "md5" and _MD5.fullmatch(str(o.get("md5", "")))
    )


def run_cache_entries(text: str | None) -> list[CacheEntry]:
    """The run-cache entry DVC writes for each stage a dvc.lock records (the entry is the stage's lock; its name
    is the lock's hash, so an entry of this name holds exactly these outputs). A stage whose entry cannot be
    named here (a value JSON cannot hold) is left out: its entry is read from the store instead."""
    loaded = _load(text)
    stages = (loaded.get("stages") if isinstance(loaded, dict) else None) or {}
    found = []
    for stage in stages.values():
        if not isinstance(stage, dict) or not stage.get("outs"):
            continue
        key_of = {**stage, "outs": [o.get("path") for o in stage["outs"] if isinstance(o, dict)]}
        try:
            found.append(CacheEntry(_sha256(key_of), _sha256(stage), _outs(stage)))
        except (TypeError, ValueError):
            continue
    return found


def entry_outs(text: str | None) -> tuple[str, ...] | None:
    """The hashes of a run-cache entry's outputs (as `_outs`); None when the text is no entry."""
    loaded = _load(text)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("outs"), list):
        return None
    return _outs(loaded)


def run_records(root: Path | None = None) -> list[dict[str, Any]]:
    """The MLflow run records (runs/<stage>.json) the stages dvc.yaml names write, as they are here: present also
    when DVC restored the stages, so they name the MLflow runs that made these results. Not whatever else lies in
    runs/; none when dvc.yaml cannot be read."""
    root = root or environment.ROOT
    try:
        paths = sorted({o.path for o in declared(stages(root)) if o.is_run_record})
    except environment.SettingsError:
        return []
    records = (read_record(root / path) for path in paths)
    return [r for r in records if r and {"stage", "run_id", "experiment_id", "tracking_uri"} <= r.keys()]


def not_up_to_date(defined: Mapping[str, dict[str, Any]], root: Path | None = None) -> dict[str, str]:
    """Stages that dvc.lock does not record, or whose outputs are missing or not the recorded size: stage → why.

    This is what DVC 3.67 gets wrong under `dvc repro --pull`: it says "up to date" and skips a new stage whose
    outputs are all `cache: false`, leaving no lock entry and no output.
    """
    root = root or environment.ROOT
    path = root / DVC_LOCK
    locked = ((environment.read_yaml(path) if path.is_file() else None) or {}).get("stages") or {}
    by_stage: dict[str, list[Output]] = {}
    for out in declared(defined):
        by_stage.setdefault(out.stage, []).append(out)
    found = {}
    for name, stage in defined.items():
        if stage.get("frozen"):
            continue
        if "do" in stage:
            if not any(key.startswith(f"{name}@") for key in locked):
                found[name] = f"{DVC_LOCK} records none of its instances"
            continue
        if name not in locked:
            found[name] = f"{DVC_LOCK} has no entry for it: it never ran"
            continue
        sizes = {os.path.normpath(o.get("path", "")): o.get("size") for o in locked[name].get("outs") or []}
        for out in by_stage.get(name, []):
            if "${" in out.path:
                continue
            file = root / out.path
            if not file.exists():
                found[name] = f"its output {out.path} is missing"
                break
            size = sizes.get(os.path.relpath(out.path, stage.get("wdir", ".")), sizes.get(out.path))
            if file.is_file() and isinstance(size, int) and file.stat().st_size != size:
                found[name] = f"its output {out.path} is not what {DVC_LOCK} records"
                break
    return found
