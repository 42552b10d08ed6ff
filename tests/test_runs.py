"""`invoke runs`: the runs and their state, one run's chain, and which run made something.

The runs here are tagged with `invoke tag-run` on a bare origin; their results commits are made as `invoke share`
makes them (same message, same parent, pushed to the branch or to results/<tag>), without running the pipeline:
the listing reads git only. `runs --run` and `--find` on a real run's model file and MLflow run id are in
test_reproduce.py, on the run the act workflow makes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gitrepos import clone, commit_of, git, invoke, tag_run
from loop_fixtures import (
    MLFLOW_RUN,
    record_by_hand,
)

from src.runloop.record import RESULTS, Launch, Outcome
from src.runloop.runs import Run, Runs


def three_runs(dev: Path, origin: Path, tmp_path: Path) -> tuple[str, str, str, str, str]:
    """A run waiting for results, one with results on main, one with results on results/<tag>."""
    # Runs are listed by their tag's time, which git keeps in seconds: each tag gets its own second.
    waiting = tag_run(dev, "--name", "waiting", "--runner", "gpu", env=tagged_at(1))
    landed = tag_run(dev, "--name", "landed", "--message", "Baseline", env=tagged_at(2))
    aside = tag_run(dev, "--name", "aside", env=tagged_at(3))
    on_main = record_by_hand(origin, tmp_path / "r1", landed, "refs/heads/main", ["metrics/eval.json acc: 0.97"])
    side = f"results/{aside}"  # where share keeps results whose branch moved on
    on_side = record_by_hand(origin, tmp_path / "r2", aside, f"refs/heads/{side}", ["metrics/eval.json acc: 0.5"])
    return waiting, landed, aside, on_main, on_side


def tagged_at(second: int) -> dict[str, str]:
    """This environment with git's committer (and so tagger) time set to `second` past a fixed minute."""
    return {**os.environ, "GIT_COMMITTER_DATE": f"2026-01-02T03:04:{second:02d}Z"}


def runs(repo: Path, *args: str, code: int = 0) -> str:
    result = invoke(repo, "runs", *args)
    assert result.returncode == code, result.stdout
    assert "Traceback" not in result.stdout
    return result.stdout


def test_runs_shows_each_state(dev, origin, tmp_path):
    waiting, landed, aside, on_main, on_side = three_runs(dev, origin, tmp_path)
    user = clone(origin, tmp_path / "user")
    git("tag", "--delete", waiting, landed, aside, cwd=user)  # runs fetches them again

    table = runs(user).splitlines()

    assert table[0].split() == ["tagged", "tag", "branch", "runner", "commit", "state", "metrics", "MLflow"]
    by_tag = {line.split()[2]: line for line in table[1:]}
    assert list(by_tag) == [aside, landed, waiting]  # newest first
    waiting_row = ["main", "gpu", commit_of(user, waiting)[:12], "waiting", "for", "results", "-", "-"]
    assert by_tag[waiting].split()[3:] == waiting_row  # the class it asked for (tag-run --runner gpu)
    assert by_tag[landed].split()[3:] == [
        "main",
        "cpu",
        commit_of(user, landed)[:12],
        "results",
        "on",
        "main",
        "acc:",
        "0.97",
        MLFLOW_RUN,
    ]
    assert f"results on results/{aside}  acc: 0.5" in by_tag[aside]

    listed = json.loads(runs(user, "--json", "--no-fetch"))

    assert [(r["tag"], r["label"], r["state"], r["results"]) for r in listed] == [
        (aside, "aside", f"results on results/{aside}", on_side),
        (landed, "landed", "results on main", on_main),
        (waiting, "waiting", "waiting for results", None),
    ]
    assert listed[1]["message"] == "Baseline" and listed[1]["mlflow_runs"] == [MLFLOW_RUN]
    assert [r["runner_class"] for r in listed] == ["cpu", "cpu", "gpu"]
    assert [r["tag"] for r in json.loads(runs(user, "--json", "--no-fetch", "--limit", "1"))] == [aside]
    assert json.loads(runs(user, "--json", "--no-fetch", "--branch", "other")) == []
    assert runs(user, "--no-fetch", "--branch", "other").strip() == "No runs yet: `invoke tag-run` launches one."


