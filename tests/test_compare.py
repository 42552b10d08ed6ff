"""`invoke compare`, and the comparison `invoke share` writes into the results commit and the job summary.

Two runs of one branch that differ in a param, each made as the runner makes it (`invoke repro` + `invoke share`
against the bare origin and moto S3); then a user's fresh clone compares them with DVC's own diffs.
"""

from __future__ import annotations

import json
import re

import pytest
from gitrepos import clone, dvc_key, git, invoke, lock_outs, refs, show, tag_run
from reproduce_fixtures import metrics_stage, ok, push_dev, runner_run, s3_env, set_param, tunable_param


def rows(text: str, first_column: str) -> dict[str, list[str]]:
    """The rows of DVC's plain tables whose first column is `first_column`, by their second column."""
    return {line.split()[1]: line.split()[2:] for line in text.splitlines() if line.startswith(first_column + " ")}


@pytest.mark.slow
def test_compare_two_runs_with_different_params(dev, origin, s3, tmp_path):
    env = s3_env(s3, GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    _, metrics = metrics_stage(dev)
    param, value = tunable_param(dev)
    changed = round(value * 1.8, 3)
    first = tag_run(dev, "--message", "Baseline")
    runner_run(origin, tmp_path / "runner-1", first, env)
    before = refs(origin)["refs/heads/main"]
    git("pull", "--quiet", "--ff-only", cwd=dev)
    set_param(dev, param, changed)
    push_dev(dev, f"Try {param} = {changed}")
    second = tag_run(dev, "--message", "Another value")

    runner_run(origin, tmp_path / "runner-2", second, env)

    after = refs(origin)["refs/heads/main"]
    old = json.loads((tmp_path / "runner-1" / metrics).read_text())
    new = json.loads((tmp_path / "runner-2" / metrics).read_text())
    assert old != new
    # share put the comparison with the branch's previous run into the results commit and the job summary.
    body = git("log", "-1", "--format=%B", after, cwd=origin)
    assert f"\nCompared with {first} ({before[:12]}):\n" in body
    assert re.search(rf"^    params\.yaml +{re.escape(param)} +{value} +{changed}$", body, re.MULTILINE)
    summary = (tmp_path / "summary.md").read_text()
    assert f"Compared with {first} ({before[:12]}):" in summary and "### Environment\n\n```text\npython: " in summary
    user = clone(origin, tmp_path / "user")

    out = ok(invoke(user, "compare", env=env))  # the branch's newest run, and the one before it

    assert out.startswith(f"{before[:12]} = {first}\n{after[:12]} = {second}\n")
    assert rows(out, "params.yaml") == {param: [str(value), str(changed)]}
    shown = rows(out, metrics)
    for key, recorded in old.items():
        if isinstance(recorded, float):
            was, now, delta = (float(v) for v in shown[key])
            assert (was, now) == (pytest.approx(recorded, abs=1e-5), pytest.approx(new[key], abs=1e-5))
            assert delta == pytest.approx(new[key] - recorded, abs=1e-4)
    assert any(float(v[2]) != 0 for k, v in shown.items() if k in old)
    assert "is missing for" not in out

    md = ok(invoke(user, "compare", "-a", second, "-b", first, "--md", "--plots", str(tmp_path / "plots"), env=env))

    assert re.search(rf"^\| params\.yaml +\| {re.escape(param)} +\| {value} +\| {changed} +\|$", md, re.MULTILINE)
    assert re.search(rf"^\| {re.escape(metrics)} +\| ", md, re.MULTILINE)
    assert (tmp_path / "plots" / "index.html").read_text().count("<") > 10
    assert f"Plots of both runs: {tmp_path / 'plots' / 'index.html'}" in md


@pytest.mark.slow
def test_compare_says_which_metric_file_is_missing(dev, origin, s3, tmp_path):
    env = s3_env(s3)
    _, metrics = metrics_stage(dev)
    param, value = tunable_param(dev)
    first = tag_run(dev)
    runner_run(origin, tmp_path / "runner-1", first, env)
    before = refs(origin)["refs/heads/main"]
    git("pull", "--quiet", "--ff-only", cwd=dev)
    set_param(dev, param, round(value * 1.8, 3))
    push_dev(dev, "Another value")
    second = tag_run(dev)
    runner_run(origin, tmp_path / "runner-2", second, env)
    # The first run's metric file is lost from the remote (and a fresh clone has no cache).
    s3.server.client().delete_object(
        Bucket=s3.dvc_bucket, Key=dvc_key(lock_outs(show(origin, before, "dvc.lock"))[metrics])
    )

    out = ok(invoke(clone(origin, tmp_path / "user"), "compare", env=env))

    assert f"{metrics} is missing for {before[:12]}: neither the local DVC cache nor the remote has it" in out
    assert "Traceback" not in out


def test_compare_refuses_a_run_without_results(dev, origin, tmp_path):
    tag = tag_run(dev)
    user = clone(origin, tmp_path / "user")

    result = invoke(user, "compare", "-a", tag, "-b", tag)

    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"Run {tag} has no results (waiting for results) — `invoke watch --run {tag}` follows it; or name another run."
    )
    assert "Traceback" not in result.stdout
    nothing = invoke(user, "compare")
    assert nothing.returncode == 1
    assert "No run of branch 'main' has results yet" in nothing.stdout


@pytest.mark.slow
def test_compare_a_branchs_first_run_with_its_origin_and_the_working_copy_with_a_run(dev, origin, s3, tmp_path):
    env = s3_env(s3)
    param, value = tunable_param(dev)
    base = tag_run(dev, "--message", "Baseline")
    runner_run(origin, tmp_path / "runner-1", base, env)
    on_main = refs(origin)["refs/heads/main"]
    git("pull", "--quiet", "--ff-only", cwd=dev)
    git("switch", "--quiet", "-c", "feature/try", cwd=dev)
    set_param(dev, param, round(value * 1.5, 3))
    push_dev(dev, "Try a value")
    git("push", "--quiet", "-u", "origin", "feature/try", cwd=dev)
    first = tag_run(dev)
    runner_run(origin, tmp_path / "runner-2", first, env)
    on_feature = refs(origin)["refs/heads/feature/try"]
    user = clone(origin, tmp_path / "user")
    git("switch", "--quiet", "feature/try", cwd=user)

    # The branch's only run, held against the newest run of the branch it was forked from.
    out = ok(invoke(user, "compare", env=env))

    assert out.startswith(f"{on_main[:12]} = {base}\n{on_feature[:12]} = {first}\n")
    assert rows(out, "params.yaml") == {param: [str(value), str(round(value * 1.5, 3))]}

    # A local change, reproduced here, held against the branch's run before it is tagged.
    set_param(user, param, round(value * 0.5, 3))
    ok(invoke(user, "repro", env=env))
    out = ok(invoke(user, "compare", "--workspace", env=env))

    assert out.startswith(f"{on_feature[:12]} = {first}\nworkspace = this working copy (its last `invoke repro`)\n")
    assert rows(out, "params.yaml") == {param: [str(round(value * 1.5, 3)), str(round(value * 0.5, 3))]}
