"""Helpers for the tests of the loop itself (tag-run, repro, share, the workflow under act, the runs' records).

Plain functions and constants; the fixtures that use them (`pipeline_cache`, `remote`, `act`) are in conftest.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from gitrepos import (
    clone,
    commit_of,
    copy_cache,
    copy_project,
    dvc_key,
    git,
    invoke,
    lock_outs,
    outputs,
    run_cache_entries,
    stages,
)

from src.runloop import record, services
from src.runloop.act import ActRun

# Made up at run time, so that no file of the project holds them: a test that searches every byte a run left
# behind for them (act prints `***` for the secrets it knows, so its log alone proves nothing) finds only leaks.
SECRETS = {
    "ACCESS_TOKEN": f"tok-{uuid.uuid4().hex}",
    "MINIO_ACCESS_KEY_ID": f"minio-id-{uuid.uuid4().hex}",  # moto takes any credentials
    "MINIO_SECRET_ACCESS_KEY": f"minio-key-{uuid.uuid4().hex}",
}
RUN_ID = "4242"
CI_RUN = f"https://github.example/example-org/mlproj/actions/runs/{RUN_ID}"
ACTOR = "ci-bot"
MLFLOW_RUN = "0123456789abcdef0123456789abcdef"
# The action that makes a GitHub App's installation token, as the workflow pins it (act runs a stand-in of it:
# src/runloop/stand_ins/create-github-app-token).
APP_ACTION = "actions/create-github-app-token@1b10c78c7865c340bc4f6099eb2f838309f1e8c3"
LOCK = "schema: '2.0'\nstages:\n  train:\n    cmd: python -m train\n    outs:\n    - path: models/model.pkl\n"


# -- a runner's clone: repro and share against a bare origin and moto ------------------------------------------


def make_pipeline_cache(base: Path) -> Path:
    """Run the pipeline once in a copy of the project under `base`; its DVC cache, run cache included."""
    env = services.isolated(os.environ, base)  # session scope: set up before the per-test isolation
    repo = copy_project(base / "project", env=env)
    result = invoke(repo, "repro", env=env)
    assert result.returncode == 0, result.stdout
    return repo / ".dvc" / "cache"


def s3_env(s3, bucket: str | None = None, **extra: str) -> dict[str, str]:
    """The runner's environment: S3 credentials and endpoint, and the DVC remote in `bucket`."""
    return {**os.environ, **s3.server.env(), "DVC_REMOTE_URL": f"s3://{bucket or s3.dvc_bucket}", **extra}


def new_bucket(s3) -> str:
    name = f"dvc-{uuid.uuid4().hex[:12]}"
    s3.server.client().create_bucket(Bucket=name)
    return name


def runner(origin: Path, path: Path, tag: str, cache: Path, env: dict[str, str]) -> Path:
    """A runner's clone checked out at `tag`, after `invoke repro` (which restores from `cache`)."""
    clone(origin, path, f"refs/tags/{tag}")
    copy_cache(cache, path)
    result = invoke(path, "repro", env=env)
    assert result.returncode == 0, result.stdout
    assert "Running stage" not in result.stdout  # restored, not recomputed
    return path


