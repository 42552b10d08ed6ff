"""Every run leaves exactly one terminal record on origin: results, the same results, a failure or a cancellation.

The end-to-end tests run the real workflow file with act (a bare origin, moto's S3 server, an MLflow server) and
read what reached origin; `invoke runs` and `invoke watch` then read it back with git alone, no GitHub token. The
fast tests drive the pieces the workflow's last step is made of: the step shell (step_log.py) and the failure
record (failure.py), the latter on an interpreter with no site-packages at all, as after a failed install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitrepos import ROOT, clone, commit_file, commit_of, git, invoke, parents, refs, tag_run, trailers
from loop_fixtures import SECRETS, add_stage, ran

from src.runloop import record

FAILING = """\
import os, sys
from pathlib import Path

# What a stage might print by mistake: a credential of the runner's, as is and inside a URL.
print("secret is", os.environ.get("AWS_SECRET_ACCESS_KEY"))
print(f"http://user:{os.environ.get('AWS_SECRET_ACCESS_KEY')}@db.internal/x")
if os.environ.get("FLAKY") == "1":
    raise RuntimeError("the database went away")
Path("flaky").mkdir(exist_ok=True)
Path("flaky/out.txt").write_text("ok")
"""

SLOW = """\
import time
from pathlib import Path

print("sleeping now", flush=True)
Path("slow").mkdir(exist_ok=True)
for _ in range(120):
    time.sleep(0.5)
