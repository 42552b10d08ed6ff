"""src/runloop/runner_cache.py: where a self-hosted runner keeps its venvs and DVC's cache, and DVC pointed there.

That a second run then restores from that cache with the DVC remote emptied, and installs nothing, is proved
under act in test_workflow.py::test_a_run_goes_to_the_runners_of_its_class.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from gitrepos import clone, commit_file, git, invoke, lock_outs, refs, show, tag_run
from loop_fixtures import s3_env, share

from src.runloop import runner_cache
from src.runloop.refusal import Refused

CI = {"GITHUB_ACTIONS": "true", "RUNNER_TOOL_CACHE": "/runner/_work/_tool"}


def settings(tmp_path: Path, cache: str) -> Path:
    tmp_path.mkdir()
    (tmp_path / "invoke.yaml").write_text(f'runloop:\n  name: x\n  runner_cache: "{cache}"\n')
    return tmp_path


def test_the_runner_cache_is_the_variable_then_the_setting_then_the_tool_cache(tmp_path):
    plain, configured = settings(tmp_path / "a", ""), settings(tmp_path / "b", "$RUNNER_TOOL_CACHE/../kept")

    assert runner_cache.root(CI, plain) == Path("/runner/_work/_tool/runloop")
    assert runner_cache.root(CI, configured) == Path("/runner/_work/_tool/../kept")
    assert runner_cache.root({**CI, "RUNLOOP_CACHE": "/srv/cache"}, configured) == Path("/srv/cache")
    assert runner_cache.root({}, configured) is None  # a laptop keeps .dvc/cache, as it always did
    assert runner_cache.venvs(CI, plain) == Path("/runner/_work/_tool/runloop/venvs")
    assert runner_cache.venvs({**CI, "RUNLOOP_VENVS": "/shared/venvs"}, plain) == Path("/shared/venvs")
    assert runner_cache.venvs({"XDG_CACHE_HOME": "/home/u/.cache"}, plain) == Path("/home/u/.cache/runloop/venvs")
    assert runner_cache.dvc_cache(CI, plain) == Path("/runner/_work/_tool/runloop/dvc")


def test_dvc_uses_the_runners_cache_linked_as_cheaply_as_the_file_system_allows(project, tmp_path):
    from dvc.repo import Repo

    kept = tmp_path / "kept"
    before = (project / ".dvc" / "config").read_text()

    assert runner_cache.configure_dvc({"RUNLOOP_CACHE": str(kept)}, project) == kept / "dvc"
    assert runner_cache.configure_dvc({}, project) is None  # off CI, nothing named: nothing changes

    with Repo(str(project)) as repo:
        assert repo.cache.local.path == str(kept / "dvc" / "files" / "md5")
        assert repo.config["cache"]["type"] == ["reflink", "hardlink", "symlink", "copy"]
        assert repo.config["cache"]["shared"] == "group"
    assert (project / ".dvc" / "config").read_text() == before  # machine-specific: config.local only


def test_the_bound_is_a_size_in_invoke_yaml_or_none(tmp_path):
    def bound(text: str) -> int | None:
        (tmp_path / "invoke.yaml").write_text(f'runloop:\n  name: x\n  runner_cache_max: "{text}"\n')
        return runner_cache.max_bytes(tmp_path)

    assert bound("50G") == 50 * 2**30
    assert bound("1.5 MiB") == int(1.5 * 2**20)
    assert bound("640k") == 640 * 2**10
    assert bound("") is None  # never pruned
    with pytest.raises(Refused, match=r"runloop.runner_cache_max is 'lots', not a size — write one such as \"50G\""):
        bound("lots")


def _aged(path: Path, hours: float) -> None:
    when = time.time() - hours * 3600
    os.utime(path, (when, when))


@pytest.mark.slow
def test_share_prunes_the_runners_dvc_cache_to_its_bound_and_keeps_what_the_run_names(
    dev, origin, s3, pipeline_cache, tmp_path
):
    """What no kept run names goes, least recently written first; the run's own objects stay, however old."""
    # The bound: what the run's own data takes (the runner's cache holds the same pipeline's), and 500 KiB.
    ran_before = sum(p.stat().st_size for p in pipeline_cache.rglob("*") if p.is_file())
    bound = ran_before + 500 * 1024
    settings = (dev / "invoke.yaml").read_text().replace('"50G"', f'"{bound}"')
    commit_file(dev, "invoke.yaml", settings, "A small bound")
    git("push", "--quiet", "origin", "HEAD", cwd=dev)
    tag = tag_run(dev)
    kept = tmp_path / "runner-cache"
    shutil.copytree(pipeline_cache, kept / "dvc")  # the runner ran this pipeline before
    env = s3_env(s3, RUNLOOP_CACHE=str(kept))
    repo = clone(origin, tmp_path / "runner", f"refs/tags/{tag}")
    assert invoke(repo, "repro", env=env).returncode == 0
    files = kept / "dvc" / "files" / "md5"
    # Objects no run names (a deleted branch's, say): 3 x 400 KiB, the oldest first to go.
    junk = []
    for n, hours in enumerate((30, 20, 10)):
        path = files / f"{n:02x}" / (f"{n:02x}" * 15)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(400 * 1024))
        _aged(path, hours)
        junk.append(path)
    for path in files.rglob("*"):
        if path.is_file() and path not in junk:
            _aged(path, 40)  # older than any junk: only the run's record keeps them

    out = share(repo, "--tag", tag, env=env)

    named = {md5 for md5 in lock_outs(show(origin, refs(origin)["refs/heads/main"], "dvc.lock")).values()}
    left = {p.parent.name + p.name for p in files.rglob("*") if p.is_file()}
    assert {md5.removesuffix(".dir") for md5 in named} <= {md5.removesuffix(".dir") for md5 in left}
    # The two oldest junk objects went; the newest fits beside the run's objects.
    assert [p.exists() for p in junk] == [False, False, True]
    assert f"The runner's DVC cache {kept / 'dvc'}: 800.0 KiB freed (2 objects, 0 run-cache entries)" in out
    assert "left, within its bound of " in out