def test_runs_run_shows_the_chain_and_find_names_the_run(dev, origin, tmp_path):
    _, landed, aside, on_main, _ = three_runs(dev, origin, tmp_path)
    user = clone(origin, tmp_path / "user")

    chain = runs(user, "--run", landed, "--no-fetch")

    assert chain.startswith(f"Run {landed}: results on main\n")
    assert f"  results      {on_main} on main\n" in chain
    assert f"  MLflow run   {MLFLOW_RUN}\n" in chain
    assert "  runner       class cpu\n" in chain  # the record names no runner (record_by_hand: no CI)
    assert re.search(rf"^  models/model\.pkl +{'ab' * 16} +train +no remote configured$", chain, re.MULTILINE)
    assert "Environment of the runner:\n  not recorded" in chain  # this results commit records none
    assert runs(user, "--run", on_main[:10], "--no-fetch").startswith(f"Run {landed}: ")  # by its results commit

    found = runs(user, "--find", MLFLOW_RUN, "--no-fetch")

    assert found.splitlines() == [
        f"{aside}  results {git('rev-parse', f'origin/results/{aside}', cwd=user)[:12]} on results/{aside}: "
        f"MLflow run {MLFLOW_RUN}",
        f"{landed}  results {on_main[:12]} on main: MLflow run {MLFLOW_RUN}",
    ]
    by_hash = runs(user, "--find", "ab" * 16, "--no-fetch")
    assert f"{landed}  results {on_main[:12]} on main: models/model.pkl (train)" in by_hash


def test_runs_refuses_what_names_no_run(dev, origin, tmp_path):
    tag_run(dev)
    user = clone(origin, tmp_path / "user")
    (user / "notes.txt").write_text("no run made this\n")

    assert "'run-nope' is neither a run tag nor a commit here" in runs(user, "--run", "run-nope", code=1)
    assert "'no such thing' is no file here, no content hash" in runs(user, "--find", "no such thing", code=1)
    assert "No run's results record notes.txt (" in runs(user, "--find", "notes.txt", code=1)
    assert "is a directory — name a file in it" in runs(user, "--find", "src", code=1)


def test_runs_says_when_it_cannot_fetch_and_lists_what_the_clone_has(dev, origin, tmp_path):
    tag = tag_run(dev)
    user = clone(origin, tmp_path / "user")
    git("remote", "set-url", "origin", str(tmp_path / "gone.git"), cwd=user)

    out = runs(user)
    missing = runs(user, "--remote", "upstream")

    assert out.startswith("(Not fetched from origin: ") and "; showing what this clone has.)\n" in out
    assert tag in out
    assert missing.startswith("(Not fetched from upstream: there is no git remote 'upstream'; showing what this")


def test_runs_without_a_run_reads_git_only(dev, origin, tmp_path):
    three_runs(dev, origin, tmp_path)
    user = clone(origin, tmp_path / "user")
    script = (
        "import sys; from invoke import Context; import tasks; tasks.runs(Context(), fetch=False, json=True); "
        "print(sorted(m for m in ('mlflow', 'dvc', 'sklearn', 'pandas') if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=user, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    assert result.stderr.strip() == "[]"


def test_a_sweeps_legs_are_not_the_branchs_previous_run():
    def run(tag: str, leg: bool = False, results: str | None = "r") -> Run:
        launch = (
            Launch("", "main", "run-x-main-20260101-000000-lr", (1, 2), (("train.lr", "0.1"),))
            if leg
            else Launch("", "main")
        )
        outcome = Outcome(RESULTS, tag, "c" * 40) if results else None
        return Run(tag, "", "c" * 40, launch, outcome, results=results, where="main")

    runs = Runs(prefix="run-", known=[run("new"), run("leg-2", True), run("leg-1", True), run("base"), run("older")])

    assert [r.leg for r in runs.all] == [False, True, True, False, False]
    assert runs.previous(runs.get("new")).tag == "base"  # the legs' results stay on results/<tag>
    assert runs.previous(runs.get("leg-2")).tag == "base"  # a leg compares with its sweep's base
    others = Runs(prefix="run-", known=[run("new"), run("base", results=None), run("older")])
    assert others.previous(others.get("new")).tag == "older"
