"""Results where the team reviews: `invoke share` comments on the run's pull request, once per branch, kept up to date.

Runs are made as the runner makes them (`invoke repro` + `invoke share` against the bare origin, moto S3 and an
MLflow server); the share step sees what a CI job gives it (GITHUB_ACTIONS, the job's GITHUB_TOKEN, the API's URL);
GitHub's pull request API is a local server replaying documented responses (tests/pull_request_fixtures.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pull_request_fixtures
import pytest
import yaml
from gitrepos import clone, commit_file, git, invoke, refs, tag_run
from loop_fixtures import s3_env
from pull_request_fixtures import REPOSITORY, PullRequests
from reproduce_fixtures import ok, push_dev, set_param, tunable_param

from src.runloop.pull_request import MARKER

pull_requests = pull_request_fixtures.pull_requests

FIGURE = '''\
"""A stage that draws a figure and logs it to MLflow: the headline plot a review links to."""
import base64
from pathlib import Path

import mlflow

from src.runloop import tracking

# A 1x1 PNG: the picture does not matter, the link does.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
with tracking.stage_run("figure", "pr-review") as run:
    Path("plots").mkdir(exist_ok=True)
    Path("plots/figure.png").write_bytes(PNG)
    mlflow.log_artifact("plots/figure.png", artifact_path="plots")
'''


def add_figure(dev: Path) -> None:
    """A stage writing plots/figure.png (a plot dvc.yaml declares) and logging it to MLflow, committed and pushed."""
    (dev / "stages").mkdir(exist_ok=True)
    (dev / "stages" / "figure.py").write_text(FIGURE)
    pipeline = yaml.safe_load((dev / "dvc.yaml").read_text())
    pipeline["stages"]["figure"] = {
        "cmd": "python -m stages.figure",
        "deps": ["stages/figure.py"],
        "outs": ["runs/figure.json"],
        "plots": ["plots/figure.png"],
    }
    (dev / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    push_dev(dev, "Draw a figure")


def ci_env(base: dict[str, str], api: PullRequests, **extra: str) -> dict[str, str]:
    """What the workflow gives the share step: a CI job's variables, the job's own token, the API's URL."""
    return {
        **base,
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "99",
        "GITHUB_API_URL": api.url,
        "GITHUB_TOKEN": api.token,
        "ACCESS_TOKEN_SET": "true",
        **extra,
    }


def run_on(origin: Path, path: Path, tag: str, env: dict[str, str], share_env: dict[str, str]) -> str:
    """A runner's repro and share of `tag`; share's output. Both use the runner's cache, as on CI."""
    kept = {"RUNLOOP_CACHE": str(path.parent / f"{path.name}-cache")}
    clone(origin, path, f"refs/tags/{tag}")
    ok(invoke(path, "repro", env={**env, **kept}))
    return ok(invoke(path, "share", "--tag", tag, env={**share_env, **kept}))


def branch_with_a_commit(dev: Path, branch: str, notes: str, subject: str) -> None:
    """A new branch of `dev` with one commit of its own, pushed to origin."""
    git("switch", "--quiet", "-c", branch, cwd=dev)
    commit_file(dev, "NOTES.md", notes, subject)
    git("push", "--quiet", "-u", "origin", branch, cwd=dev)


@pytest.fixture
def project_env(s3, mlflow_server) -> dict[str, str]:
    """The runner's settings: S3, the DVC remote, and MLflow — its URL with a password no link may show."""
    host = mlflow_server.url.removeprefix("http://")
    return s3_env(s3, MLFLOW_URL=f"http://reviewer:pw-{os.getpid()}-secret@{host}")


