"""Helpers of `invoke gc`'s tests: a history of runs made by hand the way share and the failure step make them, each
with real objects and run-cache entries in the DVC remote's bucket (and, when asked, a real MLflow run), and the
record of every key each run's data has there, so that a test knows exactly what gc must keep and what it may delete.

A run's dvc.lock names three stages (data, train, evaluate) like the tests' pipeline: `data` is the same in every run
(its object and its run-cache entry are shared, as a restored stage's are), the others make bytes of the run's own.
A run-cache entry is written where DVC writes it: under the hash of the stage's lock (lock.run_cache_entries, which
test_gc.py checks against the entries DVC itself pushes). Distinct times come from GIT_COMMITTER_DATE.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from gitrepos import git

from src.runloop import dvc_store, lock, record

DAY = 86400
DATA = b"x,y,label\n0.1,0.2,1\n0.3,0.1,0\n"  # what every run's `data` stage makes
SHARED_PLOT = b"fpr,tpr\n0,0\n1,1\n"  # a file of every plots/ directory: it stays while one directory naming it stays


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's content hash


def at(when: float) -> dict[str, str]:
    """The environment that dates git's commits and tags at `when` (seconds since the epoch)."""
    stamp = f"@{int(when)} +0000"
    return {**os.environ, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_DATE": stamp}


def days_ago(days: float) -> float:
    return time.time() - days * DAY


@dataclass
class History:
    """Runs made by hand in `dev` (a clone of `origin`), their data in `bucket` of the moto server `s3`, or in a
    folder remote."""

    dev: Path
    s3: object | None  # conftest's S3 view
    bucket: str | None
    prefix: str  # the run tags' prefix (tasks.TAG_PREFIX)
    mlflow: object | None = None  # an MlflowClient: each run with results gets an MLflow run, tagged run_tag
    experiment: str | None = None
    keys: dict[str, set[str]] = field(default_factory=dict)  # run tag → the keys its results name in the bucket
    written: dict[str, bytes] = field(default_factory=dict)  # key → the bytes written there
    mlflow_runs: dict[str, str] = field(default_factory=dict)  # run tag → its MLflow run
    count: int = 0
    folder: Path | None = None  # a folder remote instead of the bucket

    # -- objects -----------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> str:
        if self.folder:
            (self.folder / key).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / key).write_bytes(data)
        else:
            self.s3.server.client().put_object(Bucket=self.bucket, Key=key, Body=data)
        self.written[key] = data
        return key

    def written_at(self, tag: str, when: float) -> None:
        """Date what `tag`'s results name in the folder remote as written at `when` (S3 dates its objects itself)."""
        for key in self.keys[tag]:
            os.utime(self.folder / key, (when, when))

    def _out(self, path: str, data: bytes, keys: set[str]) -> dict:
        keys.add(self.put(dvc_store.object_key(md5(data)), data))
        return {"path": path, "hash": "md5", "md5": md5(data), "size": len(data)}

    def _dir(self, path: str, files: dict[str, bytes], keys: set[str]) -> dict:
        listing = json.dumps([{"md5": md5(d), "relpath": n} for n, d in sorted(files.items())]).encode()
        for data in files.values():
            keys.add(self.put(dvc_store.object_key(md5(data)), data))
        name = md5(listing) + ".dir"
        keys.add(self.put(dvc_store.object_key(name), listing))
        return {"path": path, "hash": "md5", "md5": name, "size": sum(map(len, files.values())), "nfiles": len(files)}

    def lock(self, tag: str, plots: bool = False) -> tuple[str, set[str]]:
        """A dvc.lock of `tag`'s results, its objects and run-cache entries written to the bucket; and their keys."""
        keys: set[str] = set()
        data = self._out("data/points.csv", DATA, keys)
        dep = {k: data[k] for k in ("path", "hash", "md5", "size")}
        model = self._out("models/model.json", f'{{"weights": "{tag}"}}\n'.encode(), keys)
        evaluate_outs = [self._out("metrics/evaluate.json", f'{{"accuracy": 0.9, "run": "{tag}"}}\n'.encode(), keys)]
        if plots:
            files = {"roc.csv": f"fpr,tpr\n{tag}\n".encode(), "shared.csv": SHARED_PLOT}
            evaluate_outs.append(self._dir("plots", files, keys))
        stages = {
            "data": {
                "cmd": "python -m src.mini.data",
                "deps": [{"path": "src/mini/data.py", "hash": "md5", "md5": md5(b"data.py"), "size": 7}],
                "params": {"params.yaml": {"data": {"rows": 200}}},
                "outs": [data],
            },
            "train": {
                "cmd": "python -m src.mini.train",
                "deps": [dep],
                "params": {"params.yaml": {"train": {"run": tag}}},
                "outs": [model, self._out("runs/train.json", f'{{"run": "{tag}"}}\n'.encode(), keys)],
            },
            "evaluate": {
                "cmd": "python -m src.mini.evaluate",
                "deps": [{k: model[k] for k in ("path", "hash", "md5", "size")}],
                "params": {"params.yaml": {"evaluate": {"threshold": 0.5}}},
                "outs": evaluate_outs,
            },
        }
        text = yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False)
        for entry, stage in zip(lock.run_cache_entries(text), stages.values(), strict=True):
            keys.add(self.put(dvc_store.entry_key(entry.key, entry.value), yaml.safe_dump(stage).encode()))
        return text, keys

    # -- git -------------------------------------------------------------------------------------------------

    def _git(self, *args: str, when: float) -> str:
        return git(*args, cwd=self.dev, env=at(when))

    def commit(self, branch: str | None, subject: str, when: float, base: str | None = None) -> str:
        """A commit changing notes.txt on `branch` (pushed), or, with `branch` None, on `base` and on no branch."""
        self.count += 1
        self._git("fetch", "--quiet", "origin", when=when)
        where = ["-B", branch, f"origin/{branch}"] if branch else ["--detach", base or "HEAD"]
        self._git("checkout", "--quiet", *where, when=when)
        (self.dev / "notes.txt").write_text(f"{subject} ({self.count})\n")
        self._git("add", "notes.txt", when=when)
        self._git("commit", "--quiet", "-m", subject, when=when)
        if branch:
            self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", when=when)
        return self._git("rev-parse", "HEAD", when=when)

    def tag(self, label: str, commit: str, branch: str, when: float, leg: tuple[str, int, int] | None = None) -> str:
        """An annotated run tag of `commit` (for a sweep's leg: its stem, number and count), pushed alone."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
        name = f"{self.prefix}-{branch}-{stamp}-{label}"
        sweep = {"sweep": leg[0], "leg": (leg[1], leg[2]), "sets": (("train.run", label),)} if leg else {}
        message = record.annotation(record.Launch(f"Run {label}", branch, **sweep))
        self._git("tag", "--annotate", "--cleanup=verbatim", "-m", message, name, commit, when=when)
        self._git("push", "--quiet", "origin", f"refs/tags/{name}", when=when)
        return name

    def results(self, tag: str, commit: str, ref: str, when: float, plots: bool = False, names: tuple = ()) -> str:
        """The results commit of `tag` on `commit` (its dvc.lock, data written to the bucket), pushed to `ref`;
        its MLflow-Run trailers name the run's MLflow run and any of `names`."""
        text, keys = self.lock(tag, plots)
        self.keys[tag] = keys
        runs = (*([self._mlflow_run(tag)] if self.mlflow else []), *names)
        self._git("checkout", "--quiet", "--detach", commit, when=when)
        (self.dev / "dvc.lock").write_text(text)
        self._git("add", "--force", "dvc.lock", when=when)
        metrics = ("metrics/evaluate.json accuracy: 0.9",)
        outcome = record.Outcome(record.RESULTS, tag, commit, "Change", metrics=metrics, mlflow_runs=runs)
        self._git("commit", "--quiet", "--cleanup=verbatim", "-m", record.message(outcome), when=when)
        self._git("push", "--quiet", "origin", f"HEAD:{ref}", when=when)
        return self._git("rev-parse", "HEAD", when=when)

    def failed(self, tag: str, commit: str, when: float) -> str:
        """The failure record of `tag` on failed/<tag>, as the workflow's last step pushes it."""
        if self.mlflow:
            self._mlflow_run(tag)
        self._git("checkout", "--quiet", "--detach", commit, when=when)
        outcome = record.Outcome(record.FAILED, tag, commit, "Change", step="invoke repro", stage="train")
        self._git("commit", "--quiet", "--allow-empty", "--cleanup=verbatim", "-m", record.message(outcome), when=when)
        self._git("push", "--quiet", "origin", f"HEAD:refs/heads/failed/{tag}", when=when)
        return self._git("rev-parse", "HEAD", when=when)

    def run(self, branch: str, label: str, when: float, aside: bool = False, plots: bool = False, names=()) -> str:
        """A run on `branch` with results on the branch, or `aside` on results/<tag> (as when it moved on)."""
        commit = self.commit(branch, f"Change {label}", when)
        tag = self.tag(label, commit, branch, when)
        self.results(
            tag, commit, f"refs/heads/results/{tag}" if aside else f"refs/heads/{branch}", when + 60, plots, names
        )
        return tag

    def leg(self, base: str, stem: str, number: int, count: int, label: str, when: float, plots: bool = True) -> str:
        """A sweep's leg: a commit on `base` that only its tag reaches, its results on results/<tag>."""
        commit = self.commit(None, f"Leg {label}", when, base=base)
        tag = self.tag(label, commit, "main", when, leg=(stem, number, count))
        self.results(tag, commit, f"refs/heads/results/{tag}", when + 60, plots)
        return tag

    def branch(self, name: str, start: str = "origin/main") -> None:
        """A new branch on origin, at `start`."""
        self._git("fetch", "--quiet", "origin", when=time.time())
        self._git("push", "--quiet", "origin", f"{start}:refs/heads/{name}", when=time.time())

    # -- MLflow ------------------------------------------------------------------------------------------------

    def _mlflow_run(self, tag: str) -> str:
        """An MLflow run tagged run_tag=<tag> with one artifact, as a stage's run would be."""
        run = self.mlflow.create_run(self.experiment, tags={"run_tag": tag})
        self.mlflow.log_text(run.info.run_id, f"what {tag} logged\n", "notes/log.txt")
        self.mlflow.set_terminated(run.info.run_id)
        self.mlflow_runs[tag] = run.info.run_id
        return run.info.run_id


def keys_of(lock_text: str) -> set[str]:
    """The keys in a DVC remote of what a dvc.lock names: its outputs' objects and its stages' run-cache entries."""
    outs = {o["md5"] for stage in yaml.safe_load(lock_text)["stages"].values() for o in stage.get("outs", [])}
    entries = {dvc_store.entry_key(e.key, e.value) for e in lock.run_cache_entries(lock_text)}
    return {dvc_store.object_key(m) for m in outs} | entries


def going_keys(plan: dict) -> set[str]:
    """The keys `invoke gc --json` says go."""
    return {o["key"] for o in plan["objects"] if o["goes"]}
