"""`invoke watch` and `invoke tag-run --wait`: following runs until their results are on the remote.

Git mode reads the bare origin; API mode asks a local server that replays GitHub's documented Actions API responses
(watch_fixtures.py). Results commits are made as share makes them (loop_fixtures.record_by_hand); the real loop, with
watch following a sweep while act runs its legs, is in test_sweep.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import watch_fixtures
from gitrepos import INVOKE, commit_of, invoke, refs, tag_run
from loop_fixtures import (
    record_by_hand,
)
from watch_fixtures import ABSENT, REPOSITORY, WEB, Phase

replay = watch_fixtures.replay
METRIC = "metrics/evaluate.json accuracy: 0.93"


def api_env(url: str, **token: str) -> dict[str, str]:
    """This test's environment pointed at the replaying API, with `token` (GH_TOKEN=… or GITHUB_TOKEN=…)."""
    return {**os.environ, "GITHUB_API_URL": url, "GITHUB_REPOSITORY": REPOSITORY, **token}


def lines_of(out: str, tag: str) -> list[str]:
    """The status lines of one run, clock cut off."""
    return [line.split("] ", 1)[1] for line in out.splitlines() if re.match(rf"^\[\d+:\d\d\] {re.escape(tag)}  ", line)]


# -- git alone ----------------------------------------------------------------------------------------------------


