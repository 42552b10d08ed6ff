"""`invoke share`: data to the DVC remote first, then dvc.lock as "<subject>-results" on the tag's branch.

Each scenario is the real loop on loopback: a developer's clone tags a run with `invoke tag-run`, a runner's
clone checks out the tag, runs `invoke repro` and `invoke share` against a bare origin and a moto S3 bucket.
The runners start from the DVC cache of one pipeline run made for this module, so `invoke repro` restores
every stage instead of recomputing it (the end-to-end test in test_workflow.py runs the pipeline for real).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gitrepos import (
    clone,
    commit_file,
    commit_of,
    copy_cache,
    files_named,
    git,
    invoke,
    parents,
    refs,
    show,
    subject,
    tag_run,
    trailers,
)
from loop_fixtures import (
    assert_data_pushed,
    new_bucket,
    runner,
    s3_env,
    share,
)

import tasks


@pytest.mark.slow
def test_share_pushes_data_then_commits_results(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev, "--message", "Baseline")
    tagged = commit_of(origin, tag)
    summary = tmp_path / "summary.md"
    env = s3_env(s3, GITHUB_STEP_SUMMARY=str(summary))
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, env)
    before = refs(origin)

    plan = share(repo, "--tag", tag, "--dry-run", env=env)

    assert "1. dvc push --run-cache" in plan
    assert "Initial commit-results" in plan
    assert "git push origin HEAD:refs/heads/main" in plan
    assert refs(origin) == before
    assert s3.server.keys(s3.dvc_bucket) == []
    assert git("status", "--porcelain", cwd=repo) == "?? dvc.lock"
    assert git("rev-parse", "HEAD", cwd=repo) == tagged
    assert not summary.exists()

    out = share(repo, "--tag", tag, env=env)

    assert out.index("$ dvc push --run-cache") < out.index("Results committed as")
    results = refs(origin)["refs/heads/main"]
    assert refs(origin) == {**before, "refs/heads/main": results}  # main moved, nothing else
    assert f"Results committed as {results[:12]} on origin/main" in out
    assert subject(origin, results) == "Initial commit-results"
    assert parents(origin, results) == [tagged]
    run_ids = [json.loads((repo / "runs" / f"{stage}.json").read_text())["run_id"] for stage in ("evaluate", "train")]
    assert trailers(origin, results) == {
        "Run-Tag": [tag],
        "Run-Commit": [tagged],
        "Run-Outcome": ["results"],
        "MLflow-Run": run_ids,
        "Runner-Class": ["cpu"],  # what tag-run recorded: the default class
        "Run-Record": ["2"],
    }
    accuracy = json.loads((repo / "metrics" / "evaluate.json").read_text())["accuracy"]
    assert f"    metrics/evaluate.json accuracy: {accuracy}\n" in git("log", "-1", "--format=%B", results, cwd=origin)
    assert show(origin, results, "dvc.lock") == (repo / "dvc.lock").read_text().rstrip("\n")
    assert git("diff", "--name-only", tagged, results, cwd=origin) == "dvc.lock"
    assert_data_pushed(s3, s3.dvc_bucket, repo)

    text = summary.read_text()
    assert f"## Run `{tag}`" in text and tagged in text
    assert f"Results committed as {results[:12]} on origin/main" in text
    assert re.search(r"^\| Path +\| accuracy +\|", text, re.MULTILINE)
    accuracy = json.loads((repo / "metrics" / "evaluate.json").read_text())["accuracy"]
    assert re.search(rf"^\| metrics/evaluate\.json +\| {accuracy} ", text, re.MULTILINE)  # the metrics table
    assert re.search(r"^\| params\.yaml +\| evaluate\.threshold +\| 0\.5 ", text, re.MULTILINE)  # params
    for stage, run_id in zip(("evaluate", "train"), run_ids, strict=True):
        assert re.search(rf"^- MLflow \({stage}\): run {run_id} ", text, re.MULTILINE)


GUARD = """#!{python}
# origin's guard: refuse any branch whose dvc.lock names an object the DVC remote does not hold yet.
import subprocess, sys
import boto3, yaml
s3 = boto3.client("s3", endpoint_url={endpoint!r}, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
held = {{o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket={bucket!r})
        for o in page.get("Contents", [])}}
