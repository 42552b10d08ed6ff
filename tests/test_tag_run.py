"""`invoke tag-run`: an annotated run tag for HEAD, and only that tag pushed; refusals that say what to do."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gitrepos import commit_file, git, invoke, local_tags, refs, tag_run

import tasks
from src.runloop import run_tag

TAG = re.compile(rf"^{re.escape(tasks.TAG_PREFIX)}-main-(\d{{8}}-\d{{6}})(-nightly)?$")


def refuses(dev: Path, origin: Path, *args: str) -> str:
    """Run tag-run, expecting a refusal that creates nothing; return its message."""
    tags, remote = local_tags(dev), refs(origin)
    result = invoke(dev, "tag-run", *args)
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

    result = invoke(dev, "tag-run", "--name", "nightly", "--message", "Try a deeper forest")

    assert result.returncode == 0, result.stdout
    tag = re.search(r" as (\S+) and pushed", result.stdout).group(1)
    stamp = TAG.fullmatch(tag)
    assert stamp and stamp.group(2), tag
    made = datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - made) < timedelta(minutes=1)  # a UTC stamp, not local time
    assert tag.startswith(tasks.TAG_PREFIX)
    # Only the tag reached origin, pointing at HEAD.
    after = refs(origin)
    assert {k: v for k, v in after.items() if k != f"refs/tags/{tag}"} == before
    assert git("rev-parse", f"refs/tags/{tag}^{{commit}}", cwd=origin) == head
    assert git("cat-file", "-t", f"refs/tags/{tag}", cwd=origin) == "tag"
    body = git("cat-file", "-p", f"refs/tags/{tag}", cwd=origin).partition("\n\n")[2]
    assert body == "Try a deeper forest\n\nBranch: main"
    # It says what it tagged and where to watch.
    assert head in result.stdout and tag in result.stdout
    assert "github_actions_pipeline.yml" in result.stdout


def test_tag_run_names_the_branch(dev, origin):
    git("switch", "--quiet", "-c", "feature/New_Idea", cwd=dev)
    git("push", "--quiet", "origin", "feature/New_Idea", cwd=dev)

    tag = tag_run(dev)

    assert re.fullmatch(rf"{re.escape(tasks.TAG_PREFIX)}-feature-new-idea-\d{{8}}-\d{{6}}", tag)
    body = git("cat-file", "-p", f"refs/tags/{tag}", cwd=origin).partition("\n\n")[2]
    assert body == f"Run {tag}\n\nBranch: feature/New_Idea"


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


@pytest.mark.parametrize("where", ["local", "origin"])
def test_tag_run_refuses_a_tag_that_exists(dev, origin, where):
    # The name holds the current second, so take every name tag-run could pick in the next minutes.
    now = datetime.now(UTC)
    names = [f"{tasks.TAG_PREFIX}-main-{(now + timedelta(seconds=s)):%Y%m%d-%H%M%S}-nightly" for s in range(-2, 180)]
    repo = dev if where == "local" else origin
    head = git("rev-parse", "HEAD", cwd=dev)
    stdin = "".join(f"create refs/tags/{name} {head}\n" for name in names)
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input=stdin, text=True, check=True)

    message = refuses(dev, origin, "--name", "nightly")

    assert datetime.now(UTC) < now + timedelta(seconds=178), "too slow to test: the names ran out"
    assert re.search(rf"Tag '{re.escape(tasks.TAG_PREFIX)}-main-\d{{8}}-\d{{6}}-nightly' already exists", message)
    assert "pass another --name" in message


@pytest.mark.parametrize("name", ["a b", "$(touch x)", "..", "-x", "x;rm", "`id`", "a/b", "x" * 51])
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
    assert run_tag.actions_url(url, tasks.WORKFLOW.name) == (
        "https://github.com/example-org/ml.proj/actions/workflows/github_actions_pipeline.yml"
    )


@pytest.mark.parametrize(
    "url", [None, "/srv/git/mlproj.git", "https://gitlab.com/example-org/mlproj.git", "https://github.com/org"]
)
def test_actions_url_of_another_remote_is_none(url):
    assert run_tag.actions_url(url, tasks.WORKFLOW.name) is None


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