def test_watch_returns_0_once_the_results_land(dev, origin, tmp_path):
    tag = tag_run(dev)
    watching = subprocess.Popen(
        [str(INVOKE), "watch", "--run", tag, "--interval", "0.2", "--timeout", "120"],
        cwd=dev,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = [watching.stdout.readline(), watching.stdout.readline()]  # it follows before anything lands
    assert seen[1].endswith(f"{tag}  waiting: no results commit yet\n"), seen

    results = record_by_hand(origin, tmp_path / "runner", tag, "refs/heads/main", [METRIC])

    out = "".join(seen) + watching.communicate(timeout=60)[0]
    assert watching.returncode == 0, out
    assert "through git alone (no GH_TOKEN or GITHUB_TOKEN is set" in seen[0]
    assert lines_of(out, tag) == [f"{tag}  waiting: no results commit yet", f"{tag}  results: on main"]
    assert out.endswith(f"Results of {tag}: {results[:12]} on main\n  {METRIC}\n")


def test_watch_times_out_with_what_it_knows(dev, origin):
    nothing = invoke(dev, "watch", "--timeout", "1")
    tag = tag_run(dev)

    result = invoke(dev, "watch", "--run", tag, "--timeout", "1", "--interval", "0.3")

    assert result.returncode == 2, result.stdout
    assert (
        f"Timed out after 1 s: 0 of 1 run(s) have results; {tag} waiting: no results commit yet. The runs go on — "
        "`invoke watch` follows them again." in result.stdout
    )
    assert "Traceback" not in result.stdout
    # Nothing to follow is exit 2 too, with what to do.
    assert nothing.returncode == 2 and "No run of branch 'main' here — `invoke tag-run` starts one" in nothing.stdout
    missing = invoke(dev, "watch", "--run", "run-nope")
    assert missing.returncode == 2 and "'run-nope' is neither a run tag nor a commit here" in missing.stdout
    assert invoke(dev, "watch", "--sweep", "nope").returncode == 2


def test_tag_run_wait_follows_the_tag_it_pushed(dev, origin):
    result = invoke(dev, "tag-run", "--wait", "--timeout", "1")

    assert result.returncode == 2, result.stdout
    tag = re.search(r" as (\S+) and pushed it to origin", result.stdout).group(1)
    assert f"refs/tags/{tag}" in refs(origin)  # pushed first, then followed
    assert "Following 1 run(s) until they end on origin" in result.stdout
    assert f"{tag} waiting: no results commit yet" in result.stdout


# -- GitHub's Actions API -----------------------------------------------------------------------------------------


def test_watch_shows_the_step_through_the_actions_api(dev, origin, tmp_path, replay):
    tag = tag_run(dev)
    other = tag_run(dev, "--name", "other")  # the same commit tagged again: its failed run is not this tag's
    sha = commit_of(dev, tag)
    replay.script(sha, other, Phase("completed", "failure", "Reproduce the pipeline"))

    def share() -> None:
        record_by_hand(origin, tmp_path / "runner", tag, "refs/heads/main", [METRIC])

    mine = replay.script(
        sha,
        tag,
        Phase(ABSENT),
        Phase("queued"),
        Phase("in_progress", step="Reproduce the pipeline"),
        Phase("in_progress", step="Share the results", then=share),
        Phase("completed", "success"),
    )

    result = invoke(dev, "watch", "--run", tag, "--interval", "0.2", env=api_env(replay.url, GH_TOKEN=replay.token))

    assert result.returncode == 0, result.stdout
    url = f"{WEB}/actions/runs/{mine.run_id}"
    assert f"through git and GitHub's Actions API ({REPOSITORY})" in result.stdout
    assert lines_of(result.stdout, tag)[:3] == [
        f"{tag}  waiting: GitHub shows no workflow run for it yet",
        f"{tag}  queued: queued  {url}",
        f"{tag}  running: step 'Reproduce the pipeline'  {url}",
    ]
    assert lines_of(result.stdout, tag)[-1] == f"{tag}  results: on main"
    assert f"Results of {tag}: " in result.stdout and METRIC in result.stdout
    assert replay.token not in result.stdout
    # Asked as GitHub documents it: the tagged commit's full SHA, push events, the token as a bearer token.
    listed = [r for r in replay.requests if r["path"] == f"/repos/{REPOSITORY}/actions/runs"]
    assert listed and all(r["query"]["head_sha"] == [sha] and r["query"]["event"] == ["push"] for r in listed)
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    assert {r["headers"]["authorization"] for r in replay.requests} == {f"Bearer {replay.token}"}
    assert {r["headers"]["x-github-api-version"] for r in replay.requests} == {"2022-11-28"}
    jobs = {r["path"] for r in replay.requests if r["path"].endswith("/jobs")}
    assert jobs == {f"/repos/{REPOSITORY}/actions/runs/{mine.run_id}/jobs"}


def test_watch_stops_at_the_first_failure_with_its_step_and_url(dev, origin, replay):
    going = tag_run(dev, "--name", "going")
    failing = tag_run(dev, "--name", "failing")
    sha = commit_of(dev, going)
    replay.script(sha, going, Phase("in_progress", step="Reproduce the pipeline"))
    broken = replay.script(
        sha,
        failing,
        Phase("queued"),
        Phase("in_progress", step="Set up the locked environment"),
        Phase("completed", "failure", "Reproduce the pipeline"),
    )
    env = api_env(replay.url, GITHUB_TOKEN=replay.token)

    result = invoke(dev, "watch", "--run", going, "--run", failing, "--interval", "0.2", "--timeout", "60", env=env)

    assert result.returncode == 1, result.stdout
    url = f"{WEB}/actions/runs/{broken.run_id}"
    assert result.stdout.rstrip().endswith(
        f"{failing} failed at step 'Reproduce the pipeline' (failure) of job 'Reproduce and share results': {url} — "
        "its log says why; fix it and tag a new run."
    )
    # It stopped at once: the other run was still going.
    still = f"{going}  running: step 'Reproduce the pipeline'  {WEB}/actions/runs/1"
    assert lines_of(result.stdout, going)[-1] == still
    assert replay.token not in result.stdout


def test_watch_says_when_a_run_waits_for_a_runner_of_its_class(dev, origin, replay):
    tag = tag_run(dev, "--runner", "gpu")
    sha = commit_of(dev, tag)
    gpu = ("self-hosted", "igz", "gpu")
    # The route job is done (the run is in progress); the run job waits for a gpu runner: a moment, then for long.
    scripted = replay.script(
        sha,
        tag,
        Phase("in_progress", queued_since=watch_fixtures.now(), labels=gpu),
        Phase("in_progress", queued_since="2026-11-28T10:00:00Z", labels=gpu),
    )
    env = api_env(replay.url, GH_TOKEN=replay.token)

    result = invoke(dev, "watch", "--run", tag, "--interval", "0.2", "--timeout", "2", env=env)

    assert result.returncode == 2, result.stdout
    url = f"{WEB}/actions/runs/{scripted.run_id}"
    assert lines_of(result.stdout, tag) == [
        f"{tag}  queued: job 'Reproduce and share results' waits for a runner with labels [self-hosted, igz, gpu]  "
        f"{url}",
        f"{tag}  queued: job 'Reproduce and share results' has waited since 2026-11-28 10:00:00 UTC for a runner with "
        f"labels [self-hosted, igz, gpu] — is one of that class online? (docs/runners.md)  {url}",
    ]


def test_watch_falls_back_to_git_when_the_api_refuses(dev, origin, replay):
    tag = tag_run(dev)
    wrong = f"ghp_{uuid.uuid4().hex}"

    result = invoke(dev, "watch", "--run", tag, "--interval", "0.2", "--timeout", "1", env=api_env(replay.url,
                    GH_TOKEN=wrong))  # fmt: skip

    assert result.returncode == 2, result.stdout
    assert (
        f"(GitHub's API answered 401 (Bad credentials) for /repos/{REPOSITORY}/actions/runs — following through git "
        "alone.)" in result.stdout
    )
    assert wrong not in result.stdout and "Traceback" not in result.stdout


def test_watch_follows_every_leg_of_a_sweep(dev, origin, tmp_path):
    result = invoke(dev, "tag-run", "--set", "evaluate.threshold=0.3,0.7", "--name", "th")
    legs = re.findall(r" as (\S+) and pushed it to ", result.stdout)
    for n, (leg, accuracy) in enumerate(zip(legs, (0.8, 0.9), strict=True)):
        record_by_hand(
            origin, tmp_path / f"r{n}", leg, f"refs/heads/results/{leg}", [f"metrics/e.json acc: {accuracy}"]
        )

    out = invoke(dev, "watch", "--interval", "0.2", "--timeout", "30").stdout  # the branch's newest run: a leg

    assert [lines_of(out, leg)[-1] for leg in legs] == [f"{leg}  results: on results/{leg}" for leg in legs]
    assert re.search(rf"^  \*  2/2  {re.escape(legs[1])} +0\.7 +0\.9 +results$", out, re.MULTILINE), out
    assert f"Best: leg 2/2 (evaluate.threshold=0.7), {legs[1]}." in out