for line in sys.stdin:
    old, new, ref = line.split()
    lock = subprocess.run(["git", "show", new + ":dvc.lock"], capture_output=True, text=True)
    if lock.returncode:
        continue
    outs = [o["md5"] for st in yaml.safe_load(lock.stdout)["stages"].values() for o in st.get("outs", [])]
    missing = [m for m in outs if "files/md5/%s/%s" % (m[:2], m[2:]) not in held]
    if missing:
        sys.exit("refused: %d objects of dvc.lock are not in the DVC remote" % len(missing))
"""


@pytest.mark.slow
def test_share_pushes_no_ref_before_its_data(dev, origin, s3, pipeline_cache, tmp_path):
    """Checked where it matters, on origin: a hook refuses a results commit whose data is not on S3 yet."""
    tag = tag_run(dev)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(GUARD.format(python=sys.executable, endpoint=s3.server.endpoint_url, bucket=s3.dvc_bucket))
    hook.chmod(0o755)
    # The guard works: a results commit pushed by hand before the data is refused.
    git("add", "dvc.lock", cwd=repo)
    git("commit", "--quiet", "-m", "premature", cwd=repo)
    refused = subprocess.run(
        ["git", "push", "origin", "HEAD:refs/heads/early"], cwd=repo, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "objects of dvc.lock are not in the DVC remote" in refused.stderr
    git("reset", "--quiet", "--mixed", "HEAD~1", cwd=repo)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    assert "on origin/main" in out and parents(origin, "refs/heads/main") == [commit_of(origin, tag)]


@pytest.mark.slow
def test_share_again_pushes_data_but_makes_no_new_commit(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    first = runner(origin, tmp_path / "first", tag, pipeline_cache, s3_env(s3))
    share(first, "--tag", tag, env=s3_env(s3))
    results = refs(origin)["refs/heads/main"]

    # The same tag again (a re-run of the job), on a fresh runner and a remote that lacks the data.
    bucket = new_bucket(s3)
    env = s3_env(s3, bucket, GITHUB_REF=f"refs/tags/{tag}", GITHUB_REF_NAME=tag)
    again = runner(origin, tmp_path / "again", tag, pipeline_cache, env)
    before = refs(origin)

    out = share(again, env=env)

    assert f"Results of {tag} are already on origin as {results[:12]}: nothing to commit" in out
    assert refs(origin) == before
    assert git("rev-parse", "HEAD", cwd=again) == commit_of(origin, tag)
    assert_data_pushed(s3, bucket, again)

    # A new run of the results commit itself: dvc.lock comes out the same, a record of the run and nothing else.
    git("pull", "--quiet", "--ff-only", cwd=dev)
    retag = tag_run(dev, "--name", "again")
    assert commit_of(origin, retag) == results
    bucket = new_bucket(s3)
    env = s3_env(s3, bucket)
    same = runner(origin, tmp_path / "same", retag, pipeline_cache, env)
    assert git("status", "--porcelain", cwd=same) == ""
    before = refs(origin)

    out = share(same, "--tag", retag, env=env)

    record = refs(origin)["refs/heads/main"]
    assert f"The same results as {results[:12]} (the results of run {tag}). Results committed as {record[:12]}" in out
    assert refs(origin) == {**before, "refs/heads/main": record}
    assert parents(origin, record) == [results] and git("diff", "--name-only", results, record, cwd=origin) == ""
    assert trailers(origin, record)["Same-As"] == [results]
    assert_data_pushed(s3, bucket, same)


@pytest.mark.slow
def test_share_pushes_nothing_to_git_when_the_data_push_fails(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3, "no-such-bucket"), code=1)

    assert "NoSuchBucket" in out
    assert "Pushing the data failed" in out
    assert "nothing was committed or pushed to git" in out
    assert refs(origin) == before
    assert git("rev-parse", "HEAD", cwd=repo) == commit_of(origin, tag)
    assert s3.server.keys(s3.dvc_bucket) == []


@pytest.mark.slow
def test_share_puts_results_aside_when_the_branch_moved_on(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    # Someone pushes to main while the run is going.
    moved = commit_file(dev, "NOTES.md", "Next idea\n", "Add notes")
    git("push", "--quiet", "origin", "main", cwd=dev)
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    side = f"refs/heads/results/{tag}"
    after = refs(origin)
    assert after.pop(side)
    assert after == before  # main not touched: no force push, no rebase
    assert before["refs/heads/main"] == moved
    assert parents(origin, side) == [tagged]
    assert subject(origin, side) == "Initial commit-results"
    assert trailers(origin, side)["Run-Tag"] == [tag]
    assert f"origin/main moved on since {tag}" in out
    assert f"on branch results/{tag} instead — merge it into main" in out

    # The same tag again finds those results and leaves everything as it is.
    again = runner(origin, tmp_path / "again", tag, pipeline_cache, s3_env(s3))
    out = share(again, "--tag", tag, env=s3_env(s3))
    assert "nothing to commit" in out
    assert refs(origin) == {**before, side: refs(origin)[side]}


@pytest.mark.slow
def test_share_puts_results_aside_when_it_loses_the_race(dev, origin, s3, pipeline_cache, tmp_path):
    """main moves between share's fetch and its push: the rejected push ends on results/<tag>, no force."""
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    git("switch", "--quiet", "-c", "other", cwd=dev)
    moved = commit_file(dev, "NOTES.md", "Next idea\n", "Add notes")
    git("push", "--quiet", "origin", "other", cwd=dev)
    # Someone else's push lands just before ours: the hook moves main, then turns our update down.
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        f'  if [ "$ref" = refs/heads/main ]; then env -u GIT_QUARANTINE_PATH git update-ref refs/heads/main {moved}; '
        "echo 'main moved' >&2; exit 1; fi\n"
        "done\n"
    )
    hook.chmod(0o755)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    side = f"refs/heads/results/{tag}"
    assert refs(origin)["refs/heads/main"] == moved  # the other push stands
    assert parents(origin, side) == [tagged] and trailers(origin, side)["Run-Tag"] == [tag]
    assert f"origin/main moved on since {tag}" in out


