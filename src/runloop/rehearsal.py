"""Rehearse a run on this machine: the tag-triggered workflow, run by act as the runner would, on throwaway services.

    python -m src.runloop.rehearsal [--ref REF] [--runner CLASS] [--keep]      (what `nox -s workflow` runs)

The rehearsal makes a bare clone of this repository as `origin`, starts moto's S3 server (with the bucket that
`.dvc/config` names) and an MLflow server on loopback, tags the commit with `invoke tag-run`'s naming in that
origin and runs the workflow file with act in host mode in a fresh clone at the tag. act and every step get an
isolated environment (services.isolated) and only the throwaway services as secrets and variables, and `.env`
never travels, so nothing reaches the real remote, MinIO or MLflow whatever `.env` or the shell says. Then it
prints what the real run would have produced: the results commit, the objects pushed, the MLflow runs, the job
summary. Uncommitted changes are rehearsed too, as a temporary commit in the throwaway origin only; but not a
dvc.lock a local `invoke repro` left (tag-run refuses it; the runner makes its own), which it says.

`--runner CLASS` rehearses the routing: the tag records CLASS as `invoke tag-run --runner` would, act gives this
machine the labels of CLASS (and of the route job), and the rehearsal says where the route job sent the run; a run
job that asked for other labels would be skipped by act, and the rehearsal fails saying so.

act itself is driven by act.py, which the workflow tests use too.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any

import yaml

from src.runloop import ci, environment, lock, project, record, report, run_tag, runner_cache, runner_classes, services
from src.runloop.act import Act, ActRun, find_act, host_labels, routed_labels
from src.runloop.git import Git
from src.runloop.refusal import Refused
from src.runloop.services import BIN

# The runner environment act gets besides the secrets and variables (GitHub sets these on a real runner).
RUN_ID = "rehearsal"
SERVER_URL = "https://github.com"
SHOWN = 20  # bucket objects listed before "… and N more"


# -- the throwaway origin ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What is rehearsed: a commit of this checkout and the branch its run belongs to."""

    commit: str
    branch: str
    dirty: bool  # rehearse the checkout's uncommitted changes on top of `commit`


def target(root: Path, ref: str | None, env: Mapping[str, str]) -> Target:
    """The commit to rehearse (HEAD, or REF as committed) and its branch, as `invoke tag-run` would pick it."""
    if ref is not None and (not ref or ref.startswith("-")):
        raise Refused(f"--ref {ref!r} is not a branch, tag or commit name — pass one (git log --oneline shows them).")
    git = Git(root, env)
    if git("rev-parse", "--is-inside-work-tree") != "true":
        raise Refused(f"{root} is not a git checkout — run the rehearsal in the project's clone.")
    commit = git.commit_of(ref or "HEAD")
    if not commit:
        what = f"--ref {ref!r} names no commit here" if ref else "HEAD has no commit yet"
        raise Refused(f"{what} — pass a branch, tag or commit this clone has (git log --oneline shows them).")
    current = git.branch()
    if not ref:
        if not current:
            raise Refused("HEAD is detached — check out the branch the run belongs to, or pass --ref REF.")
        return Target(commit, current, dirty=bool(git.must(f"git status in {root}", "status", "--porcelain")))
    candidates = [ref] if git("show-ref", "--verify", "--quiet", f"refs/heads/{ref}") is not None else []
    candidates += [current] if current else []
    listed = git.must(f"git branch in {root}", "branch", "--contains", commit, "--format=%(refname:short)")
    candidates += listed.splitlines()
    for branch in candidates:
        if git("merge-base", "--is-ancestor", commit, f"refs/heads/{branch}") is not None:
            return Target(commit, branch, False)
    raise Refused(
        f"--ref {ref!r} ({commit[:12]}) is on no local branch, and a run's results go to its tag's branch — "
        "check out a branch that holds it (git switch -c NAME REF) and rehearse again."
    )


