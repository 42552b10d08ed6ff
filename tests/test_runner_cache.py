"""src/runloop/runner_cache.py: where a self-hosted runner keeps its venvs and DVC's cache, and DVC pointed there.

That a second run then restores from that cache with the DVC remote emptied, and installs nothing, is proved
under act in test_workflow.py::test_a_run_goes_to_the_runners_of_its_class.
"""

from __future__ import annotations

from pathlib import Path

from src.runloop import runner_cache

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