@pytest.mark.slow
def test_share_keeps_results_aside_when_the_push_is_refused(dev, origin, s3, pipeline_cache, tmp_path):
    """A branch that refuses the push (protected, or a token without rights): results on results/<tag>, said why."""
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  if [ "$ref" = refs/heads/main ]; then echo "main is protected" >&2; exit 1; fi\ndone\n'
    )
    hook.chmod(0o755)
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    side = f"refs/heads/results/{tag}"
    after = refs(origin)
    assert parents(origin, after.pop(side)) == [tagged] and after == before  # main untouched
    assert "origin/main refused the push (" in out and "main is protected" in out
    # A refusal, not a moved tip: the way in is a pull request (the branch takes no direct push).
    assert f"on branch results/{tag} instead — open a pull request of it into main, which takes no direct push." in out


@pytest.mark.slow
def test_share_without_git_identity_commits_as_github_actor(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    home = tmp_path / "runner-home"
    home.mkdir()
    env = {k: v for k, v in s3_env(s3).items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}
    env.update(HOME=str(home), GITHUB_ACTOR="ci-bot")
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, env)
    config = (repo / ".git" / "config").read_text()

    share(repo, "--tag", tag, env=env)

    results = refs(origin)["refs/heads/main"]
    bot = "ci-bot <ci-bot@users.noreply.github.com>"
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>", results, cwd=origin) == f"{bot}|{bot}"
    assert parents(origin, results) == [commit_of(origin, tag)]
    # Named on the command line only: no global config written, the clone's config as it was.
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    assert (repo / ".git" / "config").read_text() == config


def _tag_on_feature(dev: Path, origin: Path) -> tuple[str, str]:
    """tag-run on a new branch `feature` that points at main's commit: only the annotation tells them apart."""
    git("switch", "--quiet", "-c", "feature", cwd=dev)
    git("push", "--quiet", "origin", "feature", cwd=dev)
    tag = tag_run(dev)
    return tag, commit_of(origin, tag)


