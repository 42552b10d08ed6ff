"""Sweeps: `invoke tag-run --set` makes a leg per combination of values, `invoke runs --sweep` compares them.

The fast tests check the legs as git and the origin see them (commits, tags, one push per tag, refusals) and the
table, on results commits made as share makes them; the slow one runs every leg with act, as the runner pool
would, against the bare origin, moto and MLflow.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from gitrepos import INVOKE, PIPELINE, clone, commit_of, git, invoke, local_tags, parents, refs, show, stages, tag_run
from gitrepos import experiment as experiment_of
from loop_fixtures import (
    ran,
    record_by_hand,
)
from sweep_fixtures import annotation, log_pushes, pushes, sweep

import tasks
from src.runloop import outcome_commit, run_tag
from src.runloop import sweep as sweeps
from src.runloop.git import Git

PARAMS = "params.yaml"


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """(old line, new line) for every line that differs; the line count must not change."""
    a, b = old.splitlines(), new.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# -- the legs -----------------------------------------------------------------------------------------------------


def test_sweep_pushes_a_commit_and_a_tag_per_leg_each_in_its_own_push(dev, origin):
    # Every leg records the runner class it asks for: the route job sends each to that class's runners.
    log = log_pushes(origin)
    base = git("rev-parse", "HEAD", cwd=dev)
    before = refs(origin)
    text = (dev / PARAMS).read_text()

    stem, tags, out = sweep(
        dev, "--set", "train.epochs=20,40,80", "--set", "evaluate.threshold=0.4", "--name", "ep", "--runner", "gpu"
    )

    assert re.fullmatch(rf"{re.escape(tasks.TAG_PREFIX)}-main-\d{{8}}-\d{{6}}-ep", stem)
    assert tags == [f"{stem}-1", f"{stem}-2", f"{stem}-3"]
    # Each tag went to origin in a push of its own, and nothing else did: main is where it was.
    assert pushes(log) == [[f"refs/tags/{tag}"] for tag in tags]
    assert refs(origin) == {**before, **{f"refs/tags/{t}": refs(origin)[f"refs/tags/{t}"] for t in tags}}
    # The checkout is as it was: same HEAD, same branch, clean.
    assert (git("rev-parse", "HEAD", cwd=dev), git("status", "--porcelain", cwd=dev)) == (base, "")
    for epochs, tag in zip((20, 40, 80), tags, strict=True):
        leg = commit_of(origin, tag)
        assert git("cat-file", "-t", f"refs/tags/{tag}", cwd=origin) == "tag"
        assert parents(origin, leg) == [base]
        assert git("diff", "--name-only", base, leg, cwd=origin).splitlines() == [PARAMS]
        # Only the swept values changed, comments and layout kept; the stages read the new values.
        new = show(origin, leg, PARAMS)
        assert changed_lines(text, new) == [
            ("  epochs: 60", f"  epochs: {epochs}"),
            ("  threshold: 0.5", "  threshold: 0.4"),
        ]
        values = yaml.safe_load(new)
        assert (values["train"]["epochs"], values["evaluate"]["threshold"]) == (epochs, 0.4)
        number = tags.index(tag) + 1
        assert annotation(origin, tag) == (
            f"Leg {number}/3 of sweep {stem}\n\nBranch: main\nRunner-Class: gpu\nSweep: {stem}\nLeg: {number}/3\n"
            f"Set: train.epochs={epochs}\nSet: evaluate.threshold=0.4\nRun-Record: 2"
        )
        assert git("log", "-1", "--format=%s", leg, cwd=origin) == (
            f"Set train.epochs={epochs}, evaluate.threshold=0.4 (leg {number}/3 of sweep ep)"
        )
    assert "Note: this clone knows no results of" in out  # the base never ran: every leg computes every stage


def test_share_keeps_a_legs_results_apart(dev, origin):
    _, (leg, *_), _ = sweep(dev, "--set", "train.epochs=20,40")
    plain = tag_run(dev)
    git = Git(dev)
    launch = run_tag.launch_of(git, leg)

    target, why = outcome_commit.pick_branch(git, "origin", leg, launch, commit_of(dev, leg), "")

    assert (target, launch.sweep) == (None, leg.rsplit("-", 1)[0])
    assert why == f"{leg} is a leg of sweep {leg.rsplit('-', 1)[0]}, whose legs keep their results apart"
    assert outcome_commit.side_branch(git, "origin", leg) == f"results/{leg}"
    # A run that is no leg still goes to its branch.
    plain_launch = run_tag.launch_of(git, plain)
    assert outcome_commit.pick_branch(git, "origin", plain, plain_launch, commit_of(dev, plain), "") == ("main", "")
    assert plain_launch.sweep is None


def test_one_set_of_one_value_is_a_single_run_with_changed_params(dev, origin):
    log = log_pushes(origin)

    stem, tags, _ = sweep(dev, "--set", "train.learning_rate=2")

    assert tags == [f"{stem}-1"] and stem.endswith("-sweep")
    assert pushes(log) == [[f"refs/tags/{tags[0]}"]]
    # A whole number for a float keeps the key a float.
    assert "  learning_rate: 2.0" in show(origin, tags[0], PARAMS)


def test_dry_run_prints_the_legs_and_changes_nothing(dev, origin):
    objects = git("count-objects", "-v", cwd=dev)
    before, tags = refs(origin), local_tags(dev)

    result = invoke(dev, "tag-run", "--set", "train.epochs=range(20, 80, 20)", "--set", "train.seed=1,2", "--dry-run")

    assert result.returncode == 0, result.stdout
    legs = re.findall(r"^  (\S+)  (train\.epochs=\d+, train\.seed=\d)$", result.stdout, flags=re.MULTILINE)
    assert [values for _, values in legs] == [f"train.epochs={e}, train.seed={s}" for e in (20, 40, 60) for s in (1, 2)]
    assert [tag.rsplit("-", 1)[1] for tag, _ in legs] == ["1", "2", "3", "4", "5", "6"]
    assert "Would make sweep" in result.stdout and "its tag pushed alone to origin" in result.stdout
    assert (refs(origin), local_tags(dev), git("count-objects", "-v", cwd=dev)) == (before, tags, objects)


def test_a_refused_push_says_which_legs_run_and_which_were_not_made(dev, origin):
    hook = origin / "hooks" / "pre-receive"
    hook.write_text('#!/bin/sh\nwhile read old new ref; do case "$ref" in *-2) exit 1;; esac; done\n')
    hook.chmod(0o755)

    result = invoke(dev, "tag-run", "--set", "train.epochs=10,20,30")

    assert result.returncode == 1, result.stdout
    first = re.search(r" as (\S+) and pushed it to origin", result.stdout).group(1)
    stem = first.removesuffix("-1")
    assert f"Pushing tag {stem}-2 to origin failed" in result.stdout
    assert f"Legs pushed (they run): {first}. Not made: train.epochs=20; train.epochs=30." in result.stdout
    # The pushed leg is on origin and here; the refused one is in neither; the third was never made.
    assert [t for t in local_tags(dev) if t.startswith(stem)] == [first]
    assert [r for r in refs(origin) if r.startswith(f"refs/tags/{stem}")] == [f"refs/tags/{first}"]


# The tests' pipeline's train section, as the refusals list it.
TRAIN_KEYS = ", ".join(yaml.safe_load((PIPELINE / "params.yaml").read_text())["train"])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["train.epoch=1,2"], f"train.epoch is not in params.yaml (train has: {TRAIN_KEYS})"),
        (["trian.epochs=1"], "trian.epochs is not in params.yaml (params.yaml's top level has: data, train, evaluate)"),
        (["train.epochs=10,0.5"], "train.epochs is 60 in params.yaml, a whole number, and 0.5 is a number"),
        (["evaluate.threshold=high"], "evaluate.threshold is 0.5 in params.yaml, a number, and high is text"),
        (["train=1"], f"train is a mapping ({TRAIN_KEYS}) — set one of its keys"),
        (["train.epochs=range(1, 100)"], "range(1, 100) for train.epochs alone gives 99 legs, more than --max-legs 32"),
        (["train.epochs=1,2,3", "train.seed=1,2"], "The sweep has 6 legs (3 × 2), more than --max-legs 4"),
        (["train.epochs"], "--set 'train.epochs' is not KEY=VALUES"),
        (["train.epochs=1,,2"], "has an empty value"),
        (["train.epochs=5,5"], "--set train.epochs lists 5 twice"),
        (["train.epochs=1", "train.epochs=2"], "--set train.epochs is given twice"),
        (  # longer than Python reads as a number: one line, not int()'s traceback
            ["train.epochs=" + "9" * 5000],
            "--set train.epochs: a number of 5000 digits is longer than the 4300 digits Python reads — give a shorter",
        ),
        (["train.epochs=range(1, 1" + "0" * 5000 + ")"], "--set train.epochs: a number of 5001 digits is longer"),
        (["train.learning_rate=1" + "0" * 400], "--set train.learning_rate: 401 digits are beyond what a float holds"),
        (
            ["evaluate.threshold=0.5,.nan"],
            "--set evaluate.threshold=.nan: .nan is not a finite number (nan) — give a finite value, or pass "
            "--allow-non-finite if evaluate.threshold is meant to be nan.",
        ),
        (["evaluate.threshold=-.inf"], "--set evaluate.threshold=-.inf: -.inf is not a finite number (-inf)"),
        (["train.learning_rate=1e999"], "--set train.learning_rate=1e999: 1e999 is not a finite number (inf)"),
    ],
)
def test_sweep_refuses_before_making_anything(dev, origin, sets, message):
    objects = git("count-objects", "-v", cwd=dev)
    before, tags = refs(origin), local_tags(dev)
    args = [arg for value in sets for arg in ("--set", value)] + (["--max-legs", "4"] if len(sets) == 2 else [])

    result = invoke(dev, "tag-run", *args)

    assert result.returncode == 1, result.stdout
    assert message in result.stdout and "Traceback" not in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1  # one line: what is wrong, what to do
    assert (refs(origin), local_tags(dev), git("count-objects", "-v", cwd=dev)) == (before, tags, objects)


def test_a_float_param_takes_nan_and_inf_with_allow_non_finite(dev, origin):
    before = refs(origin)

    result = invoke(dev, "tag-run", "--set", "evaluate.threshold=.nan,.inf", "--allow-non-finite", "--dry-run")

    assert result.returncode == 0, result.stdout
    assert re.search(r"-1  evaluate\.threshold=nan$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"-2  evaluate\.threshold=inf$", result.stdout, re.MULTILINE), result.stdout
    assert refs(origin) == before
    # What the leg's stages read: PyYAML's NaN and infinity, written as YAML writes them.
    specs = [sweeps.parse("evaluate.threshold=.nan,-.inf")]
    legs = sweeps.plan((PIPELINE / PARAMS).read_text(), specs, allow_non_finite=True)
    assert [leg.params.split("threshold: ")[1].split()[0] for leg in legs] == [".nan", "-.inf"]
    nan, minus_inf = (yaml.safe_load(leg.params)["evaluate"]["threshold"] for leg in legs)
    assert nan != nan and minus_inf == float("-inf")


def test_params_keep_every_byte_but_the_swept_values():
    text = (
        "# top comment\n"
        "a:\n"
        "    list:\n"
        "      - 1\n"
        "      - 2\n"
        "    name: 'quoted'   # a comment\n"
        "    plain: text\n"
        "    none: ~\n"
        "    flow: {depth: 6, rate: 0.1}\n"
        "b:\n"
        "  rate: 0.001          # aligned comment\n"
        "  enabled: true\n"
    )
    specs = [sweeps.parse(s) for s in ("a.name=x,yes", "a.flow.depth=8", "b.rate=1e-5", "b.enabled=false", "a.none=3")]

    legs = sweeps.plan(text, specs)

    assert [leg.label for leg in legs] == [
        "a.name=x, a.flow.depth=8, b.rate=1e-05, b.enabled=false, a.none=3",
        "a.name=yes, a.flow.depth=8, b.rate=1e-05, b.enabled=false, a.none=3",
    ]
    assert changed_lines(text, legs[1].params) == [
        ("    name: 'quoted'   # a comment", "    name: 'yes'      # a comment"),
        ("    none: ~", "    none: 3"),
        ("    flow: {depth: 6, rate: 0.1}", "    flow: {depth: 8, rate: 0.1}"),
        ("  rate: 0.001          # aligned comment", "  rate: 1.0e-05        # aligned comment"),
        ("  enabled: true", "  enabled: false"),
    ]
    # What the stages read (PyYAML, YAML 1.1): a float, and `yes` as text, not as true.
    read = yaml.safe_load(legs[1].params)
    assert (read["b"]["rate"], read["a"]["name"], read["a"]["list"]) == (1e-05, "yes", [1, 2])


# -- looking back: runs --sweep ------------------------------------------------------------------------------------


def leg_results(origin: Path, tmp_path: Path, tags: list[str], accuracies: list[float]) -> list[str]:
    """Results of each leg as share pushes them (on results/<tag>), with these test accuracies."""
    return [
        record_by_hand(
            origin,
            tmp_path / f"runner-{n}",
            tag,
            f"refs/heads/results/{tag}",
            [f"metrics/train.json train_accuracy: {1 - acc:g}", f"metrics/evaluate.json accuracy: {acc}"],
        )
        for n, (tag, acc) in enumerate(zip(tags, accuracies, strict=True))
    ]


def test_runs_sweep_ranks_the_legs_and_says_how_to_keep_the_best(dev, origin, tmp_path):
    stem, tags, _ = sweep(dev, "--set", "train.epochs=20,40,80", "--name", "ep")
    results = leg_results(origin, tmp_path, tags, [0.8, 0.95, 0.9])
    user = clone(origin, tmp_path / "user")

    out = invoke(user, "runs", "--sweep", "ep").stdout

    lines = out.splitlines()
    assert lines[0] == (
        f"Sweep {stem}: 3 of 3 legs on main, sorted by metrics/evaluate.json:accuracy (higher is better); "
        "* marks the best."
    )
    header, *rows = [line.split() for line in lines[2:6]]
    metrics = ["metrics/evaluate.json:accuracy", "metrics/train.json:train_accuracy"]
    assert header == ["leg", "tag", "train.epochs", *metrics, "state"]
    assert [row[:5] for row in rows] == [
        ["*", "2/3", tags[1], "40", "0.95"],
        ["3/3", tags[2], "80", "0.9", "0.1"],
        ["1/3", tags[0], "20", "0.8", "0.2"],
    ]
    assert [row[-1] for row in rows] == ["results"] * 3
    assert f"Best: leg 2/3 (train.epochs=40), {tags[1]}." in out
    # Lower is better for another metric; a metric no leg has is refused by name.
    ranked = invoke(user, "runs", "--sweep", stem, "--sort", "train_accuracy", "--ascending").stdout
    assert re.search(rf"^  \*  2/3  {tags[1]} ", ranked, re.MULTILINE)
    refused = invoke(user, "runs", "--sweep", stem, "--sort", "loss")
    assert refused.returncode == 1 and "--sort 'loss': no leg's results list it — name one of:" in refused.stdout
    assert "No sweep named 'nope'" in invoke(user, "runs", "--sweep", "nope").stdout

    # The commands it prints bring the best leg's params onto main (cherry-pick) or, main not having moved, its
    # results too (a fast-forward): run them as printed.
    cherry = re.search(r"^  (git switch main && .* git cherry-pick \S+)$", out, re.MULTILINE).group(1)
    merge = re.search(r"^  (git switch main && .* git merge --ff-only \S+)$", out, re.MULTILINE).group(1)
    for command, expected_head in ((cherry, None), (merge, results[1])):
        repo = clone(origin, tmp_path / f"adopt-{len(command)}")
        git("fetch", "--quiet", "origin", "+refs/tags/*:refs/tags/*", "+refs/heads/*:refs/remotes/origin/*", cwd=repo)
        subprocess.run(command, shell=True, cwd=repo, check=True, capture_output=True)  # noqa: S602 - printed by us
        head = git("rev-parse", "HEAD", cwd=repo)
        assert yaml.safe_load(show(repo, "HEAD", PARAMS))["train"]["epochs"] == 40
        if expected_head:
            assert head == expected_head  # main now holds the leg's commit and its results commit
        else:
            assert git("diff", "--name-only", "HEAD~", "HEAD", cwd=repo).splitlines() == [PARAMS]
            assert parents(repo, head) == [commit_of(repo, "origin/main")]


def test_runs_sweep_says_legs_that_tie_for_the_best_tie(dev, origin, tmp_path):
    stem, tags, _ = sweep(dev, "--set", "train.epochs=20,40,80", "--name", "ep")
    leg_results(origin, tmp_path, tags, [0.9, 0.9, 0.8])
    user = clone(origin, tmp_path / "user")

    out = invoke(user, "runs", "--sweep", "ep").stdout

    lines = out.splitlines()
    assert lines[0] == (
        f"Sweep {stem}: 3 of 3 legs on main, sorted by metrics/evaluate.json:accuracy (higher is better); legs 1/3, "
        "2/3 tie for the best (metrics/evaluate.json:accuracy 0.9): none is marked."
    )
    rows = [line.split() for line in lines[3:6]]
    assert [row[:4] for row in rows] == [
        ["1/3", tags[0], "20", "0.9"],
        ["2/3", tags[1], "40", "0.9"],
        ["3/3", tags[2], "80", "0.8"],
    ]
    assert "*" not in out and "Best:" not in out
    assert (
        "Tie: legs 1/3 (train.epochs=20); 2/3 (train.epochs=40) score the same. Rank them by another metric "
        "(--sort METRIC), or bring the params of the one you choose onto main"
    ) in out
    for number, tag in ((1, tags[0]), (2, tags[1])):
        assert re.search(rf"git cherry-pick {commit_of(user, tag)}   # leg {number}$", out, re.MULTILINE), out
    # Ranked by a metric on which no leg ties, one is the best again.
    ranked = invoke(user, "runs", "--sweep", stem, "--sort", "train_accuracy").stdout
    assert f"Best: leg 3/3 (train.epochs=80), {tags[2]}." in ranked and "Tie:" not in ranked


def test_runs_sweep_json_lists_the_legs(dev, origin, tmp_path):
    stem, tags, _ = sweep(dev, "--set", "evaluate.threshold=0.3,0.6")

    listed = json.loads(invoke(dev, "runs", "--sweep", stem, "--json").stdout)

    assert [(r["tag"], r["state"]) for r in listed] == [(t, "waiting for results") for t in tags]
    assert (listed[0]["sweep"], listed[0]["leg"], listed[0]["sets"]) == (stem, [1, 2], [["evaluate.threshold", "0.3"]])


# -- the legs, run by act as the runner pool would ----------------------------------------------------------------


def executed(log: str) -> list[str]:
    """The stages a run executed (DVC restores the others from its run cache, or finds them up to date)."""
    return re.findall(r"Running stage '(\w+)'", log)


@pytest.mark.slow
def test_sweep_legs_run_on_the_runner_and_restore_what_they_share(dev, origin, act, remote, mlflow_server, tmp_path):
    log = log_pushes(origin)
    # The base runs first: its stages land in DVC's run cache on the remote.
    base = tag_run(dev)
    first = ran(act.run(clone(origin, tmp_path / "runner-base", f"refs/tags/{base}"), base))
    assert executed(first) == stages(dev)
    main = refs(origin)["refs/heads/main"]
    git("fetch", "--quiet", "origin", cwd=dev)  # this clone learns that the base has results

    # 1. Three legs over a train param, followed by `invoke watch` while the runner works through them.
    stem, legs, out = sweep(dev, "--set", "train.epochs=20,40,80", "--name", "ep")
    assert "Note:" not in out  # the base has run: the legs restore what they share
    assert pushes(log)[-3:] == [[f"refs/tags/{leg}"] for leg in legs]
    watching = subprocess.Popen(
        [str(INVOKE), "watch", "--sweep", "ep", "--interval", "1", "--timeout", "900"],
        cwd=dev,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = mlflow_server.client()
    experiment = client.get_experiment_by_name(experiment_of(dev)).experiment_id
    accuracy = {}
    for n, (epochs, leg) in enumerate(zip((20, 40, 80), legs, strict=True)):
        log = ran(act.run(clone(origin, tmp_path / f"runner-ep-{n}", f"refs/tags/{leg}"), leg))

        assert executed(log) == ["train", "evaluate"]  # data comes back from the base's run cache
        results = refs(origin)[f"refs/heads/results/{leg}"]
        assert parents(origin, results) == [commit_of(origin, leg)]
        assert git("diff", "--name-only", commit_of(origin, leg), results, cwd=origin).splitlines() == ["dvc.lock"]
        (train,) = client.search_runs([experiment], f"tags.run_tag = '{leg}' and tags.stage = 'train'")
        assert train.data.params["epochs"] == str(epochs)
        accuracy[leg] = float(re.search(r"metrics/evaluate\.json accuracy: (\S+)", git("log", "-1", "--format=%B",
                                         results, cwd=origin)).group(1))  # fmt: skip
    assert refs(origin)["refs/heads/main"] == main  # no leg raced the branch

    followed = watching.communicate(timeout=120)[0]
    assert watching.returncode == 0, followed
    table = invoke(dev, "runs", "--sweep", stem).stdout
    assert [line.split()[-1] for line in table.splitlines() if f"{stem}-" in line and "results" in line][:3] == [
        "results"
    ] * 3
    # The best leg is marked; legs that score the same are said to tie (the tests' pipeline ties two legs today).
    top = [leg for leg in legs if accuracy[leg] == max(accuracy.values())]
    for shown in (followed, table):
        if len(top) == 1:
            assert re.search(rf"^  \*  \d/3  {re.escape(top[0])} ", shown, re.MULTILINE), shown
        else:
            tied = ", ".join(f"{legs.index(leg) + 1}/3" for leg in top)
            assert f"; legs {tied} tie for the best (metrics/evaluate.json:accuracy " in shown, shown
            assert not re.search(r"^  \*  ", shown, re.MULTILINE), shown
    # compare holds a leg against the sweep's base run.
    compared = invoke(dev, "compare", "-a", legs[0]).stdout
    assert f" = {base}\n" in compared and f" = {legs[0]}\n" in compared, compared
    assert re.search(r"train\.epochs +60 +20", compared), compared

    # 2. A sweep over evaluate.threshold after the base run: only evaluate executes in each leg.
    _, legs, _ = sweep(dev, "--set", "evaluate.threshold=0.3,0.7", "--name", "th")
    for n, leg in enumerate(legs):
        log = ran(act.run(clone(origin, tmp_path / f"runner-th-{n}", f"refs/tags/{leg}"), leg))

        assert executed(log) == ["evaluate"]
        assert f"refs/heads/results/{leg}" in refs(origin)
    assert refs(origin)["refs/heads/main"] == main
