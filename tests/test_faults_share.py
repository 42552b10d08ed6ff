"""Faults and attacks on `invoke share`: rows of the "Faults and attacks" matrix (docs/faults.md), each against a bare
origin (served by a git smart-HTTP server on loopback where the push token matters) and moto's S3 server.

Runners start from the DVC cache of one pipeline run (see test_share.py), so `invoke repro` restores the
project's stages; a stage a test adds is the only one that executes.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from git_http import GitHttp, holds, serving
from gitrepos import (
    INVOKE,
    commit_file,
    commit_of,
    dvc_key,
    files_named,
    git,
    lock_outs,
    parents,
    refs,
    show,
    subject,
    tag_run,
    trailers,
)
from loop_fixtures import (
    add_stage,
    keys_of,
    repro_at,
    runner,
    s3_env,
    share,
    writes,
)

import tasks
from src.runloop import dvc_repo, environment, results
from src.runloop.refusal import Refused

P = tasks.TAG_PREFIX  # tags the tests make by hand start like tag-run's


# -- row 10: a stage crashed, share is run anyway ----------------------------------------------------------------


@pytest.mark.slow
def test_share_refuses_after_a_failed_repro(dev, origin, s3, pipeline_cache, tmp_path):
    add_stage(dev, "crash", "import sys\nsys.exit(3)\n", {"crash/out.txt": {}})
    tag = tag_run(dev)
    repo, repro = repro_at(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    assert repro.returncode == 1 and "exited with 3" in repro.stdout and "The pipeline failed" in repro.stdout
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3), code=1)

    assert "DVC says the pipeline is not up to date here: crash (changed deps: stages/crash.py modified; " in out
    assert "changed outs: crash/out.txt deleted)" in out
    assert "run `invoke repro` (and fix the stage that fails) before sharing" in out
    assert refs(origin) == before
    assert git("rev-parse", "HEAD", cwd=repo) == commit_of(origin, tag)  # no results commit, even locally
    assert s3.server.keys(s3.dvc_bucket) == []


# -- row 15: a results commit would carry non-result changes or unpushed outputs ---------------------------------


@pytest.mark.slow
def test_share_commits_dvc_lock_and_the_gitignore_dvc_wrote(dev, origin, s3, pipeline_cache, tmp_path):
    add_stage(dev, "extra", writes("extra/out.txt"), {"extra/out.txt": {}})
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo, repro = repro_at(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    assert repro.returncode == 0 and "Running stage 'extra'" in repro.stdout

    share(repo, "--tag", tag, env=s3_env(s3))

    results = refs(origin)["refs/heads/main"]
    assert parents(origin, results) == [tagged]
    assert git("diff", "--name-only", tagged, results, cwd=origin).splitlines() == ["dvc.lock", "extra/.gitignore"]
    assert show(origin, results, "extra/.gitignore") == "/out.txt"
    assert keys_of(show(origin, results, "dvc.lock")) <= set(s3.server.keys(s3.dvc_bucket))


@pytest.mark.slow
def test_share_refuses_changes_that_are_not_results(dev, origin, s3, pipeline_cache, tmp_path):
    victim = git("ls-files", "tests", cwd=dev).splitlines()[0]
    script = f"import os\nopen('README.md', 'a').write('edited by a stage\\n')\nos.remove({victim!r})\n" + writes(
        "meddle/out.txt"
    )
    add_stage(dev, "meddle", script, {"meddle/out.txt": {}})
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo, repro = repro_at(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    assert repro.returncode == 0, repro.stdout
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3), code=1)

    assert f"This checkout differs from {tagged[:12]} in files that are not results: " in out
    assert f"README.md (modified), {victim} (deleted) — a results commit holds only dvc.lock" in out
    assert "meddle/.gitignore" not in out  # DVC's own entry is a result
    assert refs(origin) == before and s3.server.keys(s3.dvc_bucket) == []
    assert git("rev-parse", "HEAD", cwd=repo) == tagged

    # Undone, but dvc.yaml edited by hand on the runner and a stray file left: both named, nothing pushed.
    git("checkout", "--", "README.md", victim, cwd=repo)
    (repo / "dvc.yaml").write_text((repo / "dvc.yaml").read_text() + "# tweak\n")
    (repo / "notes.txt").write_text("scratch\n")

    out = share(repo, "--tag", tag, env=s3_env(s3), code=1)

    assert "files that are not results: dvc.yaml (modified), notes.txt (untracked) —" in out
    assert refs(origin) == before and s3.server.keys(s3.dvc_bucket) == []


@pytest.mark.slow
def test_share_refuses_outputs_the_remote_cannot_carry(dev, origin, s3, pipeline_cache, tmp_path):
    outs = {"extra/nocache.txt": {"cache": False}, "extra/nopush.txt": {"push": False}}
    add_stage(dev, "extra", writes(*outs), outs)
    tag = tag_run(dev)
    repo, _ = repro_at(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))  # DVC may skip it: no matter
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3), code=1)

    assert (
        "Outputs the DVC remote cannot carry: extra/nocache.txt (extra, cache: false), extra/nopush.txt (extra, "
        "push: false), so a clone of the results could not pull them — drop those options in dvc.yaml, then repro "
        "and share." in out
    )
    assert refs(origin) == before and s3.server.keys(s3.dvc_bucket) == []
    assert git("rev-parse", "HEAD", cwd=repo) == commit_of(origin, tag)


@pytest.mark.slow
def test_share_refuses_when_the_cache_lost_an_output(dev, origin, s3, pipeline_cache, tmp_path):
    """`dvc push` only warns about an object it cannot find; share names the output and pushes nothing."""
    tag = tag_run(dev)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    path, md5 = sorted(lock_outs((repo / "dvc.lock").read_text()).items())[0]
    lost = repo / ".dvc" / "cache" / dvc_key(md5)
    lost.parent.chmod(0o755)
    lost.unlink()
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3), code=1)

    assert f"changed outs: {path} not in cache" in out
    assert refs(origin) == before and s3.server.keys(s3.dvc_bucket) == []


@pytest.mark.slow
def test_a_push_that_finds_an_output_nowhere_is_refused_naming_it(
    dev, origin, s3, pipeline_cache, tmp_path, monkeypatch
):
    """An object gone from the cache after share's checks (another job pruning a shared cache): DVC's push only warns
    and pushes the rest; share names the output and goes no further (DVC's own account, no second remote listing)."""
    tag = tag_run(dev)
    env = s3_env(s3)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, env)  # repro wrote the endpoint to config.local
    for name, value in s3.server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(environment, "ROOT", repo)
    outs = lock_outs((repo / "dvc.lock").read_text())
    path, md5 = sorted(outs.items())[0]
    lost = repo / ".dvc" / "cache" / dvc_key(md5)
    lost.parent.chmod(0o755)
    lost.unlink()

    with dvc_repo.opened(repo) as dvc, pytest.raises(Refused) as refused:
        results.push_data(dvc)

    assert str(refused.value) == (
        f"The DVC remote lacks data dvc.lock names: {path} (missing) — nothing was pushed to git; check the remote "
        "and share again (if this clone lost the data too, `invoke repro --force` remakes it)."
    )
    held = set(s3.server.keys(s3.dvc_bucket))
    assert {dvc_key(m) for p, m in outs.items() if p != path} <= held and dvc_key(md5) not in held  # the rest went
    with dvc_repo.opened(repo) as dvc:
        assert dvc.push()[1] == [md5]  # and DVC's push says so again, having nothing else to send