@pytest.mark.slow
def test_share_follows_the_branch_named_in_the_tag(dev, origin, s3, pipeline_cache, tmp_path):
    tag, tagged = _tag_on_feature(dev, origin)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))

    out = share(repo, "--tag", tag, env=s3_env(s3))

    results = refs(origin)["refs/heads/feature"]
    assert f"Results committed as {results[:12]} on origin/feature" in out
    assert parents(origin, results) == [tagged]
    assert refs(origin)["refs/heads/main"] == tagged


@pytest.mark.slow
def test_share_follows_the_tag_branch_after_checkout_rewrote_the_tag(dev, origin, s3, pipeline_cache, tmp_path):
    tag, tagged = _tag_on_feature(dev, origin)
    repo = clone(origin, tmp_path / "runner")
    # What actions/checkout before v6.0.2 did for a tag push (actions/checkout#290): the tag ends up lightweight,
    # without the annotation that names the branch. share must fetch the tag object itself.
    git("fetch", "--quiet", "--no-tags", "origin", f"+{tagged}:refs/tags/{tag}", cwd=repo)
    git("checkout", "--quiet", "--detach", f"refs/tags/{tag}", cwd=repo)
    assert git("cat-file", "-t", f"refs/tags/{tag}", cwd=repo) == "commit"
    copy_cache(pipeline_cache, repo)
    assert invoke(repo, "repro", env=s3_env(s3)).returncode == 0

    out = share(repo, "--tag", tag, env=s3_env(s3))

    assert "on origin/feature" in out
    assert parents(origin, "refs/heads/feature") == [tagged]


@pytest.mark.slow
def test_share_keeps_results_aside_when_no_branch_is_clearly_theirs(dev, origin, s3, pipeline_cache, tmp_path):
    """Several candidate branches, none named by the tag: the results are kept, on results/<tag>, not guessed."""
    git("push", "--quiet", "origin", "main:feature", cwd=dev)
    tagged = git("rev-parse", "HEAD", cwd=dev)
    git("tag", f"{tasks.TAG_PREFIX}-x", cwd=dev)  # lightweight, made by hand: no branch recorded
    git("push", "--quiet", "origin", f"refs/tags/{tasks.TAG_PREFIX}-x", cwd=dev)
    repo = runner(origin, tmp_path / "runner", f"{tasks.TAG_PREFIX}-x", pipeline_cache, s3_env(s3))
    before = refs(origin)

    out = share(repo, "--tag", f"{tasks.TAG_PREFIX}-x", env=s3_env(s3))

    side = f"refs/heads/results/{tasks.TAG_PREFIX}-x"
    after = refs(origin)
    assert parents(origin, after.pop(side)) == [tagged] and after == before
    assert f"Several branches on origin contain {tagged[:12]} (feature, main) and the tag names none of them" in out
    assert f"on branch results/{tasks.TAG_PREFIX}-x instead — merge it to keep them there." in out
    assert_data_pushed(s3, s3.dvc_bucket, repo)

    # Told which branch, a fresh runner of another tag on the same commit puts its results there.
    git("tag", f"{tasks.TAG_PREFIX}-y", tagged, cwd=dev)
    git("push", "--quiet", "origin", f"refs/tags/{tasks.TAG_PREFIX}-y", cwd=dev)
    again = runner(origin, tmp_path / "again", f"{tasks.TAG_PREFIX}-y", pipeline_cache, s3_env(s3))
    out = share(again, "--tag", f"{tasks.TAG_PREFIX}-y", "--branch", "main", env=s3_env(s3))
    results = refs(origin)["refs/heads/main"]
    assert f"Results committed as {results[:12]} on origin/main" in out
    assert parents(origin, results) == [tagged] and refs(origin)["refs/heads/feature"] == tagged


ODD_TAGS = [tasks.TAG_PREFIX + "-x$(touch${IFS}pwned)", tasks.TAG_PREFIX + "-y;`touch${IFS}pwned`;z"]