def repro_at(
    origin: Path, path: Path, tag: str, cache: Path, env: dict[str, str]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A runner's clone at `tag` after `invoke repro` (stages in the cache are restored), and how repro went."""
    clone(origin, path, f"refs/tags/{tag}")
    copy_cache(cache, path)
    result = invoke(path, "repro", env=env)
    assert "Traceback" not in result.stdout
    return path, result


def share(repo: Path, *args: str, env: dict[str, str], code: int = 0) -> str:
    result = invoke(repo, "share", *args, env=env)
    assert result.returncode == code, result.stdout
    assert "Traceback" not in result.stdout
    return result.stdout


def assert_data_pushed(s3, bucket: str, repo: Path) -> None:
    """Every output named in the runner's dvc.lock, and its run cache, are in `bucket`."""
    keys = set(s3.server.keys(bucket))
    outs = lock_outs((repo / "dvc.lock").read_text())
    assert len(outs) == len(outputs(repo))
    assert {path: dvc_key(md5) for path, md5 in outs.items() if dvc_key(md5) not in keys} == {}
    entries = run_cache_entries(repo / ".dvc" / "cache")
    assert len(entries) == len(stages(repo))  # one per stage
    assert entries <= keys


def keys_of(lock_text: str) -> set[str]:
    """The keys the outputs a dvc.lock names have in a DVC remote."""
    return {dvc_key(md5) for md5 in lock_outs(lock_text).values()}


# -- stages a test adds -------------------------------------------------------------------------------------------


def add_stage(dev: Path, name: str, script: str, outs: dict[str, dict]) -> None:
    """Commit and push a stage `name` running the Python `script`, with `outs` (path → DVC options)."""
    (dev / "stages").mkdir(exist_ok=True)
    (dev / "stages" / f"{name}.py").write_text(script)
    pipeline = yaml.safe_load((dev / "dvc.yaml").read_text())
    pipeline["stages"][name] = {
        "cmd": f"python stages/{name}.py",
        "deps": [f"stages/{name}.py"],
        "outs": [{path: options} if options else path for path, options in outs.items()],
    }
    (dev / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    git("add", "-A", cwd=dev)
    git("commit", "--quiet", "-m", f"Add stage {name}", cwd=dev)
    git("push", "--quiet", "origin", "HEAD", cwd=dev)


def writes(*paths: str) -> str:
    """A stage script that writes each of `paths`."""
    return "".join(
        f"import os\nos.makedirs(os.path.dirname({p!r}), exist_ok=True)\nopen({p!r}, 'w').write('x')\n" for p in paths
    )


# -- the workflow under act -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """The DVC remote exactly as the tracked .dvc/config names it (s3://<bucket>/<prefix>)."""

    bucket: str
    prefix: str

    def keys(self, s3) -> set[str]:
        """Object keys under the remote, relative to it (`files/md5/…`, `runs/…`)."""
        return {k.removeprefix(f"{self.prefix}/") for k in s3.server.keys(self.bucket, f"{self.prefix}/")}


def ran(result: ActRun) -> str:
    """The log of a job that succeeded and printed none of the secrets it was given."""
    assert (result.returncode, result.job_result) == (0, "success"), result.log
    assert not any(secret in result.log for secret in SECRETS.values())
    return result.log


# -- records made by hand, as share and the failure step make them ----------------------------------------------------


def record_by_hand(
    origin: Path,
    workdir: Path,
    tag: str,
    ref: str,
    metrics: list[str],
    kind: str = record.RESULTS,
    **fields,
) -> str:
    """Commit an outcome record of `tag` on its tagged commit as share (results: a dvc.lock) or the failure step
    (failed, cancelled: no change) makes it, and push it to `ref`; the commit."""
    repo = clone(origin, workdir, f"refs/tags/{tag}")
    tagged = commit_of(repo, tag)
    if kind in (record.RESULTS, record.SAME):
        (repo / "dvc.lock").write_text(LOCK + f"      md5: {'ab' * 16}\n      size: 1\n      hash: md5\n")
        git("add", "dvc.lock", cwd=repo)
        fields.setdefault("mlflow_runs", (MLFLOW_RUN,))
    outcome = record.Outcome(kind, tag, tagged, "Initial commit", metrics=tuple(metrics), **fields)
    git("commit", "--quiet", "--allow-empty", "--cleanup=verbatim", "-m", record.message(outcome), cwd=repo)
    git("push", "--quiet", "origin", f"HEAD:{ref}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def prefix_of(config: Path) -> tuple[str, str]:
    """The bucket and prefix of the default remote a .dvc/config names (s3://<bucket>/<prefix>)."""
    match = re.search(r"^\s*url = s3://([^/\s]+)/(\S+)$", config.read_text(), re.M)
    assert match, config.read_text()
    return match.group(1), match.group(2)
