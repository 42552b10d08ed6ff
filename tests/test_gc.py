"""`invoke gc`: which runs are kept, and that deleting the rest never touches a kept run's data.

The histories are real git on a bare origin, real objects and run-cache entries in moto's S3 and real MLflow runs:
most runs are made by hand as share and the failure step make them (gc_fixtures.py), a few by the real loop
(`invoke repro` and `invoke share` in a runner's clone), whose objects and entries DVC itself pushes. Distinct tag
times come from GIT_COMMITTER_DATE; the newest run is tagged after every object was written, as on a real remote
(each run's data goes out after its tag).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from gc_fixtures import SHARED_PLOT, History, at, days_ago, going_keys, keys_of, md5
from gitrepos import INVOKE, clone, git, invoke, lock_outs, show, tag_run
from loop_fixtures import repro_at, runner, s3_env, share
from reproduce_fixtures import reproduce

import tasks
from src.runloop import dvc_store, lock, retention
from src.runloop.git import Git
from src.runloop.record import RESULTS, Launch, Outcome
from src.runloop.runs import Run, Runs


def gc(repo: Path, *args: str, env: dict[str, str], code: int = 0) -> str:
    result = invoke(repo, "gc", *args, env=env)
    assert result.returncode == code, result.stdout
    assert "Traceback" not in result.stdout
    return result.stdout


def gc_plan(repo: Path, *args: str, env: dict[str, str]) -> dict:
    return json.loads(gc(repo, "--json", *args, env=env))


def bucket(s3, name: str) -> dict[str, bytes]:
    client = s3.server.client()
    return {k: client.get_object(Bucket=name, Key=k)["Body"].read() for k in s3.server.keys(name)}


def entries_whole(s3, name: str) -> list[str]:
    """Run-cache entries in the bucket that name an object the bucket does not hold (there must be none)."""
    held = bucket(s3, name)
    broken = []
    for key, data in held.items():
        if dvc_store.Item(key, 0, 0).kind == dvc_store.ENTRY:
            outs = lock.entry_outs(data.decode())
            broken += [key for md5_ in outs or () if dvc_store.object_key(md5_) not in held]
    return broken


# -- the policy and the formats, by themselves ---------------------------------------------------------------------


def test_run_cache_entries_are_named_as_dvc_names_them(pipeline_cache):
    """The entries DVC wrote for a pipeline run are exactly those lock.run_cache_entries names from its dvc.lock."""
    text = (pipeline_cache.parent.parent / "dvc.lock").read_text()
    on_disk = {p.relative_to(pipeline_cache).as_posix() for p in (pipeline_cache / "runs").rglob("*") if p.is_file()}

    named = {dvc_store.entry_key(e.key, e.value): e.outs for e in lock.run_cache_entries(text)}

    assert set(named) == on_disk
    for key, outs in named.items():
        assert outs == lock.entry_outs((pipeline_cache / key).read_text())
        assert all((pipeline_cache / dvc_store.object_key(m)).is_file() for m in outs)


def _run(tag: str, days: float, commit: str = "c", results: str | None = "r", leg: bool = False) -> Run:
    date = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(days_ago(days)))
    launch = Launch("", "main", "sweep" if leg else None, (1, 2) if leg else None)
    outcome = Outcome(RESULTS, tag, "c" * 40) if results else None
    found = f"{results}-{tag}" if results else None
    return Run(tag, date, f"{commit}-{tag}", launch, outcome, results=found, where="main" if results else None)


def test_the_policy_keeps_what_a_ref_reaches_and_the_newest_of_the_rest():
    runs = Runs(
        prefix="run-",
        known=[
            _run("newest-waiting", 0.5, results=None),
            _run("on-main", 1),
            _run("leg-3", 2, leg=True),
            _run("failed-between", 2.5, results=None),
            _run("leg-2", 3, leg=True),
            _run("leg-1", 4, leg=True),
            _run("old-on-main", 40),
            _run("tagged-on-main", 41, results=None),
            _run("ancient", 50),
        ],
    )
    reachable = {"r-on-main", "r-old-on-main", "c-tagged-on-main"}

    def kept(keep_last: int, keep_days: int) -> dict[str, str]:
        verdicts = retention.verdicts(runs, reachable, retention.Policy(keep_last, keep_days))
        return {v.run.tag: v.why.split(" (")[0] for v in verdicts if v.kept}

    assert kept(2, 0) == {
        "newest-waiting": "among the newest",  # tagged after the oldest of the two newest with results
        "on-main": "results on main",
        "leg-3": "among the newest",
        "failed-between": "among the newest",
        "leg-2": "among the newest",
        "old-on-main": "results on main",
        "tagged-on-main": "tagged on a branch or tag",
    }
    assert set(kept(0, 0)) == {"on-main", "old-on-main", "tagged-on-main"}
    assert set(kept(0, 3)) == {"newest-waiting", "on-main", "leg-3", "failed-between", "old-on-main", "tagged-on-main"}
    with pytest.raises(retention.Refused, match="--keep-last -1 --keep-days 0: both are counts"):
        retention.Policy(-1, 0)


def test_prune_cache_frees_what_no_kept_run_names_oldest_first(tmp_path):
    cache = tmp_path / "cache"
    store = dvc_store.folder(cache)

    def put(data: bytes, age_days: float, name: str | None = None) -> str:
        key = dvc_store.object_key(name or md5(data))
        path = cache / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (days_ago(age_days), days_ago(age_days)))
        return name or md5(data)

    kept_model = put(b"k" * 100, 9)  # old, but a kept run names it
    listing = json.dumps([{"md5": md5(b"f" * 100), "relpath": "f.csv"}]).encode()
    put(b"f" * 100, 8)  # a file of a kept directory
    kept_dir = put(listing, 8, md5(listing) + ".dir")
    oldest, older, newer = put(b"a" * 100, 7), put(b"b" * 100, 6), put(b"c" * 100, 1)
    stage = {"cmd": "x", "deps": [], "outs": [{"path": "m", "hash": "md5", "md5": older, "size": 100}]}
    keep_stage = {"cmd": "y", "deps": [], "outs": [{"path": "k", "hash": "md5", "md5": kept_model, "size": 100}]}
    elsewhere = {"cmd": "z", "deps": [], "outs": [{"path": "r", "hash": "md5", "md5": "e" * 32, "size": 1}]}
    entries = {}
    for name, content, value in (
        ("older", stage, "0" * 64),
        ("kept", keep_stage, "1" * 64),
        ("remote", elsewhere, "2" * 64),
    ):
        entries[name] = dvc_store.entry_key("ab" * 32, value)
        (cache / entries[name]).parent.mkdir(parents=True, exist_ok=True)
        (cache / entries[name]).write_text(yaml.safe_dump(content))
    total = sum(i.size for i in store.items())

    done = retention.prune_cache(cache, total - 150, {kept_model, kept_dir})

    left = {i.key for i in store.items()}
    assert dvc_store.object_key(oldest) not in left and dvc_store.object_key(older) not in left
    assert entries["older"] not in left  # it named an object that went: it went first
    # What stays: the kept, the newest, and an entry whose object the remote lends (`dvc repro --pull` fetches it).
    kept_keys = {dvc_store.object_key(k) for k in (kept_model, kept_dir, md5(b"f" * 100), newer)}
    assert kept_keys | {entries["kept"], entries["remote"]} == left
    assert (done.objects, done.entries, done.within) == (2, 1, True)

    tight = retention.prune_cache(cache, 10, {kept_model, kept_dir}, grace=3 * retention.DAY)

    assert dvc_store.object_key(newer) in {i.key for i in store.items()}  # written within the grace period
    assert (tight.objects, tight.within) == (0, False)
    assert retention.prune_cache(cache, 10, {kept_model, kept_dir}).objects == 1  # without it, it goes


# -- against the real services -------------------------------------------------------------------------------------


def small_history(
    dev: Path, s3, newest_at: float | None = None, doomed: bool = True
) -> tuple[History, dict[str, list[str]]]:
    """Two runs on main, a sweep of three legs and a run of a deleted branch (unless not `doomed`); the newest run
    (on main) tagged at `newest_at` (default: after every object was written)."""
    h = History(dev, s3, s3.dvc_bucket, tasks.TAG_PREFIX)
    m1 = h.run("main", "m1", days_ago(10), plots=True)
    base = git("rev-parse", "origin/main", cwd=dev)
    stem = f"{tasks.TAG_PREFIX}-main-20260101-000000-sweep"
    legs = [h.leg(base, stem, n, 3, f"leg{n}", days_ago(9 - n)) for n in (1, 2, 3)]
    doomed_runs = []
    if doomed:
        h.branch("doomed")
        doomed_runs.append(h.run("doomed", "d1", days_ago(5)))
        git("push", "--quiet", "origin", "--delete", "doomed", cwd=dev)
    m2 = h.run("main", "m2", newest_at or time.time() + 2, plots=True)
    return h, {"kept": [m1, m2], "gone": [*legs, *doomed_runs]}


def expected_going(h: History, runs: dict[str, list[str]]) -> set[str]:
    kept = set().union(*(h.keys[t] for t in runs["kept"]))
    return set().union(*(h.keys[t] for t in runs["gone"])) - kept


def test_gc_stopped_in_the_middle_of_apply_loses_nothing_and_a_second_gc_finishes(dev, origin, s3, tmp_path):
    h, runs = small_history(dev, s3)
    user = clone(origin, tmp_path / "user")
    env = s3_env(s3)
    expected = expected_going(h, runs)
    before = bucket(s3, s3.dvc_bucket)
    assert going_keys(gc_plan(user, "--keep-last", "0", "--keep-days", "0", env=env)) == expected
    assert bucket(s3, s3.dvc_bucket) == before  # the default deletes nothing

    proc = subprocess.Popen(
        [str(INVOKE), "gc", "--apply", "--keep-last", "0", "--keep-days", "0"],
        cwd=user,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Deleting ") and " objects " in line:  # the entries are gone, the objects are next
            proc.kill()
            break
    proc.wait(timeout=60)
    out = "".join(seen)
    assert proc.returncode == -signal.SIGKILL, out

    stopped = bucket(s3, s3.dvc_bucket)
    assert entries_whole(s3, s3.dvc_bucket) == []  # no entry names a deleted object, wherever it stopped
    kept = {k: v for k, v in before.items() if k not in expected}
    assert {k: v for k, v in stopped.items() if k not in expected} == kept  # every byte a kept run names is there
    assert not any(dvc_store.Item(k, 0, 0).kind == dvc_store.ENTRY for k in expected & stopped.keys())

    again = gc(user, "--apply", "--keep-last", "0", "--keep-days", "0", env=env)

    assert again.rstrip().endswith("freed.")
    assert bucket(s3, s3.dvc_bucket) == kept
    assert going_keys(gc_plan(user, "--keep-last", "0", "--keep-days", "0", env=env)) == set()


def test_gc_refuses_newer_objects_no_commit_names_unless_told_the_prefix(dev, origin, s3, tmp_path):
    h, runs = small_history(dev, s3, newest_at=days_ago(1), doomed=False)
    user = clone(origin, tmp_path / "user")
    env = s3_env(s3)
    # Another repository's push into the same prefix, after this one's newest run.
    foreign = h.put(dvc_store.object_key(md5(b"theirs")), b"theirs")

    refused = gc(user, env=env, code=1)

    newest = runs["kept"][-1]
    date = git("for-each-ref", "--format=%(creatordate:iso-strict)", f"refs/tags/{newest}", cwd=user)
    assert refused.splitlines()[-1] == (
        f"The DVC remote s3://{s3.dvc_bucket} holds 1 object(s) no commit of this repository names, written after "
        f"its newest run {newest} ({date}), e.g. {foreign} — another repository may be writing there: give each "
        "repository its own prefix (`invoke init` sets s3://<bucket>/<name>); if this prefix is this project's "
        f"alone, say so: --prefix s3://{s3.dvc_bucket} (what no commit names yet stays)."
    )
    wrong = gc(user, "--prefix", "s3://elsewhere/x", env=env, code=1)
    assert wrong.splitlines()[-1].startswith(
        f"--prefix s3://elsewhere/x is not the DVC remote's URL s3://{s3.dvc_bucket}"
    )

    told = gc_plan(user, "--prefix", f"s3://{s3.dvc_bucket}", "--keep-last", "0", "--keep-days", "0", env=env)

    fates = {o["key"]: (o["goes"], o["why"]) for o in told["objects"]}
    assert fates[foreign] == (False, retention.NEWER)
    gc(user, "--apply", "--prefix", f"s3://{s3.dvc_bucket}", "--keep-last", "0", "--keep-days", "0", env=env)
    assert foreign in s3.server.keys(s3.dvc_bucket)


def test_gc_deletes_nothing_while_a_run_may_still_be_going(dev, origin, s3, tmp_path):
    h, runs = small_history(dev, s3, newest_at=days_ago(1))
    going = h.tag("going", h.commit("main", "Change going", time.time()), "main", time.time())
    user = clone(origin, tmp_path / "user")
    env = s3_env(s3)
    before = bucket(s3, s3.dvc_bucket)

    plan = gc(user, "--keep-last", "0", "--keep-days", "0", env=env)
    refused = gc(user, "--apply", "--keep-last", "0", "--keep-days", "0", env=env, code=1)

    assert f"Still going (no record yet): {going}; what was written since they were tagged stays." in plan
    assert refused.splitlines()[-1] == (
        f"Run(s) {going} may still be going (no record yet; a job may queue and run for 25 h) and may name data gc "
        "would delete — run `invoke gc --apply` once they have ended (`invoke watch` follows them)."
    )
    assert bucket(s3, s3.dvc_bucket) == before


def test_gc_on_a_folder_remote_keeps_what_a_kept_run_without_a_record_may_have_written(dev, origin, tmp_path):
    remote = tmp_path / "remote"
    h = History(dev, None, None, tasks.TAG_PREFIX, folder=remote)
    m1 = h.run("main", "m1", days_ago(10))
    h.branch("doomed")
    d1 = h.run("doomed", "d1", days_ago(3))  # its branch is deleted: git shows no record of it any more
    git("push", "--quiet", "origin", "--delete", "doomed", cwd=dev)
    m2 = h.run("main", "m2", days_ago(1))
    for tag, when in ((m1, days_ago(10)), (d1, days_ago(3)), (m2, days_ago(1))):
        h.written_at(tag, when + 600)  # as its runner pushed it, minutes after the tag
    user = clone(origin, tmp_path / "user")
    env = {**os.environ, "DVC_REMOTE_URL": str(remote)}
    d1_only = h.keys[d1] - h.keys[m1] - h.keys[m2]

    kept = gc_plan(user, "--keep-last", "0", "--keep-days", "5", env=env)
    dropped = gc_plan(user, "--keep-last", "0", "--keep-days", "0", env=env)

    assert [r["tag"] for r in kept["runs"] if r["kept"]] == [m2, d1, m1]
    assert {o["key"]: o["why"] for o in kept["objects"] if o["key"] in d1_only} == dict.fromkeys(
        d1_only, retention.UNSEEN
    )
    assert going_keys(kept) == set()
    assert going_keys(dropped) == d1_only
    gc(user, "--apply", "--keep-last", "0", "--keep-days", "0", env=env)
    assert {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()} == set(h.written) - d1_only


def test_gc_names_what_it_cannot_work_on(dev, origin, s3, tmp_path):
    user = clone(origin, tmp_path / "user")

    no_keys = gc(user, env=dict(os.environ), code=1).splitlines()[-1]
    no_runs = gc(user, env=s3_env(s3), code=1).splitlines()[-1]

    assert no_keys.startswith("no S3 credentials for the DVC remote s3://") and "set AWS_ACCESS_KEY_ID" in no_keys
    assert no_runs == (
        f"There is no run ({tasks.TAG_PREFIX}*) here — gc keeps data by the runs that name it; with none it cannot "
        "tell this project's data from anything else."
    )


# -- end to end: twenty runs, MLflow, and the reproductions after ---------------------------------------------------


def mlflow_keys(s3, uri: str) -> list[str]:
    """The keys of the MLflow bucket under an artifact URI (s3://mlflow-artifacts/…)."""
    bucket_name, _, prefix = uri.removeprefix("s3://").partition("/")
    return s3.server.keys(bucket_name, prefix.rstrip("/") + "/")


def pulled(origin: Path, where: Path, rev: str, env: dict[str, str]) -> dict[str, str]:
    """A fresh clone at `rev` after a real `dvc pull` from the test's bucket: each output's md5, as read back."""
    repo = clone(origin, where, rev)
    for args in (
        ["remote", "modify", "--local", "storage", "url", env["DVC_REMOTE_URL"]],
        ["remote", "modify", "--local", "storage", "endpointurl", env["MLFLOW_S3_ENDPOINT_URL"]],
        ["pull", "--quiet"],
    ):
        done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return {path: md5((repo / path).read_bytes()) for path in lock_outs((repo / "dvc.lock").read_text())}


@pytest.mark.slow
def test_gc_keeps_every_kept_runs_data_and_deletes_the_rest(
    dev, origin, s3, mlflow_server, pipeline_cache, venv_cache, tmp_path, monkeypatch
):
    for name, value in {**s3.server.env(), "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}.items():
        monkeypatch.setenv(name, value)  # this process's MLflow client writes artifacts to moto, and says nothing
    env = s3_env(s3, MLFLOW_URL=mlflow_server.url)
    client = mlflow_server.client()
    h = History(dev, s3, s3.dvc_bucket, tasks.TAG_PREFIX, client, client.create_experiment(f"gc-{uuid.uuid4()}"))
    kept, gone = [], []

    # Two runs of the real loop, whose data DVC pushes: m1 (restored from the run cache) and a sweep's leg l0,
    # which executes train and evaluate, logs them to MLflow and registers a model version.
    m1 = tag_run(dev, "--name", "m1", env=at(days_ago(20)))
    share(runner(origin, tmp_path / "m1", m1, pipeline_cache, env), "--tag", m1, env=env)
    git("pull", "--quiet", "--ff-only", cwd=dev)
    l0 = tag_run(dev, "--set", "train.epochs=61", "--name", "l0", env=at(days_ago(19)))
    leg, repro = repro_at(origin, tmp_path / "l0", l0, pipeline_cache, env)
    assert repro.returncode == 0 and "Running stage 'train'" in repro.stdout, repro.stdout
    share(leg, "--tag", l0, env=env)
    for tag, ref in ((m1, "origin/main"), (l0, f"origin/results/{l0}")):
        git("fetch", "--quiet", "origin", cwd=dev)
        h.keys[tag] = keys_of(show(dev, ref, "dvc.lock"))
    kept.append(m1)
    gone.append(l0)
    l0_runs = Runs(prefix=tasks.TAG_PREFIX, git=Git(dev)).get(l0).mlflow_runs
    assert len(l0_runs) == 2  # train's and evaluate's

    # Eighteen by hand: main, a feature branch, a branch deleted later, a failure, results that went aside, a sweep.
    kept += [h.run("main", "m2", days_ago(18)), h.run("main", "m3", days_ago(17))]
    h.branch("feature")
    kept += [h.run("feature", f"f{n}", days_ago(17 - n)) for n in (1, 2, 3, 4)]
    h.branch("doomed")
    doomed = [h.run("doomed", f"d{n}", days_ago(13 - n)) for n in (1, 2, 3)]
    git("push", "--quiet", "origin", "--delete", "doomed", cwd=dev)
    gone += doomed
    failed_at = h.commit("main", "Change that fails", days_ago(9))
    failed = h.tag("failed", failed_at, "main", days_ago(9))
    h.failed(failed, failed_at, days_ago(9) + 60)
    kept.append(h.run("main", "aside", days_ago(8), aside=True))  # main moved on: its results on results/<tag>
    kept.append(h.run("main", "m4", days_ago(7)))
    base = git("rev-parse", "origin/main", cwd=dev)
    stem = f"{tasks.TAG_PREFIX}-main-20260101-000000-lr"
    legs = [h.leg(base, stem, n, 4, f"lr{n}", days_ago(6 - n)) for n in (1, 2, 3, 4)]
    gone += legs[:2]
    kept += legs[2:]  # --keep-last 2: the two newest legs
    kept.append(h.run("main", "m5", days_ago(1.5), plots=True, names=(h.mlflow_runs[legs[0]],)))
    # MLflow beyond the records: an alias on leg 2's model version, an unaliased version of a doomed run, and a
    # run of another project in the same experiment.
    model = f"gc-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    source = client.get_run(h.mlflow_runs[legs[1]]).info.artifact_uri
    aliased = client.create_model_version(model, source, run_id=h.mlflow_runs[legs[1]])
    client.set_registered_model_alias(model, "champion", aliased.version)
    doomed_version = client.create_model_version(model, source, run_id=h.mlflow_runs[doomed[0]])
    other = client.create_run(h.experiment, tags={"run_tag": "run-otherproject-main-20260101-000000-x"})
    client.log_text(other.info.run_id, "theirs\n", "notes/log.txt")
    kept.append(h.run("main", "m6", time.time() + 2, plots=True))  # the newest: after every object was written
    user = clone(origin, tmp_path / "user")
    before = bucket(s3, s3.dvc_bucket)
    expected = set().union(*(h.keys[t] for t in gone)) - set().union(*(h.keys[t] for t in kept))
    assert expected and expected <= before.keys() and all(before[k] == v for k, v in h.written.items())
    args = ("--keep-last", "2", "--keep-days", "0")

    plan = gc_plan(user, *args, env=env)

    assert len(plan["runs"]) == 20
    assert {r["tag"] for r in plan["runs"] if r["kept"]} == {*kept, failed}
    assert going_keys(plan) == expected  # exactly what only runs not kept, or no commit, name
    assert any(k.endswith(".dir") for k in expected) and any(k.startswith("runs/") for k in expected)
    assert dvc_store.object_key(md5(SHARED_PLOT)) in before.keys() - expected  # a file a kept directory lists
    mlflow = {m["run_id"]: (m["goes"], m["why"]) for m in plan["mlflow"]}
    assert {run_id for run_id, (goes, _) in mlflow.items() if goes} == {*l0_runs, *(h.mlflow_runs[d] for d in doomed)}
    assert mlflow[h.mlflow_runs[legs[0]]] == (False, "a kept run's record names it")
    alias = f"its model version has an alias: {model} version {aliased.version} (alias champion)"
    assert mlflow[h.mlflow_runs[legs[1]]] == (False, alias)
    assert mlflow[h.mlflow_runs[failed]] == (False, "of a kept run")
    assert other.info.run_id not in mlflow  # not a run of this repository: never looked at
    text = gc(user, *args, env=env)
    assert re.search(rf"^  {re.escape(legs[0])} +results on results/\S+ +no +\d+ objects, .+; \d+ go ", text, re.M)
    assert text.rstrip().endswith("Nothing was deleted: `invoke gc --apply` with the same options deletes what goes.")
    assert bucket(s3, s3.dvc_bucket) == before
    train = next(r for r in l0_runs if client.get_run(r).data.tags.get("stage") == "train")
    experiment = client.get_run(train).info.experiment_id
    (logged,) = client.search_logged_models([experiment], filter_string=f"source_run_id='{train}'")
    assert mlflow_keys(s3, logged.artifact_location) and client.search_model_versions(f"run_id='{train}'")
    artifacts = {r: client.get_run(r).info.artifact_uri for r in mlflow}

    out = gc(user, "--apply", *args, env=env)

    assert "Deleting " in out and out.rstrip().endswith("freed.")
    assert bucket(s3, s3.dvc_bucket) == {k: v for k, v in before.items() if k not in expected}
    results = git("rev-parse", "origin/main", cwd=user)
    first = git("rev-list", "--reverse", "--fixed-strings", f"--grep=Run-Tag: {m1}", results, cwd=user).split()[0]
    assert pulled(origin, tmp_path / "pulled", first, env) == lock_outs(show(user, first, "dvc.lock"))
    for run_id, (goes, _) in mlflow.items():
        assert client.get_run(run_id).info.lifecycle_stage == ("deleted" if goes else "active")
        assert bool(mlflow_keys(s3, artifacts[run_id])) is not goes, run_id
    assert mlflow_keys(s3, logged.artifact_location) == []
    assert client.search_model_versions(f"run_id='{train}'") == []
    assert [v.version for v in client.search_model_versions(f"name='{model}'")] == [aliased.version]
    assert doomed_version.version != aliased.version
    assert client.get_model_version_by_alias(model, "champion").version == aliased.version
    assert client.get_run(other.info.run_id).info.lifecycle_stage == "active"
    assert mlflow_keys(s3, client.get_run(other.info.run_id).info.artifact_uri)
    again = gc_plan(user, *args, env=env)
    assert going_keys(again) == set() and not any(m["goes"] for m in again["mlflow"])

    # The kept run reproduces; the deleted one is refused in one line.
    reproducing = {**env, "XDG_CACHE_HOME": str(venv_cache)}
    refused = reproduce(user, l0, env=reproducing, nox=True)
    assert refused.returncode == 2, refused.stdout
    (said,) = [line for line in refused.stdout.splitlines() if line.startswith("Could not reproduce: ")]
    assert said.startswith(
        f"Could not reproduce: Run {l0}'s outputs are gone from the DVC remote s3://{s3.dvc_bucket} ("
    )
    assert said.endswith(
        "`invoke gc` deleted them (not a run it keeps), or someone did by hand — reproduce a run whose data is kept "
        "(`invoke gc` lists them)."
    )
    assert "Worktree:" not in refused.stdout  # refused before anything was made
    reproduced = reproduce(user, m1, env=reproducing, nox=True)
    assert reproduced.returncode == 0, reproduced.stdout
    assert "Verdict: bit-identical" in reproduced.stdout
