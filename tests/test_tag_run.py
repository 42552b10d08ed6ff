"""`invoke tag-run`: an annotated run tag for HEAD, and only that tag pushed; refusals that say what to do."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gitrepos import commit_file, git, invoke, local_tags, refs, tag_run

import tasks
from src.runloop import ci

TAG = re.compile(rf"^{re.escape(tasks.TAG_PREFIX)}-main-(\d{{8}}-\d{{6}})(-nightly)?$")


def nepal(**extra: str) -> dict[str, str]:
    """This test's environment with a local time zone 5:45 ahead of UTC (POSIX syntax: needs no tz database)."""
    return {**os.environ, "TZ": "NPT-05:45", **extra}


def refuses(dev: Path, origin: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run tag-run, expecting a refusal that creates nothing; return its message."""
    tags, remote = local_tags(dev), refs(origin)
    result = invoke(dev, "tag-run", *args, env=env)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    assert (local_tags(dev), refs(origin)) == (tags, remote)
    return result.stdout


def test_tag_run_pushes_only_an_annotated_tag(dev, origin):
    # Unpushed work on another branch must stay local.
    git("switch", "--quiet", "-c", "wip", cwd=dev)
    commit_file(dev, "wip.txt", "draft\n", "Work in progress")
    git("switch", "--quiet", "main", cwd=dev)
    head = git("rev-parse", "HEAD", cwd=dev)
    before = refs(origin)
    start = datetime.now(UTC).replace(microsecond=0)

    # Local time 5:45 ahead of UTC, so a stamp in local time falls outside [start, end].
    result = invoke(dev, "tag-run", "--name", "nightly", "--message", "Try a deeper forest", env=nepal())

    end = datetime.now(UTC)
    assert result.returncode == 0, result.stdout
    tag = re.search(r" as (\S+) and pushed", result.stdout).group(1)
    stamp = TAG.fullmatch(tag)
    assert stamp and stamp.group(2), tag
    made = datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert start <= made <= end  # the moment of the run, in UTC
    assert tag.startswith(tasks.TAG_PREFIX)
    # Only the tag reached origin, pointing at HEAD.
    after = refs(origin)
    assert {k: v for k, v in after.items() if k != f"refs/tags/{tag}"} == before
    assert git("rev-parse", f"refs/tags/{tag}^{{commit}}", cwd=origin) == head
    assert git("cat-file", "-t", f"refs/tags/{tag}", cwd=origin) == "tag"
    body = git("cat-file", "-p", f"refs/tags/{tag}", cwd=origin).partition("\n\n")[2]
    assert body == "Try a deeper forest\n\nBranch: main\nRunner-Class: cpu\nRun-Record: 2"  # the default class
    # It says what it tagged and where to watch.
    assert head in result.stdout and tag in result.stdout
    assert "github_actions_pipeline.yml" in result.stdout


def test_tag_run_names_the_branch(dev, origin):
    git("switch", "--quiet", "-c", "feature/New_Idea", cwd=dev)
    git("push", "--quiet", "origin", "feature/New_Idea", cwd=dev)

    tag = tag_run(dev)

    assert re.fullmatch(rf"{re.escape(tasks.TAG_PREFIX)}-feature-new-idea-\d{{8}}-\d{{6}}", tag)
    body = git("cat-file", "-p", f"refs/tags/{tag}", cwd=origin).partition("\n\n")[2]
    assert body == f"Run {tag}\n\nBranch: feature/New_Idea\nRunner-Class: cpu\nRun-Record: 2"


def test_tag_run_dry_run_changes_nothing(dev, origin):
    head = git("rev-parse", "HEAD", cwd=dev)
    before = refs(origin)

    result = invoke(dev, "tag-run", "--dry-run", "--name", "nightly")

    assert result.returncode == 0, result.stdout
    assert re.search(
        rf"Would tag {head} \(main\) as {re.escape(tasks.TAG_PREFIX)}-main-\d{{8}}-\d{{6}}-nightly ", result.stdout
    )
    assert (local_tags(dev), refs(origin)) == ([], before)


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_tag_run_refuses_a_dirty_tree(dev, origin, change):
    if change == "modified":
        (dev / "params.yaml").write_text((dev / "params.yaml").read_text() + "# tweak\n")
    else:
        (dev / "notes.txt").write_text("scratch\n")

    message = refuses(dev, origin)

    assert "uncommitted or untracked changes" in message
    assert "commit (and push) or stash them" in message


def test_tag_run_refuses_a_detached_head(dev, origin):
    git("checkout", "--quiet", "--detach", "HEAD", cwd=dev)

    assert "HEAD is detached — check out the branch" in refuses(dev, origin)


def test_tag_run_refuses_an_unpushed_commit(dev, origin):
    head = commit_file(dev, "notes.txt", "later\n", "Add notes")

    message = refuses(dev, origin)

    assert f"HEAD {head[:12]} is not on origin/main yet" in message
    assert "git push origin main" in message


def test_tag_run_refuses_a_branch_not_on_the_remote(dev, origin):
    git("switch", "--quiet", "-c", "feature", cwd=dev)

    message = refuses(dev, origin)

    assert "Branch 'feature' is not on origin" in message
    assert "git push -u origin feature" in message


def test_tag_run_refuses_an_unknown_remote(dev, origin):
    assert "There is no git remote 'upstream'" in refuses(dev, origin, "--remote", "upstream")


# Python started with this on its path reads the clock as 2026-01-02 03:04:05 UTC: tag-run's name is known ahead.
FROZEN_CLOCK = """\
import datetime as _datetime


class _Frozen(_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        instant = _datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_datetime.UTC)
        return instant.astimezone(tz) if tz else instant.astimezone().replace(tzinfo=None)


_datetime.datetime = _Frozen
"""


@pytest.mark.parametrize("where", ["local", "origin"])
def test_tag_run_refuses_a_tag_that_exists(dev, origin, tmp_path, where):
    clock = tmp_path / "clock"
    clock.mkdir()
    (clock / "sitecustomize.py").write_text(FROZEN_CLOCK)
    env = nepal(PYTHONPATH=str(clock))
    name = f"{tasks.TAG_PREFIX}-main-20260102-030405-nightly"
    git("tag", name, cwd=dev if where == "local" else origin)

    message = refuses(dev, origin, "--name", "nightly", env=env)

    assert f"Tag {name!r} already exists — wait a second or pass another --name." in message

    # The frozen clock is what tag-run reads: with another label it tags and pushes.
    result = invoke(dev, "tag-run", "--name", "other", env=env)
    assert result.returncode == 0, result.stdout
    assert f"as {tasks.TAG_PREFIX}-main-20260102-030405-other and pushed it to origin" in result.stdout


@pytest.mark.parametrize(
    "name", ["a b", "$(touch x)", "..", "-x", "x;rm", "`id`", "a/b", "x" * 51, "a|b", "'q'", '"q"', "ünï", "${IFS}x"]
)
def test_tag_run_refuses_an_unsafe_label(dev, origin, tmp_path, name):
    message = refuses(dev, origin, f"--name={name}")

    assert f"--name {name!r} is not a safe label" in message
    assert "use up to 50 letters, digits" in message
    assert not list(tmp_path.rglob("x")) and not (dev / "x").exists()


@pytest.mark.parametrize("name", ["a..b", "x.lock"])
def test_tag_run_refuses_a_label_git_rejects(dev, origin, name):
    # These pass the label rule, but no git ref may contain ".." or end in ".lock".
    message = refuses(dev, origin, "--name", name)

    assert "is not a valid git tag name — choose another --name" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/example-org/ml.proj.git",
        "https://github.com/example-org/ml.proj",
        "https://x-access-token:secret@github.com/example-org/ml.proj.git",
        "git@github.com:example-org/ml.proj.git",
        "ssh://git@github.com/example-org/ml.proj.git",
    ],
)
def test_actions_url_of_a_github_remote(url):
    assert ci.workflow_page(url, tasks.WORKFLOW.name) == (
        "https://github.com/example-org/ml.proj/actions/workflows/github_actions_pipeline.yml"
    )


@pytest.mark.parametrize(
    "url", [None, "/srv/git/mlproj.git", "https://gitlab.com/example-org/mlproj.git", "https://github.com/org"]
)
def test_actions_url_of_another_remote_is_none(url):
    assert ci.workflow_page(url, tasks.WORKFLOW.name) is None


def test_tag_run_explains_a_dvc_lock_left_by_a_local_repro(dev, origin):
    (dev / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    before = refs(origin)

    result = invoke(dev, "tag-run")

    assert result.returncode == 1
    assert "dvc.lock was changed by a local `invoke repro` — the runner makes its own" in result.stdout
    assert refs(origin) == before and local_tags(dev) == []


def test_tag_run_says_why_the_push_failed_and_removes_its_tag(dev, origin):
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'tags are frozen today' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = refs(origin)

    result = invoke(dev, "tag-run")

    assert result.returncode == 1
    assert "tags are frozen today" in result.stdout and "the local tag is removed" in result.stdout
    assert refs(origin) == before and local_tags(dev) == []