@pytest.mark.slow
def test_share_comments_once_on_the_branchs_pull_request_then_updates_it(
    dev, origin, pull_requests, project_env, tmp_path
):
    add_figure(dev)
    base = tag_run(dev, "--message", "Baseline on main")
    run_on(origin, tmp_path / "runner-0", base, project_env, project_env)
    git("pull", "--quiet", "--ff-only", cwd=dev)
    git("switch", "--quiet", "-c", "feature/tune", cwd=dev)
    param, value = tunable_param(dev)
    set_param(dev, param, round(value * 1.5, 3))
    push_dev(dev, "Tune it")
    git("push", "--quiet", "-u", "origin", "feature/tune", cwd=dev)
    pull_requests.open(7, "feature/tune", git("rev-parse", "HEAD", cwd=dev))
    pull_requests.say(7, "Looks promising, let's see the numbers.")
    first = tag_run(dev, "--message", "First try")

    out = run_on(origin, tmp_path / "runner-1", first, project_env, ci_env(project_env, pull_requests))

    (comment,) = [c for c in pull_requests.comments[7] if c["user"]["type"] == "Bot"]
    assert f"Commented on pull request #7: {comment['html_url']}" in out
    text = comment["body"]
    results = refs(origin)["refs/heads/feature/tune"]
    assert text.startswith(MARKER.format(branch="feature/tune") + "\n")
    assert f"### Run `{first}`: results" in text
    assert (
        f"- Results commit: [`{results[:12]}`](https://github.com/{REPOSITORY}/commit/{results}) on `feature/tune`"
        in text
    )
    base_results = refs(origin)["refs/heads/main"]
    assert f"#### Compared with `{base}` ({base_results[:12]}), the newest run with results on `main`" in text
    assert f"| params.yaml | {param} |" in text.replace("  ", " ")  # DVC's Markdown table, as compare --md prints it
    # The figure: a link into the MLflow run that logged it, never a public host; no credential anywhere.
    mlflow_host = project_env["MLFLOW_URL"].rpartition("@")[2]
    assert f"- [plots/figure.png](http://{mlflow_host}/#/experiments/" in text
    assert "/artifacts/plots/figure.png)" in text
    assert "pw-" not in text and "reviewer" not in text
    posted = [r for r in pull_requests.requests if r[0] != "GET"]
    assert posted == [("POST", f"/repos/{REPOSITORY}/issues/7/comments")]

    # A second run of the branch: the same comment, updated — never a second one.
    git("pull", "--quiet", "--ff-only", cwd=dev)
    set_param(dev, param, round(value * 0.5, 3))
    push_dev(dev, "Tune it more")
    pull_requests.pulls[0]["head"]["sha"] = git("rev-parse", "HEAD", cwd=dev)  # as GitHub follows the branch
    second = tag_run(dev, "--message", "Second try")
    out = run_on(origin, tmp_path / "runner-2", second, project_env, ci_env(project_env, pull_requests))

    assert f"Updated the comment on pull request #7: {comment['html_url']}" in out
    assert [c["user"]["type"] for c in pull_requests.comments[7]] == ["User", "Bot"]
    assert f"### Run `{second}`: results" in pull_requests.comments[7][1]["body"]
    assert [r for r in pull_requests.requests if r[0] != "GET"][1:] == [
        ("PATCH", f"/repos/{REPOSITORY}/issues/comments/{comment['id']}")
    ]


@pytest.mark.slow
def test_no_pull_request_no_comment_and_an_api_down_never_fails_the_run(
    dev, origin, pull_requests, project_env, tmp_path
):
    branch_with_a_commit(dev, "feature/alone", "Alone.\n", "Work alone")
    # A fork's pull request from a branch of the same name is not this branch's.
    pull_requests.open(3, "feature/alone", git("rev-parse", "HEAD", cwd=dev), repo="someone/mlproj-fork")
    alone = tag_run(dev)

    out = run_on(origin, tmp_path / "runner-1", alone, project_env, ci_env(project_env, pull_requests))

    assert "No pull request comment: feature/alone has no open pull request." in out
    assert [r[0] for r in pull_requests.requests] == ["GET"]
    assert pull_requests.comments[3] == []

    pull_requests.down = True
    again = tag_run(dev, "--name", "down")
    summary = tmp_path / "summary.md"
    share_env = ci_env(project_env, pull_requests, GITHUB_STEP_SUMMARY=str(summary))
    out = run_on(origin, tmp_path / "runner-2", again, project_env, share_env)

    assert "No pull request comment (GitHub's API answered 503 (Service Unavailable) for /repos/" in out
    assert "the results are pushed all the same." in out
    assert "- No pull request comment (GitHub's API answered 503" in summary.read_text()


@pytest.mark.slow
def test_a_protected_branch_keeps_results_aside_and_the_review_says_how_to_take_them(
    dev, origin, pull_requests, project_env, tmp_path
):
    branch_with_a_commit(dev, "feature/guarded", "Guarded.\n", "Guarded work")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  [ "$ref" = refs/heads/feature/guarded ] && echo "refusing: feature/guarded is protected" >&2 && exit 1\n'
        "done\nexit 0\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    pull_requests.open(9, "feature/guarded", git("rev-parse", "HEAD", cwd=dev))
    tag = tag_run(dev)
    summary = tmp_path / "summary.md"

    out = run_on(
        origin,
        tmp_path / "runner",
        tag,
        project_env,
        ci_env(project_env, pull_requests, GITHUB_STEP_SUMMARY=str(summary)),
    )

    side = f"results/{tag}"
    assert f"refs/heads/{side}" in refs(origin)
    assert refs(origin)["refs/heads/feature/guarded"] == git("rev-parse", "HEAD", cwd=dev)  # untouched
    assert "origin/feature/guarded refused the push (remote: refusing: feature/guarded is protected" in out
    command = f"gh pr create --base feature/guarded --head {side} --title 'Guarded work (results of a run)'"
    (comment,) = pull_requests.comments[9]
    assert "> `feature/guarded` takes no direct push: the results are on " in comment["body"]
    assert command in comment["body"] and command in summary.read_text()