# -- row 9 (share side): SIGINT/SIGTERM during the push -----------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_share_stopped_during_its_push_exits_in_one_line_and_a_rerun_finishes(
    dev, origin, s3, pipeline_cache, tmp_path, sig
):
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    pids = tmp_path / "pids"
    pids.mkdir()
    hook = origin / "hooks" / "pre-receive"  # holds the push until the test has stopped share
    hook.write_text(
        f'#!/bin/sh\necho $$ > "{pids}/hook"\nsleep 3600 &\n'
        f'echo $! > "{pids}/s" && mv "{pids}/s" "{pids}/sleep"\nwait\n'
    )
    hook.chmod(0o755)
    before = refs(origin)
    proc = subprocess.Popen(
        [str(INVOKE), "share", "--tag", tag],
        cwd=repo,
        env=s3_env(s3),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        while not (pids / "sleep").exists():  # the push has reached origin's hook
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    assert proc.returncode == 128 + sig, out
    assert "Traceback" not in out
    lines = out.strip().splitlines()
    assert lines[-1] == (
        f"invoke share stopped by {sig.name} — run it again in this clone to finish; no ref points at missing data"
    )
    # The push went with it: origin's hook and its child are gone, and origin's refs did not move.
    hook_pid, sleep_pid = (int((pids / name).read_text()) for name in ("hook", "sleep"))
    assert not alive(hook_pid) and not alive(sleep_pid)
    assert refs(origin) == before
    # The data went first; the results commit waits in the clone.
    local = git("rev-parse", "HEAD", cwd=repo)
    assert parents(repo, local) == [tagged] and trailers(repo, local)["Run-Tag"] == [tag]
    assert keys_of(show(repo, local, "dvc.lock")) <= set(s3.server.keys(s3.dvc_bucket))

    hook.unlink()
    out = share(repo, "--tag", tag, env=s3_env(s3))

    assert f"Results committed as {local[:12]} on origin/main." in out
    assert refs(origin) == {**before, "refs/heads/main": local}


# -- rows 3, 5 and hole 7: where results go when their branch cannot take them ------------------------------------


@pytest.mark.slow
def test_share_keeps_the_commit_when_origin_refuses_both_pushes(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are frozen today' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3), code=1)

    local = git("rev-parse", "HEAD", cwd=repo)
    assert parents(repo, local) == [tagged] and trailers(repo, local)["Run-Tag"] == [tag]
    assert "origin/main refused the push (" in out
    assert f"and pushing to origin/results/{tag} failed too (" in out and "pushes are frozen today" in out
    assert f"the results commit {local[:12]} is kept in this clone (HEAD) and its data is on the DVC remote" in out
    assert f"run `invoke share` again here, or push it yourself: git push origin {local}:refs/heads/results/" in out
    assert refs(origin) == before
    assert keys_of(show(repo, local, "dvc.lock")) <= set(s3.server.keys(s3.dvc_bucket))

    hook.unlink()
    out = share(repo, "--tag", tag, env=s3_env(s3))

    assert f"Results committed as {local[:12]} on origin/main." in out
    assert refs(origin)["refs/heads/main"] == local


@pytest.mark.slow
def test_share_goes_around_branches_in_the_way_of_its_side_branch(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    # A branch `results` (so no results/<tag> can exist) and one already named like the first fallback.
    git("push", "--quiet", "origin", f"{tagged}:refs/heads/results", f"{tagged}:refs/heads/run-results/{tag}", cwd=dev)
    commit_file(dev, "NOTES.md", "Next idea\n", "Add notes")  # main moves on: the results go aside
    git("push", "--quiet", "origin", "main", cwd=dev)
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    side = f"refs/heads/run-results/{tag}-2"
    after = refs(origin)
    assert parents(origin, after.pop(side)) == [tagged] and after == before
    assert f"results committed as {git('rev-parse', 'HEAD', cwd=repo)[:12]} on branch run-results/{tag}-2" in out
    assert f"(origin has a branch in the way of results/{tag})" in out

    # Found there by a re-run of the tag in a fresh clone: no second commit.
    again = runner(origin, tmp_path / "again", tag, pipeline_cache, s3_env(s3))
    out = share(again, "--tag", tag, env=s3_env(s3))
    assert f"Results of {tag} are already on origin as {refs(origin)[side][:12]}" in out
    assert refs(origin) == {**before, side: refs(origin)[side]}


@pytest.mark.slow
def test_share_twice_in_the_same_clone_makes_one_results_commit(dev, origin, s3, pipeline_cache, tmp_path):
    tag = tag_run(dev)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    share(repo, "--tag", tag, env=s3_env(s3))
    results = refs(origin)["refs/heads/main"]
    assert git("rev-parse", "HEAD", cwd=repo) == results
    before = refs(origin)

    out = share(repo, "--tag", tag, env=s3_env(s3))

    assert f"Results of {tag} are already on origin as {results[:12]}: nothing to commit (a re-run)." in out
    assert refs(origin) == before and git("rev-parse", "HEAD", cwd=repo) == results


@pytest.mark.slow
def test_share_of_two_runs_finishing_together_keeps_both(dev, origin, s3, pipeline_cache, tmp_path):
    tags = [tag_run(dev, "--name", "one"), tag_run(dev, "--name", "two")]
    tagged = commit_of(origin, tags[0])
    repos = [runner(origin, tmp_path / f"runner-{i}", t, pipeline_cache, s3_env(s3)) for i, t in enumerate(tags)]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    hook = origin / "hooks" / "pre-receive"  # holds each push to main until both have arrived
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        f'  if [ "$ref" = refs/heads/main ]; then touch "{barrier}/$$"; n=0\n'
        f'    while [ "$(ls "{barrier}" | wc -l)" -lt 2 ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done\n'
        "  fi\ndone\n"
    )
    hook.chmod(0o755)
    procs = [
        subprocess.Popen(
            [str(INVOKE), "share", "--tag", t], cwd=r, env=s3_env(s3), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for t, r in zip(tags, repos, strict=True)
    ]  # fmt: skip
    outs = [p.communicate(timeout=600)[0] for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(list(barrier.iterdir())) == 2  # both pushes reached origin before either landed
    results = [git("rev-parse", "HEAD", cwd=r) for r in repos]
    main = refs(origin)["refs/heads/main"]
    (won,) = [i for i in range(2) if results[i] == main]
    lost = 1 - won
    assert refs(origin)[f"refs/heads/results/{tags[lost]}"] == results[lost]
    for result, tag in zip(results, tags, strict=True):
        assert parents(origin, result) == [tagged] and trailers(origin, result)["Run-Tag"] == [tag]
    assert f"Results committed as {results[won][:12]} on origin/main." in outs[won]
    assert f"on branch results/{tags[lost]} instead — merge it into main" in outs[lost]


# -- row 2: the tagged commit is on no branch of origin ------------------------------------------------------------


@pytest.mark.slow
def test_share_of_a_commit_on_no_branch_says_where_the_results_went(dev, origin, s3, pipeline_cache, tmp_path):
    git("checkout", "--quiet", "--detach", cwd=dev)
    tagged = commit_file(dev, "ASIDE.md", "an experiment\n", "Try something aside")
    git("tag", "-m", "aside", f"{P}-aside", cwd=dev)
    git("push", "--quiet", "origin", f"refs/tags/{P}-aside", cwd=dev)
    summary = tmp_path / "summary.md"
    env = s3_env(s3, GITHUB_STEP_SUMMARY=str(summary))
    repo = runner(origin, tmp_path / "runner", f"{P}-aside", pipeline_cache, env)
    before = refs(origin)

    out = share(repo, "--tag", f"{P}-aside", env=env)

    side = f"refs/heads/results/{P}-aside"
    after = refs(origin)
    assert parents(origin, after.pop(side)) == [tagged] and after == before
    said = f"No branch on origin contains {P}-aside's commit {tagged[:12]}: results committed as"
    assert said in out and said in summary.read_text()
    assert f"on branch results/{P}-aside instead — merge it to keep them there." in summary.read_text()


# -- row 1: tag names that are shell syntax, unicode, or long ------------------------------------------------------

ODD_TAGS = [f"{P}-a|b>c", f"{P}-'q'\"qq\"", f"{P}-ünï-日本", f"{P}-" + "x" * 210]


@pytest.mark.slow
def test_share_takes_quoted_unicode_and_long_tag_names_literally(
    dev, origin, s3, pipeline_cache, tmp_path, isolated_env
):
    tagged = git("rev-parse", "HEAD", cwd=dev)
    for name in ODD_TAGS:
        git("check-ref-format", f"refs/tags/{name}", cwd=dev)
        git("tag", "-m", "odd", name, cwd=dev)
    git("push", "--quiet", "origin", *(f"refs/tags/{name}" for name in ODD_TAGS), cwd=dev)

    for i, name in enumerate(ODD_TAGS):
        summary = tmp_path / f"summary-{i}.md"
        env = s3_env(s3, GITHUB_STEP_SUMMARY=str(summary), GITHUB_REF=f"refs/tags/{name}", GITHUB_REF_NAME=name)
        repo = runner(origin, tmp_path / f"runner-{i}", name, pipeline_cache, env)
        out = share(repo, env=env)
        assert f"## Run `{name}`" in summary.read_text()
        if i == 0:
            results = refs(origin)["refs/heads/main"]
            assert f"Results committed as {results[:12]} on origin/main." in out
        else:  # the same results as the first: a record of its own, on the side branch named after it
            assert f"The same results as {results[:12]} (the results of run {ODD_TAGS[0]})." in out
            same = refs(origin)[f"refs/heads/results/{name}"]
            assert (parents(origin, same), trailers(origin, same)["Run-Tag"]) == ([tagged], [name])
            assert f"the run is recorded as {same[:12]} on branch results/{name}" in out

    assert parents(origin, results) == [tagged] and trailers(origin, results)["Run-Tag"] == [ODD_TAGS[0]]
    assert refs(origin)["refs/heads/main"] == results
    assert subject(origin, results) == "Initial commit-results"
    assert files_named("c", tmp_path, isolated_env) + list(Path.cwd().glob("c")) == []  # `>c` wrote nothing


# -- rows 12, 13 and hole 5: share authenticates with the token, which goes nowhere else ----------------------------

# Made up at run time (so not even this file holds it), and unusual enough to be found wherever it went.
TOKEN = f"tok-{uuid.uuid4().hex}"


@pytest.fixture
def git_http(origin: Path) -> Iterator[tuple[str, GitHttp]]:
    """`origin` served over smart HTTP on loopback, pushes allowed with TOKEN only; its URL and the server."""
    with serving(origin, TOKEN) as served:
        yield served


def holders(token: str, *roots: Path) -> list[Path]:
    """Every file under `roots` that holds `token`."""
    return [p for root in roots for p in root.rglob("*") if p.is_file() and holds(p.read_bytes(), token)]


@pytest.mark.slow
def test_share_pushes_over_https_with_the_token_and_leaves_it_nowhere(
    dev, origin, s3, pipeline_cache, tmp_path, isolated_env, git_http
):
    url, server = git_http
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = runner(origin, tmp_path / "runner", tag, pipeline_cache, s3_env(s3))
    git("remote", "set-url", "origin", url, cwd=repo)
    before = refs(origin)

    # A wrong token: refused by the server, said in one line, and never shown.
    wrong = f"tok-{uuid.uuid4().hex}"
    out = share(repo, "--tag", tag, env=s3_env(s3, ACCESS_TOKEN=wrong), code=1)

    assert out.startswith("Fetching origin with ACCESS_TOKEN failed: fatal: could not read Username for ")
    assert wrong not in out and base64.b64encode(f"x-access-token:{wrong}".encode()).decode() not in out
    assert refs(origin) == before and s3.server.keys(s3.dvc_bucket) == []

    out = share(repo, "--tag", tag, env=s3_env(s3, ACCESS_TOKEN=TOKEN))

    results = refs(origin)["refs/heads/main"]
    assert f"Results committed as {results[:12]} on origin/main." in out
    assert parents(origin, results) == [tagged]
    pushes = [r for r in server.requests if r[:2] == ("POST", "/origin.git/git-receive-pack?")]
    assert pushes == [("POST", "/origin.git/git-receive-pack?", True)]
    assert TOKEN not in out
    # Never on a command line: the push's git processes were running, and none showed it.
    assert any(f" push --quiet origin {results}:refs/heads/main" in line for line in server.command_lines)
    assert server.leaked == []
    # Not in the clone (.git/config, .dvc/config.local, run records), not in HOME (no credential store).
    assert holders(TOKEN, tmp_path, isolated_env.parent) == []