Path("slow/out.txt").write_text("done")
"""


def runs_state(user: Path, tag: str) -> str:
    listed = invoke(user, "runs", "--json")
    assert listed.returncode == 0, listed.stdout
    import json

    (run,) = [r for r in json.loads(listed.stdout) if r["tag"] == tag]
    return run["state"]


def watch(user: Path, tag: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    return invoke(user, "watch", "--run", tag, "--timeout", "5", "--interval", "1", env=env)


def message(repo: Path, rev: str) -> str:
    return git("log", "-1", "--format=%B", rev, cwd=repo)


# -- same results: the two runs that used to leave no record ----------------------------------------------------------


@pytest.mark.slow
def test_runs_whose_results_are_already_held_get_a_record_of_their_own(dev, origin, act, mlflow_server, tmp_path):
    first = tag_run(dev, "--message", "Baseline")
    ran(act.run(clone(origin, tmp_path / "runner-1", f"refs/tags/{first}"), first))
    results = refs(origin)["refs/heads/main"]

    # 1. A second tag of the same commit: every stage restored, the same dvc.lock as main's tip.
    second = tag_run(dev, "--name", "again")
    state = refs(origin)
    log = ran(act.run(clone(origin, tmp_path / "runner-2", f"refs/tags/{second}"), second))

    assert "Running stage" not in log
    record_2 = refs(origin)[f"refs/heads/results/{second}"]
    assert refs(origin) == {**state, f"refs/heads/results/{second}": record_2}  # main is left alone
    assert parents(origin, record_2) == [commit_of(origin, second)]
    assert git("rev-parse", f"{record_2}^{{tree}}", cwd=origin) == git("rev-parse", f"{results}^{{tree}}", cwd=origin)
    found = trailers(origin, record_2)
    assert (found["Run-Tag"], found["Run-Outcome"], found["Same-As"]) == ([second], ["same-results"], [results])
    assert found["MLflow-Run"] == trailers(origin, results)["MLflow-Run"]  # the runs that made these results

    # 2. Results pulled, a README line changed, a new tag: the tagged commit's own dvc.lock is these results.
    git("pull", "--quiet", "--ff-only", cwd=dev)
    edited = commit_file(dev, "README.md", (dev / "README.md").read_text() + "\nA line.\n", "Edit the README")
    git("push", "--quiet", "origin", "main", cwd=dev)
    third = tag_run(dev)
    log = ran(act.run(clone(origin, tmp_path / "runner-3", f"refs/tags/{third}"), third))

    assert "Running stage" not in log
    record_3 = refs(origin)["refs/heads/main"]
    assert parents(origin, record_3) == [edited]
    assert git("diff", "--name-only", edited, record_3, cwd=origin) == ""  # no change but the record
    assert message(origin, record_3).startswith("Edit the README-results\n")
    assert trailers(origin, record_3)["Same-As"] == [results]
    assert f"The same results as {results[:12]}" in log

    # 3. A re-run of the same tag adds nothing: one record per tag.
    state = refs(origin)
    log = ran(act.run(clone(origin, tmp_path / "runner-4", f"refs/tags/{third}"), third))
    assert f"Results of {third} are already on origin as {record_3[:12]}" in log
    assert refs(origin) == state

    # Read from git alone: each is a run with results, which watch ends at (0) and compare and promote take.
    user = clone(origin, tmp_path / "user")
    assert runs_state(user, second) == f"same results as {results[:12]}, on results/{second}"
    assert runs_state(user, third) == f"same results as {results[:12]}, on main"
    followed = watch(user, third)
    assert followed.returncode == 0, followed.stdout
    assert f"{third}  results: the same results as {results[:12]}, on main" in followed.stdout
    compared = invoke(user, "compare", "-a", third, "-b", first, "--no-fetch")
    assert compared.returncode == 0, compared.stdout
    assert "No param changed." in compared.stdout
    env = {**os.environ, "MLFLOW_URL": mlflow_server.url}
    promoted = invoke(user, "promote", "--run", third, "--dry-run", "--no-fetch", env=env)
    assert promoted.returncode == 0, promoted.stdout
    trained = trailers(origin, results)["MLflow-Run"]
    assert f"results {record_3[:12]} on main" in promoted.stdout
    assert any(f"(MLflow run {run_id}; results {record_3[:12]} on main)" in promoted.stdout for run_id in trained)


# -- failed, then re-run --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failed_run_is_recorded_and_watch_says_so_without_a_token(dev, origin, act, tmp_path):
    add_stage(dev, "flaky", FAILING, {"flaky/out.txt": {}})
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    act.env_file["FLAKY"] = "1"

    failed = act.run(clone(origin, tmp_path / "runner-1", f"refs/tags/{tag}"), tag)

    assert (failed.returncode, failed.job_result) == (1, "failure")
    assert failed.steps["Reproduce the pipeline"] == "failure"
    assert failed.steps["Record the failure"] == "success", failed.log
    side = f"refs/heads/failed/{tag}"
    assert set(refs(origin)) - {f"refs/tags/{tag}", "refs/heads/main"} == {side}
    first = refs(origin)[side]
    assert parents(origin, first) == [tagged]
    assert git("diff", "--name-only", tagged, first, cwd=origin) == ""
    found = trailers(origin, first)
    assert (found["Run-Outcome"], found["Failed-Step"], found["Failed-Stage"]) == (
        ["failed"],
        ["invoke repro"],
        ["flaky"],
    )
    text = message(origin, first)
    assert "RuntimeError: the database went away" in text
    assert "http://db.internal/x" in text  # the URL stays, its credential is cut out
    assert not any(secret in text for secret in SECRETS.values())

    user = clone(origin, tmp_path / "user")
    assert runs_state(user, tag) == "failed at step `invoke repro` (stage flaky)"
    followed = watch(user, tag)
    assert followed.returncode == 1, followed.stdout
    assert f"{tag} failed at step `invoke repro` (stage flaky), recorded on failed/{tag}" in followed.stdout
    assert "Traceback" not in followed.stdout

    # GitHub's "Re-run jobs" after the database came back: results, and the failure stays in history.
    del act.env_file["FLAKY"]
    ran(act.run(clone(origin, tmp_path / "runner-2", f"refs/tags/{tag}"), tag))

    assert refs(origin)[side] == first
    results = refs(origin)["refs/heads/main"]
    assert parents(origin, results) == [tagged]
    assert runs_state(user, tag) == "results on main (2 attempts)"
    assert watch(user, tag).returncode == 0


# -- cancelled ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_cancelled_run_is_recorded_and_leaves_nothing_running(dev, origin, act, tmp_path):
    add_stage(dev, "slow", SLOW, {"slow/out.txt": {}})
    tag = tag_run(dev)

    result = act.run(
        clone(origin, tmp_path / "runner", f"refs/tags/{tag}"),
        tag,
        cancel_when=lambda entry: "sleeping now" in str(entry.get("msg", "")),
    )

    assert result.steps.get("Record the failure") == "success", result.log
    record_commit = refs(origin)[f"refs/heads/failed/{tag}"]
    found = trailers(origin, record_commit)
    assert (found["Run-Outcome"], found["Failed-Step"]) == (["cancelled"], ["invoke repro"])
    assert "sleeping now" in message(origin, record_commit)
    assert "refs/heads/results/" not in " ".join(refs(origin))
    # The stage went with the job: nothing of it is left running.
    deadline = time.monotonic() + 30
    while _running("stages/slow.py") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running("stages/slow.py") == []


def _running(marker: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


# -- the pieces: the step shell and the failure record ----------------------------------------------------------------


def step(script: str, temp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (temp / "script").write_text(script)
    full = {**os.environ, "RUNNER_TEMP": str(temp), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "src.runloop.step_log", str(temp / "script")],
        env=full,
        capture_output=True,
        text=True,
        cwd=temp,
    )


def test_the_step_shell_passes_output_through_keeps_a_copy_and_the_exit_code(tmp_path):
    ok = step("echo one\necho two >&2\n", tmp_path)
    failed = step("echo three\nfalse\necho never\n", tmp_path)
    piped = step("false | true\n", tmp_path)  # pipefail, as GitHub's bash runs a step

    assert (ok.returncode, ok.stdout) == (0, "one\ntwo\n")
    assert (failed.returncode, failed.stdout) == (1, "three\n")
    assert piped.returncode == 1
    from src.runloop import step_log

    steps = step_log.steps({"RUNNER_TEMP": str(tmp_path)})
    assert [(s.number, s.command, s.exit) for s in steps] == [
        (1, "echo one\necho two >&2", 0),
        (2, "echo three\nfalse\necho never", 1),
        (3, "false | true", 1),
    ]
    assert steps[1].tail(5) == ["three"]
    assert step_log.last_failure({"RUNNER_TEMP": str(tmp_path)}).number == 3


def test_the_step_shell_passes_a_cancel_on_to_the_step(tmp_path):
    marker = tmp_path / "stopped"
    script = (
        f'{sys.executable} -c "import signal, sys, time, pathlib\n'
        f"def stop(*a): pathlib.Path('{marker}').write_text('SIGINT'); sys.exit(130)\n"
        "signal.signal(signal.SIGINT, stop); print('ready', flush=True); time.sleep(60)\"\n"
    )
    (tmp_path / "script").write_text(script)
    env = {**os.environ, "RUNNER_TEMP": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.runloop.step_log", str(tmp_path / "script")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout.readline() == "ready\n"

    os.kill(proc.pid, signal.SIGINT)  # to the shell alone, as a runner cancelling the job does

    assert proc.wait(timeout=30) == 130
    assert marker.read_text() == "SIGINT"


def _runner_clone(dev: Path, origin: Path, tmp_path: Path, name: str = "runner") -> tuple[str, Path]:
    tag = tag_run(dev)
    return tag, clone(origin, tmp_path / name, f"refs/tags/{tag}")


def _record_failure(repo: Path, temp: Path, tag: str, attempt: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`python3 -m src.runloop.failure` as the workflow's last step runs it, here on an interpreter started with
    -S: no site-packages, so nothing installed is importable (no PyYAML, no invoke, no DVC)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        "RUNNER_TEMP": str(temp),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REF": f"refs/tags/{tag}",
        "GITHUB_REF_NAME": tag,
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "example-org/mlproj",
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": attempt,
        "JOB_STATUS": "failure",
        "ACCESS_TOKEN": SECRETS["ACCESS_TOKEN"],
        "AWS_SECRET_ACCESS_KEY": SECRETS["MINIO_SECRET_ACCESS_KEY"],
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-S", "-m", "src.runloop.failure"], cwd=repo, env=env, capture_output=True, text=True
    )


def test_the_failure_record_needs_nothing_installed_and_stacks_attempts(dev, origin, tmp_path):
    tag, repo = _runner_clone(dev, origin, tmp_path)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    # The install step failed, printing a secret it was given on the way.
    failed_install = f"echo Installing dependencies from Pipfile.lock\necho token {SECRETS['ACCESS_TOKEN']}\nexit 3\n"
    assert step(failed_install, temp).returncode == 3

    first = _record_failure(repo, temp, tag, "1")

    assert first.returncode == 0, first.stdout + first.stderr
    side = refs(origin)[f"refs/heads/failed/{tag}"]
    assert parents(origin, side) == [commit_of(origin, tag)]
    found = trailers(origin, side)
    assert (found["Failed-Step"], found["Run-Attempt"], found["CI-Run"]) == (
        [failed_install.splitlines()[0]],
        ["1"],
        ["https://github.example/example-org/mlproj/actions/runs/77"],
    )
    assert f"Recorded {tag} as failed at step `echo Installing dependencies from Pipfile.lock`" in first.stdout
    text = message(origin, side)
    assert "    Installing dependencies from Pipfile.lock\n    token ***\n" in text
    assert SECRETS["ACCESS_TOKEN"] not in text + first.stdout

    # The second attempt of the same tag failed too: its record goes on the first, nothing is forced.
    second = _record_failure(repo, temp, tag, "2", JOB_STATUS="cancelled")

    assert second.returncode == 0, second.stdout + second.stderr
    newer = refs(origin)[f"refs/heads/failed/{tag}"]
    assert parents(origin, newer) == [side]
    assert trailers(origin, newer)["Run-Outcome"] == ["cancelled"]
    user = clone(origin, tmp_path / "user")
    assert runs_state(user, tag).startswith(
        "cancelled at step `echo Installing dependencies from Pipfile.lock` (2 attempts)"
    )


def test_no_failure_record_for_a_run_whose_results_are_on_origin(dev, origin, tmp_path):
    tag, repo = _runner_clone(dev, origin, tmp_path)
    tagged = commit_of(origin, tag)
    outcome = record.Outcome(record.RESULTS, tag, tagged, "Initial commit")
    git("commit", "--quiet", "--allow-empty", "-m", record.message(outcome), cwd=repo)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=repo)
    state = refs(origin)
    (tmp_path / "temp").mkdir()

    done = _record_failure(repo, tmp_path / "temp", tag, "1")

    assert done.returncode == 0, done.stderr
    assert f"{tag} has its results on origin already" in done.stdout
    assert refs(origin) == state


def test_a_failure_record_that_cannot_be_pushed_is_said_in_one_line(dev, origin, tmp_path):
    tag, repo = _runner_clone(dev, origin, tmp_path)
    (origin / "hooks" / "pre-receive").write_text("#!/bin/sh\necho 'denied by policy' >&2\nexit 1\n")
    (origin / "hooks" / "pre-receive").chmod(0o755)
    (tmp_path / "temp").mkdir()

    done = _record_failure(repo, tmp_path / "temp", tag, "1")

    assert done.returncode == 1
    assert done.stdout.startswith(f"Could not record the failure of {tag} on origin: pushing to origin/failed/{tag}")
    assert "denied by policy" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1 and not done.stderr