@pytest.mark.slow
def test_share_takes_odd_tag_names_literally(dev, origin, s3, pipeline_cache, tmp_path, isolated_env):
    tagged = git("rev-parse", "HEAD", cwd=dev)
    for name in ODD_TAGS:
        git("check-ref-format", f"refs/tags/{name}", cwd=dev)  # git accepts them, so a runner can meet them
        git("tag", "-m", "odd", name, cwd=dev)
        git("push", "--quiet", "origin", f"refs/tags/{name}", cwd=dev)

    first = runner(origin, tmp_path / "first", ODD_TAGS[0], pipeline_cache, s3_env(s3))
    share(first, "--tag", ODD_TAGS[0], env=s3_env(s3))
    results = refs(origin)["refs/heads/main"]
    assert parents(origin, results) == [tagged]
    assert trailers(origin, results)["Run-Tag"] == [ODD_TAGS[0]]

    # The second one as on GitHub Actions, from GITHUB_REF; main now holds the same results.
    env = s3_env(s3, GITHUB_REF=f"refs/tags/{ODD_TAGS[1]}", GITHUB_REF_NAME=ODD_TAGS[1])
    second = runner(origin, tmp_path / "second", ODD_TAGS[1], pipeline_cache, env)
    out = share(second, env=env)
    assert f"origin/main holds these results already ({results[:12]}): the run is recorded as " in out
    assert refs(origin)["refs/heads/main"] == results
    assert trailers(origin, refs(origin)[f"refs/heads/results/{ODD_TAGS[1]}"])["Run-Tag"] == [ODD_TAGS[1]]

    assert files_named("pwned*", tmp_path, isolated_env) + list(Path.cwd().glob("pwned*")) == []


def test_share_refuses_without_a_tag(dev, origin, tmp_path):
    repo = clone(origin, tmp_path / "runner")

    out = share(repo, env=dict(os.environ), code=1)
    assert "No run tag — pass --tag NAME (on CI it comes from the pushed tag)." in out

    out = share(repo, "--tag", f"{tasks.TAG_PREFIX}-nope", env=dict(os.environ), code=1)
    assert f"Tag '{tasks.TAG_PREFIX}-nope' is not in this clone" in out
    assert "git fetch origin --tags" in out


def _unpushable(origin: Path, path: Path, tag: str) -> Path:
    """A runner at `tag` with a stand-in dvc.lock: share's branch choice comes before any data is touched."""
    repo = clone(origin, path, f"refs/tags/{tag}")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    return repo


# An endpoint nobody listens on: these refusals must come before share talks to the remote.
NO_REMOTE_NEEDED = {"MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9"}


@pytest.mark.slow
def test_share_keeps_results_aside_when_the_tags_branch_is_gone(dev, origin, s3, pipeline_cache, tmp_path):
    """The tag's branch was merged and deleted while the job ran: the results are kept, not lost or misplaced."""
    tag, tagged = _tag_on_feature(dev, origin)  # annotation: Branch: feature
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    git("push", "--quiet", "origin", "--delete", "feature", cwd=dev)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    assert f"Tag {tag} was made on branch 'feature', which no longer contains {tagged[:12]} on origin" in out
    assert parents(origin, f"refs/heads/results/{tag}") == [tagged]
    assert refs(origin)["refs/heads/main"] == tagged  # main also holds the commit, but the tag said feature
    assert_data_pushed(s3, s3.dvc_bucket, repo)


def test_share_refuses_a_branch_that_does_not_hold_the_commit(dev, origin, tmp_path):
    tag = tag_run(dev)
    repo = _unpushable(origin, tmp_path / "runner", tag)
    before = refs(origin)

    out = share(repo, "--tag", tag, "--branch", "elsewhere", env={**os.environ, **NO_REMOTE_NEEDED}, code=1)

    assert f"--branch 'elsewhere' on origin does not contain {commit_of(origin, tag)[:12]} — use one of: main." in out
    assert refs(origin) == before


def test_share_refuses_off_the_tag_and_without_a_remote(dev, origin, tmp_path):
    tag = tag_run(dev)
    repo = _unpushable(origin, tmp_path / "runner", tag)

    out = share(repo, "--tag", tag, env=dict(os.environ), code=1)
    assert "No DVC remote is configured — set MLFLOW_S3_ENDPOINT_URL" in out

    git("checkout", "--quiet", "-b", "elsewhere", cwd=repo)
    commit_file(repo, "X.md", "x\n", "Move on")
    out = share(repo, "--tag", tag, env={**os.environ, **NO_REMOTE_NEEDED}, code=1)
    assert f"HEAD is not {tag}" in out and "check out the tag and run `invoke repro` there first" in out