def _travelling(root: Path, env: Mapping[str, str]) -> list[str]:
    """The checkout's files a commit of everything would hold (tracked, or untracked and not ignored)."""
    out = Git(root, env).must(f"git ls-files in {root}", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    names = dict.fromkeys(name for name in out.split("\0") if name)
    return [name for name in names if os.path.lexists(root / name)]


def _is_dotenv(name: str) -> bool:
    return name.rpartition("/")[2] == ".env"


def rehearsed_commit(
    origin: Path, root: Path, goal: Target, user_env: Mapping[str, str], env: dict[str, str]
) -> tuple[str, str | None]:
    """The commit the runner checks out: `goal.commit`, or a temporary one holding the uncommitted changes; and,
    when it left out a dvc.lock a local `invoke repro` made or changed, how tag-run would have that dropped.

    The temporary commit is made in the throwaway `origin` only, from a temporary index (this checkout, its
    index and its refs are untouched), and the branch there moves to it, as if it had been committed and pushed.
    A `.env` never travels, committed or not. A changed dvc.lock does not travel either, the commit's own goes
    instead: it would be that machine's results rehearsed as the runner's (tag-run refuses it, the runner makes
    its own), and its outputs are in no cache the runner has.
    """
    git = Git(origin, env)
    tracked = git.must(f"git ls-tree in {origin}", "ls-tree", "-r", "--name-only", "-z", goal.commit).split("\0")
    if any(_is_dotenv(name) for name in tracked):
        raise Refused(
            f"{goal.commit[:12]} has a .env committed — the rehearsal never sends your settings to the runner: "
            "remove it from git (git rm --cached .env; it is gitignored) and rehearse again."
        )
    if not goal.dirty:
        return goal.commit, None
    stray = lock.left_by_repro(Git(root, user_env).uncommitted())
    files = [
        name for name in _travelling(root, user_env) if not _is_dotenv(name) and not (stray and name == lock.DVC_LOCK)
    ]
    index = origin / "rehearsal-index"
    work = {**env, "GIT_INDEX_FILE": str(index), "GIT_LITERAL_PATHSPECS": "1"}
    where = ["--git-dir", str(origin), "--work-tree", str(root)]
    staging = Git(root, work)
    add = ["add", "--force", "--pathspec-from-file=-", "--pathspec-file-nul"]
    staging.must(f"git add in {root}", *where, *add, input="\0".join(files))
    if stray and (committed := git("ls-tree", goal.commit, "--", lock.DVC_LOCK)):  # the commit's own, as it is
        mode, _kind, blob = committed.split("\t", 1)[0].split()
        staging.must(
            "git update-index", *where, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{lock.DVC_LOCK}"
        )
    tree = staging.must(f"git write-tree in {root}", *where, "write-tree")
    index.unlink()
    if tree == git.must(f"git rev-parse in {origin}", "rev-parse", f"{goal.commit}^{{tree}}"):
        return goal.commit, stray  # only ignored files (or dvc.lock) changed: the commit is all the runner would see
    subject = "Uncommitted changes (a rehearsal's temporary commit)"
    commit = git.must(f"git commit-tree in {origin}", "commit-tree", tree, "-p", goal.commit, "-m", subject)
    git.must(f"git update-ref in {origin}", "update-ref", f"refs/heads/{goal.branch}", commit, goal.commit)
    return commit, stray


def make_tag(
    origin: Path, commit: str, branch: str, prefix: str, env: Mapping[str, str], runner_class: str | None = None
) -> str:
    """Tag `commit` in `origin` as `invoke tag-run` would: its name and its annotation (the branch, the class)."""
    tag = run_tag.name(prefix, branch, datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    launch = record.Launch(f"Run {tag} (a rehearsal: nox -s workflow)", branch, runner=runner_class)
    message = record.annotation(launch)
    cmd = ["tag", "--annotate", "--cleanup=verbatim", "--file=-", tag, commit]
    Git(origin, env).must(f"git tag in {origin}", *cmd, input=message)
    return tag


def refs(repo: Path, env: Mapping[str, str]) -> dict[str, str]:
    out = Git(repo, env).must(f"git for-each-ref in {repo}", "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def dvc_remote_url(repo: Path) -> tuple[str, str]:
    """The bucket and prefix of the default DVC remote that `.dvc/config` names (s3://bucket/prefix)."""
    from configobj import ConfigObj  # DVC's own config reader

    config = ConfigObj(str(repo / ".dvc" / "config"))
    name = config.get("core", {}).get("remote")
    url = config.get(f'remote "{name}"', {}).get("url", "") if name else ""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", url)
    if not match:
        raise Refused(
            f".dvc/config names no s3:// default remote ({url or 'none'}) — the rehearsal stands in an S3 "
            "server for it: set one with `dvc remote add -d storage s3://BUCKET/PREFIX`."
        )
    return match.group(1), match.group(2).strip("/")


def github_repository(root: Path, env: Mapping[str, str]) -> str:
    """owner/name of the GitHub repository behind `origin`, else a stand-in (only the CI-Run link shows it)."""
    url = ci.workflow_page(Git(root, env)("remote", "get-url", "origin"), "x")
    match = re.match(r"https://github\.com/([^/]+/[^/]+)/actions/", url or "")
    return match.group(1) if match else f"local/{run_tag.slug(root.name)}"


# -- what the run produced -----------------------------------------------------------------------------------------


def show(entry: dict) -> None:
    """Print one of act's log entries as the runner's log shows it (the job summary is rendered at the end)."""
    if entry.get("command") == "summary":
        return
    if "raw" in entry:
        text = entry["raw"]
    elif entry.get("raw_output"):
        text = "\n".join(f"  | {line}".rstrip() for line in str(entry.get("msg", "")).rstrip("\n").split("\n"))
    else:
        text = str(entry.get("msg", ""))
        # Host mode needs no Docker; act warns that it found none all the same.
        if text.startswith("Couldn't get a valid docker connection"):
            return
    print(text, flush=True)


def heading(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def landed(origin: Path, before: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """The branches of `origin` the run created or moved, and their new tips."""
    after = refs(origin, env)
    return {
        ref.removeprefix("refs/heads/"): sha
        for ref, sha in after.items()
        if ref.startswith("refs/heads/") and before.get(ref) != sha
    }


def results_commits(origin: Path, moved: Mapping[str, str], env: Mapping[str, str]) -> None:
    """The results commit(s) the run pushed: where each landed, subject, trailers, diff stat."""
    if not moved:
        print("No record was pushed (the log above says why).")
        return
    for branch, sha in moved.items():
        if branch.startswith(record.SIDE["failed"]):
            what, side = "Failure record", " (the workflow's last step: the job failed or was cancelled)"
        elif branch.startswith(record.SIDE_PREFIXES):
            what, side = "Results commit", " (its tag's branch could not take it: see the share step's log)"
        else:
            what, side = "Results commit", ""
        print(f"{what} {sha[:12]} on {branch}: the real run pushes it to origin/{branch}{side}.")
        fmt = "--format=%s%n%n%(trailers:unfold)"
        shown = Git(origin, env).must(f"git show in {origin}", "show", "--stat", fmt, sha)
        print(re.sub(r"\n{3,}", "\n\n", "\n".join(f"  {line}".rstrip() for line in shown.splitlines())))


def lock_outputs(origin: Path, commit: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """md5 → output path, from the dvc.lock of `commit` (a directory's md5 ends in .dir, as its object's key)."""
    text = Git(origin, env)("show", f"{commit}:{lock.DVC_LOCK}") if commit else None
    return {o.md5: o.path for o in lock.Lock(text).outputs() if o.md5}


def pushed_objects(s3: services.S3Server, bucket: str, prefix: str, outputs: Mapping[str, str]) -> None:
    """The objects `dvc push` left in the DVC remote, each named after the output it holds."""
    keys = s3.keys(bucket, f"{prefix}/" if prefix else "")
    print(f"Pushed to s3://{bucket}/{prefix}: {len(keys)} object{'s' * (len(keys) != 1)}.")
    for key in keys[:SHOWN]:
        name = key.removeprefix(f"{prefix}/")
        md5 = "".join(name.split("/")[2:4]) if name.startswith("files/md5/") else ""
        what = outputs.get(md5) or ("run cache" if name.startswith("runs/") else "")
        print(f"  {name:<50} {what}".rstrip())
    if len(keys) > SHOWN:
        print(f"  … and {len(keys) - SHOWN} more")
    artifacts = s3.keys(services.MLFLOW_ARTIFACT_BUCKET)
    print(f"MLflow artifacts in s3://{services.MLFLOW_ARTIFACT_BUCKET}: {len(artifacts)} object(s).")


def mlflow_runs(server: services.MlflowServer, tag: str, keep: bool) -> None:
    """The MLflow runs the run's stages made, with links to them."""
    client = server.client()
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    runs = client.search_runs(list(experiments), f"tags.run_tag = '{tag}'") if experiments else []
    if not runs:
        print("No MLflow run carries this tag (stages restored from the run cache log none).")
        return
    for found in runs:
        info, data = found.info, found.data
        record = {"tracking_uri": server.url, "experiment_id": info.experiment_id, "run_id": info.run_id}
        metrics = ", ".join(f"{k}={v:g}" for k, v in sorted(data.metrics.items()))
        print(f"MLflow ({data.tags.get('stage', '?')}, {experiments[info.experiment_id]}, {info.status}): "
              f"{report.run_link(record)}{f'  {metrics}' if metrics else ''}")  # fmt: skip
    if not keep:
        print("(The links work while the services run: rehearse with --keep to browse them.)")


def job_summary(markdown: str) -> None:
    """The job summary as GitHub would show it, rendered for the terminal."""
    if not markdown.strip():
        print("The job wrote no summary.")
        return
    from rich.console import Console
    from rich.markdown import Markdown

    # A terminal is as wide as it is; a log file gets room for a summary's wide metrics table.
    Console(width=None if sys.stdout.isatty() else 200).print(Markdown(markdown))


# -- the rehearsal --------------------------------------------------------------------------------------------------


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """This process's environment replaced by `env` (the MLflow and S3 clients read it), and restored."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class Rehearsal:
    """A rehearsal's throwaway origin, the tag made in it, and the runner's clone at that tag."""

    origin: Path
    commit: str
    tag: str
    runner: Path
    stray_lock: str | None = None  # a dvc.lock left out, and how tag-run would have it dropped


def prepare(
    base: Path,
    root: Path,
    goal: Target,
    prefix: str,
    user_env: Mapping[str, str],
    env: dict[str, str],
    runner_class: str | None = None,
) -> Rehearsal:
    """Clone this repository as a throwaway origin, tag the commit there as tag-run would, clone it for the runner."""
    origin = services.bare_origin(base / "origin.git", source=root, env=env)
    # The temporary commit and the tag are yours, as they would be after `git commit` and `invoke tag-run`.
    me = {
        "NAME": Git(root, user_env)("config", "user.name") or "nox -s workflow",
        "EMAIL": Git(root, user_env)("config", "user.email") or "rehearsal@localhost",
    }
    env = {**env, **{f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER") for key, value in me.items()}}
    commit, stray_lock = rehearsed_commit(origin, root, goal, user_env, env)
    tag = make_tag(origin, commit, goal.branch, prefix, env, runner_class)
    runner_clone = base / "runner"
    Git(base, env).must(f"git clone in {base}", "clone", "--quiet", str(origin), str(runner_clone))
    Git(runner_clone, env).must(
        f"git checkout in {runner_clone}", "checkout", "--quiet", "--detach", f"refs/tags/{tag}"
    )
    return Rehearsal(origin, commit, tag, runner_clone, stray_lock)


def announce(rehearsal: Rehearsal, goal: Target, env: Mapping[str, str]) -> None:
    """Say what is rehearsed, and which uncommitted changes travel with it."""
    commit, origin = rehearsal.commit, rehearsal.origin
    heading(f"Rehearsing {commit[:12]} of {goal.branch} as {rehearsal.tag}")
    if commit != goal.commit:
        diff = ["diff", "--name-status", goal.commit, commit]
        changed = Git(origin, env).must(f"git diff in {origin}", *diff).splitlines()
        print(
            f"Your uncommitted changes are rehearsed as temporary commit {commit[:12]} on {goal.commit[:12]}, made "
            f"in the throwaway origin only ({len(changed)} file(s); .env and ignored files never travel):"
        )
        print("\n".join(f"  {line}" for line in changed[:SHOWN]))
    if rehearsal.stray_lock:
        print(
            f"{lock.DVC_LOCK} is left out (the commit's own is rehearsed): a local `invoke repro` changed it, and the "
            f"runner makes its own from the commit. Before `invoke tag-run`, {rehearsal.stray_lock}."
        )


def runner_settings(s3: services.S3Server, mlflow: services.MlflowServer) -> tuple[dict[str, str], dict[str, str]]:
    """The secrets and repository variables the workflow reads (ci.SETTINGS), all naming throwaway services."""
    values = {
        "MLFLOW_URL": mlflow.url,
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "ACCESS_TOKEN": f"rehearsal-{token_hex(8)}",  # origin is a local path: no token is checked
    }
    found: dict[str, dict[str, str]] = {"secret": {}, "repository variable": {}}
    for name, where in ci.SETTINGS.items():
        kind, _, setting = where.rpartition(" ")
        found[kind][setting] = values.get(name, "")  # a setting unknown here: the job names it as missing
    return found["secret"], found["repository variable"]


def routing(result: ActRun) -> None:
    """Where the route job sent the run, as its outputs say."""
    chosen = result.outputs.get("route", {})
    if "labels" in chosen:
        print(f"The route job sent the run to runner class {chosen.get('class', '?')}: runs-on {chosen['labels']}.")


def verdict(result: ActRun) -> int:
    """Say how the job ended; 0 when it succeeded."""
    if result.returncode == 0 and result.job_result == "success":
        print("\nThe job succeeded: push the commit and `invoke tag-run` to run it for real.")
        return 0
    sys.stdout.flush()  # the verdict comes last, after everything printed so far
    if result.skipped:
        job, labels = next(iter(result.skipped.items()))
        print(
            f"\nJob {job!r} asked for runner labels {labels}, which no runner here has (act skipped it) — the route "
            "job's output does not match the class's labels in invoke.yaml.",
            file=sys.stderr,
        )
    elif step := result.failed_step:
        print(f"\nThe job failed at step {step!r} (its log is above) — fix it and rehearse again.", file=sys.stderr)
    else:
        print(f"\nact failed before a step ran (exit {result.returncode}; its message is above).", file=sys.stderr)
    return 1


def rehearse(ref: str | None, keep: bool, runner_class: str | None = None) -> int:
    """Run the workflow for this checkout (or REF) against throwaway services; 0 when the job succeeds."""
    workflow = Path(project.WORKFLOW)
    root, user_env = environment.ROOT, dict(os.environ)
    find_act(os.pathsep.join([str(BIN), user_env.get("PATH", "")]))
    goal = target(root, ref, user_env)
    repository = github_repository(root, user_env)
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp, ExitStack() as stack:
        base = Path(tmp)
        env = services.isolated(user_env, base / "env")
        stack.enter_context(_environment(env))
        rehearsal = prepare(base, root, goal, project.tag_prefix(), user_env, env, runner_class)
        if runner_class:  # the class is checked against the rehearsed commit's table, as its route job would
            runner_classes.read(rehearsal.runner).labels(runner_class)
        routed = routed_labels(rehearsal.runner, rehearsal.tag, env)
        host_labels(yaml.safe_load((rehearsal.runner / workflow).read_text()) or {}, str(workflow), routed)
        bucket, prefix = dvc_remote_url(rehearsal.runner)
        announce(rehearsal, goal, env)

        print("Starting throwaway services on 127.0.0.1 (moto S3, MLflow) …", flush=True)
        s3 = stack.enter_context(services.s3_server(base / "moto", env))
        s3.ensure_bucket(bucket)
        mlflow = stack.enter_context(services.mlflow_server(base / "mlflow", env, s3))
        print(f"  origin  {rehearsal.origin}\n  S3      {s3.endpoint_url} (bucket {bucket})\n  MLflow  {mlflow.url}")
        runner_env = {"GITHUB_REPOSITORY": repository, "GITHUB_RUN_ID": RUN_ID, "GITHUB_SERVER_URL": SERVER_URL}
        # The venvs of the locks are kept where `nox -s reproduce` keeps them (installed once); DVC's cache is the
        # act runner's own, thrown away with it.
        runner_env[runner_cache.VENVS_ENV] = str(runner_cache.venvs(user_env))
        act = Act(base / "act", workflow, *runner_settings(s3, mlflow), runner_env, environ=user_env)
        before = refs(rehearsal.origin, env)

        heading(f"The runner's log (act, {workflow})")
        result = act.run(rehearsal.runner, rehearsal.tag, on_entry=show, timeout=None)

        heading("What the real run would have produced")
        routing(result)
        moved = landed(rehearsal.origin, before, env)
        results_commits(rehearsal.origin, moved, env)
        outputs = lock_outputs(rehearsal.origin, next(iter(moved.values()), None), env)
        pushed_objects(s3, bucket, prefix, outputs)
        mlflow_runs(mlflow, rehearsal.tag, keep)
        heading("Job summary")
        job_summary(result.summary)
        code = verdict(result)
        if keep:
            print(f"\nKeeping the services and {base} until Ctrl-C (MLflow: {mlflow.url}).", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("Stopping the services.")
        return code


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C or SIGTERM: unwind, stopping every service; a second signal must not cut that short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s workflow --",
        description="Rehearse the tag-triggered workflow on this machine, with act, against throwaway services.",
    )
    parser.add_argument("--ref", help="the branch, tag or commit to rehearse (default: HEAD and uncommitted changes)")
    parser.add_argument("--keep", action="store_true", help="keep the services running until Ctrl-C, to browse them")
    parser.add_argument("--runner", help="the runner class to send the run to (invoke.yaml's runloop.runners)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return rehearse(args.ref, args.keep, args.runner)
    except Refused as exc:
        message, code = str(exc), 1
    except services.ServiceError as exc:
        message, code = f"A throwaway service did not start — {exc}", 1
    except KeyboardInterrupt:
        message, code = "Interrupted: the services are stopped and nothing was kept.", 130
    sys.stdout.flush()  # the message comes last, after everything printed so far
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
