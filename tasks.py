"""The run loop: tag a commit, reproduce the pipeline on the runner, record and push its outcome.

    invoke tag-run   tag HEAD as a run and push only that tag; the tag starts the workflow on the runner
                     (--set KEY=VALUES: a sweep, one run per combination of values, on the runner pool)
    invoke repro     (on the runner) run the DVC pipeline; the stages log to MLflow
    invoke share     (on the runner) push the data, commit dvc.lock as "<subject>-results" and push the commit
    invoke init      (once) make a clone of the template your project: its name everywhere, a pipeline skeleton
    invoke runs      the runs and how they ended; one run's whole chain (--run); which run made a file (--find)
    invoke compare   two runs' params and metrics side by side (DVC's own diffs)
    invoke promote   point an MLflow alias (champion) at the model version a run made: models:/<name>@champion
    invoke watch     follow runs (or a sweep's legs) until they end
    invoke gc        delete the data of runs the retention policy does not keep (default: only say what would go)

`nox -s reproduce` recomputes a past run in isolation (src/runloop/reproduction.py); a run that fails on the runner
is recorded by the workflow's last step (src/runloop/failure.py), which needs nothing installed.

Each task reads as its steps; the plumbing they share lives in src/runloop/, whose refusals (refusal.Refused)
invoke prints as one line. Every value that comes from outside (tag and branch names, commit subjects, URLs)
reaches a command as an argument, never as shell text. Nothing here force-pushes, and data always goes out before
the git ref that points at it.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import invoke
from invoke import Context, Exit, Task

# invoke turns bytecode caching off (so that tasks.py leaves no .pyc); the package below is imported by every
# command, and compiling it from source each time cost 40 ms of `invoke --list`'s 160. Cache it in __pycache__/
# (ignored by git and by DVC, whose stage deps are files) unless the user asked Python not to (-B or
# PYTHONDONTWRITEBYTECODE).
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

from src.runloop import (  # noqa: E402  (after the bytecode switch, on purpose)
    checks,
    ci,
    comparison,
    dvc_locks,
    dvc_remote,
    dvc_repo,
    environment,
    follow,
    pipeline,
    processes,
    project,
    pull_request,
    push_credential,
    record,
    registry,
    report,
    results,
    retention,
    run_tag,
    runner,
    runner_cache,
    runner_classes,
    step_log,
    sweep,
    tracking,
)
from src.runloop.git import Git  # noqa: E402
from src.runloop.refusal import Refused  # noqa: E402
from src.runloop.runs import Runs, as_json, needle  # noqa: E402

# Lines in the order they happen, in a CI log or a pipe too: a refusal (invoke's Exit) goes to stderr, which is
# unbuffered, after whatever the task printed to stdout.
if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)

# Run tags are "run-<the project's name>-…", the name being invoke.yaml's (`invoke init NAME` sets it there and in
# every file that repeats it); the workflow runs for tags that match TAG_PREFIX + "*".
TAG_PREFIX = project.tag_prefix()
WORKFLOW = Path(project.WORKFLOW)


class _Task(Task):
    """invoke's Task, saying the package's refusals as invoke's Exit: one line, its exit status, no traceback."""

    def __call__(self, *args, **kwargs):
        processes.die_with_parent()  # killed with its parent (a cancelled CI step), it stops what it started
        try:
            return super().__call__(*args, **kwargs)
        except Refused as exc:
            raise Exit(str(exc), code=exc.code) from None


def task(*args, **kwargs):
    return invoke.task(*args, klass=_Task, **kwargs)


def _runs(remote: str, fetch: bool = False, doing: str = "") -> Runs:
    """The runs on `remote`, this command's one view of them; fetched first when asked (or said why not)."""
    runs = Runs(remote, TAG_PREFIX)
    if fetch:
        runs.fetch_or_say(doing)
    return runs


@task(
    help={
        "pull": "Pull cached results from the DVC remote when one is configured (--no-pull: never).",
        "force": "Re-run every stage, even those DVC considers up to date.",
        "dry_run": "Print what would run and where results would go, and change nothing.",
    }
)
def repro(c: Context, pull: bool = True, force: bool = False, dry_run: bool = False) -> None:
    """Run the DVC pipeline (stages log to MLflow) and say where the results are."""
    runner.at_root()
    env = runner.pipeline_environment()
    if tag := run_tag.at_head(Git(), env, TAG_PREFIX):  # the launch the stages' MLflow runs record
        env[environment.RUN_TAG_ENV] = tag
    if url := ci.run_url(env):
        env[environment.RUN_CI_URL_ENV] = url
    env.update(tracking.runner_variables(ci.runner(env)))  # on CI: the runner, its class and labels, for MLflow
    remote = pull and dvc_remote.configured(env)
    # Settings, files, Python and packages, then the DVC remote and MLflow: a failure stops here, before any stage.
    env.update(checks.before_repro(env, remote, network=not dry_run))
    flags = [*(["--pull"] if remote else []), *(["--force"] if force else [])]
    print(f"$ {shlex.join(['dvc', 'repro', *flags])}", flush=True)
    if dry_run:
        where = "pull from the DVC remote" if remote else "use no DVC remote"
        print(f"Would log to MLflow at {environment.redact(env['MLFLOW_TRACKING_URI'])} and {where}.")
        return
    if remote:
        dvc_remote.configure(env)
    runner_cache.configure_dvc(env)  # on a runner: DVC's cache kept between jobs, outside the workspace
    dvc_locks.clear_stale(environment.ROOT)  # what a killed DVC left: cleared, saying so; a live holder named
    with tempfile.TemporaryDirectory(prefix="repro-") as tmp:
        # One DVC process runs the pipeline and reads the metrics (and, if dvc.lock changed, DVC's status).
        report_file = Path(tmp) / "outcome.json"
        try:
            pipeline.reproduce(flags, env, report_file)  # a signal stops it
        finally:
            outcome = pipeline.read_outcome(report_file)
            step_log.note_stages(env, outcome.failed)  # on CI, for the failure record
    checks.after_repro(outcome.status)
    report.results(env, remote, outcome.metrics_table, outcome.metric_lines)
    if not (remote or ci.on_ci(env)):
        pipeline.keep_committed_lock(Git())  # reproduced here without the remote: only the run records are new


@task(
    iterable=["set_"],
    help={
        "name": "A label to add to the generated tag name (letters, digits, '.', '_', '-'); with --set, the sweep's.",
        "message": "The tag's annotation: what this run is for.",
        "remote": "The git remote the runner watches.",
        "set_": "KEY=VALUES: a run with params.yaml's KEY set to each value (a value, a comma list, range(start, stop, "
        "step)); repeat for the Cartesian product. Each leg is a commit of its own, tagged and pushed alone.",
        "max_legs": f"Refuse a sweep of more legs than this (default {sweep.MAX_LEGS}).",
        "runner_": "The runner class to run on (invoke.yaml's runloop.runners; default: its default class).",
        "allow_non_finite": "Let --set give a float param .nan, .inf or -.inf (refused otherwise: a stage rarely means "
        "one).",
        "wait": "Then follow the run(s) until they end, as `invoke watch` does.",
        "timeout": "With --wait: give up after this many seconds (exit 2).",
        "dry_run": "Print what would be done and change nothing.",
    },
)
def tag_run(
    c: Context,
    name: str = "",
    message: str = "",
    remote: str = "origin",
    set_: list[str] | None = None,
    max_legs: int = sweep.MAX_LEGS,
    runner_: str = "",
    allow_non_finite: bool = False,
    wait: bool = False,
    timeout: float = follow.TIMEOUT,
    dry_run: bool = False,
) -> None:
    """Tag HEAD as a run and push only that tag, which starts the pipeline on the runner (--set: a sweep)."""
    runner.at_root()
    runs = _runs(remote)
    run_tag.check_label(name)
    runner_class = runner_classes.read(environment.ROOT).check(runner_)  # recorded; the route job maps it to labels
    branch, commit, remote_url = run_tag.check_head_is_pushed(runs.git, remote)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if set_:
        tags = sweep.tag_legs(
            runs,
            set_,
            name,
            message,
            branch,
            commit,
            stamp,
            max_legs,
            runner_class,
            dry_run=dry_run,
            allow_non_finite=allow_non_finite,
        )
    else:
        tags = [run_tag.name(TAG_PREFIX, branch, stamp, name)]
        run_tag.check_new(runs.git, tags[0], remote)
        if dry_run:
            print(
                f"Would tag {commit} ({branch}) as {tags[0]} and push only that tag to {remote} (runner class "
                f"{runner_class})."
            )
        else:
            launch = record.Launch(message or f"Run {tags[0]}", branch, runner=runner_class)
            run_tag.create_and_push(runs.git, tags[0], launch, remote)
            print(f"Tagged {commit} ({branch}) as {tags[0]} and pushed it to {remote} (runner class {runner_class}).")
    if dry_run:
        return
    url = ci.workflow_page(remote_url, WORKFLOW.name)
    print(f"Watch the run: {url}" if url else f"The runner watching {remote} picks it up ({WORKFLOW}).")
    if wait:
        _follow(runs, tags, "", timeout, follow.INTERVAL)


@task(
    help={
        "tag": "The run's tag (default: on CI the pushed tag; locally the newest run tag at HEAD).",
        "branch": "The branch the results go to (default: the one the tag names, or the only one that fits).",
        "remote": "The git remote to push to.",
        "dry_run": "Print the plan and change nothing.",
    }
)
def share(c: Context, tag: str = "", branch: str = "", remote: str = "origin", dry_run: bool = False) -> None:
    """Push the run's data, then commit dvc.lock as '<subject>-results' and push it to the tag's branch."""
    runner.at_root()
    auth = push_credential.git_auth(push_credential.withhold())  # for git's fetch and push alone, never DVC's
    described = results.describe_meanwhile()  # the runner's Python, OS, BLAS and GPUs, for the record
    env = runner.pipeline_environment()
    runner.require_ci_settings(env)
    runs = _runs(remote)
    tag = results.tag_to_share(runs.git, env, tag, TAG_PREFIX)
    if not dry_run:
        dvc_remote.configure(env)  # the remote's endpoint in .dvc/config.local, before DVC reads its config, once
        runner_cache.configure_dvc(env)
        dvc_locks.clear_stale(environment.ROOT)
    stopped = "run it again in this clone to finish; no ref points at missing data"
    with processes.stop_cleanly("invoke share", stopped), dvc_repo.opened(locked=True) as dvc:
        if not dry_run:
            results.fetch(runs, auth, tag)
        plan = results.plan(runs, dvc, env, tag, branch, described())
        if dry_run:
            print(plan.text(remote))
            return

        # The data goes first, whatever happens next: once it is on the remote nothing of the run can be lost.
        results.push_data(dvc)
        landing = results.record_and_push(runs, auth, env, plan)
        review = pull_request.comment(runs, dvc, env, plan.outcome, landing)  # never fails the run
        report.summary(env, dvc, plan.outcome, landing, review)
    retention.prune_runner_cache(runs, env)  # on a runner: its DVC cache under invoke.yaml's bound, now nothing is lost


# -- Checking a machine -------------------------------------------------------------------------------------------


@task(
    help={
        "json": "Print the rows as JSON (a list of {check, status, detail, fix}) for scripts.",
        "on_runner": "Check as on the CI runner: every variable and secret the workflow passes must be set.",
        "remote": "The git remote `invoke share` pushes to.",
        "dry_run": "Make only the checks that contact nothing (no S3, MLflow or git remote).",
    }
)
def doctor(
    c: Context, json: bool = False, on_runner: bool = False, remote: str = "origin", dry_run: bool = False
) -> None:
    """Check this machine can run and share the pipeline: one row per check (ok / failed: why / fix)."""
    runner.at_root()
    env = runner.pipeline_environment(strict=False)  # an unreadable .env is a row of its own
    rows = checks.doctor(env, on_runner or ci.on_ci(env), remote, network=not dry_run)
    if json:
        import json as json_

        print(json_.dumps([row._asdict() for row in rows], indent=2))
    else:
        print(checks.table(rows))
    if failed := [row.check for row in rows if row.status == checks.FAILED]:
        raise Exit(f"{len(failed)} check(s) failed: {', '.join(failed)} — apply the fixes above.", code=1)


# -- Looking back: past runs --------------------------------------------------------------------------------------


@task(
    help={
        "run": "Show this run's whole chain: a run tag or a results commit.",
        "branch": "Only the runs of this branch.",
        "limit": "Show at most this many runs, newest first (0: all).",
        "json": "Print JSON instead of a table.",
        "fetch": "Fetch the remote's tags and branches first (--no-fetch: use what this clone has).",
        "find": "Which run(s) made this: an output file, a content hash (md5) or an MLflow run id.",
        "sweep": "A sweep (its name, or the label tag-run gave it): its legs' params against their metrics.",
        "sort": "With --sweep: the metric to rank the legs by (`key` or `file:key`; default: the headline metric).",
        "ascending": "With --sweep: lower is better (a loss, an error).",
        "remote": "The git remote the runs are on.",
    }
)
def runs(
    c: Context,
    run: str = "",
    branch: str = "",
    limit: int = 20,
    json: bool = False,
    fetch: bool = True,
    find: str = "",
    sweep: str = "",
    sort: str = "",
    ascending: bool = False,
    remote: str = "origin",
) -> None:
    """List the runs, newest first, with how they ended; or one run's whole chain (--run), or what made a file."""
    runner.at_root()
    env = runner.pipeline_environment()
    known = _runs(remote, fetch, "showing")
    if sweep:
        print(_sweep_table(known, sweep, sort, ascending, json))
        return
    if run:
        chosen = known.resolve(run)
        dvc_remote.configure(env)  # the chain says which outputs the remote holds
        print(as_json([chosen]) if json else report.chain(known, env, chosen))
        if not json:  # MLflow asked only here, with a short timeout: the listing below stays git-only
            print(f"\n{registry.section(known, env, chosen)}")
        return
    listed = known.all
    if find:
        hits = known.find(looked_for := needle(find))
        if not hits:
            raise Exit(f"No run's results record {find} ({looked_for}) — no shared run made it (a local repro?).")
        listed = [r for r, _ in hits]
        if not json:
            print("\n".join(f"{r.tag}  results {r.results[:12]} on {r.where}: {why}" for r, why in hits))
            return
    listed = known.of_branch(branch, listed) if branch else listed
    listed = listed[:limit] if limit > 0 else listed
    print(as_json(listed) if json else report.runs_table(listed, env))


def _sweep_table(runs: Runs, name: str, sort: str, ascending: bool, json: bool) -> str:
    """`runs --sweep`: the legs' params against their metrics, and how to adopt the best leg."""
    stem, legs = sweep.named(runs.all, name)
    if json:
        return as_json([leg.run for leg in legs])
    text, best = sweep.table(stem, legs, sort, ascending)
    return text + (f"\n\n{sweep.adopt(runs.git, best, runs.remote)}" if best else "")


@task(
    help={
        "a": "The run to look at: a run tag or results commit (default: the current branch's newest run with results).",
        "b": "The run to compare it with (default: the run before A on its branch; for a sweep's leg, its base; for "
        "a branch's first run, the newest run of the branch it was forked from).",
        "workspace": "Hold the working copy (after a local `invoke repro`) against run B (default: the branch's "
        "newest run with results), before you tag it.",
        "md": "Print Markdown tables.",
        "plots": "Also render both runs' plots into this directory (DVC's plots diff, an HTML page).",
        "fetch": "Fetch the remote's tags and branches first (--no-fetch: use what this clone has).",
        "remote": "The git remote the runs are on.",
    }
)
def compare(
    c: Context,
    a: str = "",
    b: str = "",
    workspace: bool = False,
    md: bool = False,
    plots: str = "",
    fetch: bool = True,
    remote: str = "origin",
) -> None:
    """Compare two runs' params and metrics with DVC's diffs (default: the branch's newest run and the one before)."""
    runner.at_root()
    env = runner.pipeline_environment()
    runs = _runs(remote, fetch, "comparing")
    if workspace:
        old, new, shown = runs.with_results(b), None, "workspace = this working copy (its last `invoke repro`)"
    else:
        new = runs.with_results(a)
        old = runs.with_results(b) if b else runs.base_of(new) or runs.previous(new) or runs.forked_from(new)
        shown = f"{comparison.rev(new)} = {new.tag}"
    if old is None:
        raise Exit(
            f"No run before {new.tag} on {new.branch} or the branch it came from has results — name one: -b RUN."
        )
    dvc_remote.configure(env)
    with dvc_repo.opened() as dvc:
        failed = comparison.fetch(dvc, [r.results for r in (old, new) if r])  # metric and plot files are DVC outputs
        text = comparison.text(runs.git, dvc, comparison.rev(old), new and comparison.rev(new), md)
    print(f"{comparison.rev(old)} = {old.tag}\n{shown}\n")
    print(
        text
        + (f"(Fetching their metric and plot files failed: {failed})" if failed and comparison.MISSING in text else "")
    )
    if plots:
        if error := comparison.plots(env, comparison.rev(old), new and comparison.rev(new), plots):
            raise Exit(f"DVC could not render the plots ({error}) — check the plots dvc.yaml declares.")
        print(f"Plots of both runs: {Path(plots).resolve() / 'index.html'}")


# -- Starting your project from the template -----------------------------------------------------------------------


@task(
    help={
        "name": "The project's name: 2-32 lowercase letters, digits and dashes (run tags become run-<name>-…).",
        "keep_example": "Keep the example pipeline and only rename (default: replace it with a one-stage skeleton).",
        "dry_run": "Print every change and the commit it would make, and change nothing.",
    }
)
def init(c: Context, name: str, keep_example: bool = False, dry_run: bool = False) -> None:
    """Make this clone your project NAME: the name everywhere, the example replaced by a skeleton, one commit."""
    runner.at_root()
    git = Git()
    project.check_name(name)
    project.check_can_commit(git)
    changes = project.plan(git, name, keep_example)
    if not changes:
        raise Exit(f"This clone is project {name} already: nothing to change.", code=0)
    text = project.message(name, changes)
    if dry_run:
        print(f"Would commit on {git.branch() or 'HEAD'}:\n")
        print("".join(f"   {line}\n" if line else "\n" for line in text.splitlines()))
        print("Nothing was changed (--dry-run).")
        return
    commit = project.apply(git, changes, text)
    print(project.next_steps(git, name, commit, keep_example))


# -- Models: from a run to the registry's alias --------------------------------------------------------------------


@task(
    help={
        "run": "The run whose model to promote: a run tag or results commit (default: the current branch's newest "
        "run with results).",
        "alias": "The MLflow alias to point at the run's model version: deployments load models:/<name>@<alias>.",
        "fetch": "Fetch the remote's tags and branches first (--no-fetch: use what this clone has).",
        "remote": "The git remote the runs are on.",
        "dry_run": "Say which version would get the alias, and change nothing.",
    }
)
def promote(
    c: Context,
    run: str = "",
    alias: str = registry.DEFAULT_ALIAS,
    fetch: bool = True,
    remote: str = "origin",
    dry_run: bool = False,
) -> None:
    """Point an MLflow alias (default champion) at the model version a run made, and print its models:/ URI."""
    runner.at_root()
    env = runner.pipeline_environment()
    registry.check_alias(alias)
    runs = _runs(remote, fetch, "using")
    # Its results commit names the MLflow runs that made its outputs, the model's too when train was restored.
    chosen = runs.with_results(run, say=lambda text: print(f"{text}."))
    client = registry.connect(env)  # a short-timeout check first: no four minutes of MLflow's retries
    versions = registry.produced(client, chosen, runs.git, env)
    with registry.speaking(env):
        for version in versions:
            held_by = registry.previous_holder(client, version.name, alias)
            what = (
                f"{version.name} version {version.version} (MLflow run {version.run_id}; results "
                f"{chosen.results[:12]} on {chosen.where})"
            )
            if dry_run:
                print(f"Would point alias {alias!r} at {what}; it is on {_version(held_by)} now.")
                continue
            registry.promote(client, version, alias, chosen)  # tags the version with its results commit first
            print(f"Alias {alias!r} now points at {what}; it was on {_version(held_by)}.")
    if not dry_run:
        print("\n".join(registry.uri(v.name, alias) for v in versions))  # last: what a deployment loads


def _version(number: str | None) -> str:
    return f"version {number}" if number else "no version"


# -- Following runs -------------------------------------------------------------------------------------------------


@task(
    iterable=["run"],
    help={
        "run": "A run to follow (its tag); repeat for several. Default: the branch's newest run, or its sweep's legs.",
        "sweep": "Follow every leg of this sweep (its name, or the label tag-run gave it).",
        "timeout": f"Give up after this many seconds (exit 2; default {follow.TIMEOUT:g}).",
        "interval": f"Seconds between two looks at the remote and GitHub's API (default {follow.INTERVAL:g}).",
        "remote": "The git remote the results are pushed to.",
    },
)
def watch(
    c: Context,
    run: list[str] | None = None,
    sweep: str = "",
    timeout: float = follow.TIMEOUT,
    interval: float = follow.INTERVAL,
    remote: str = "origin",
) -> None:
    """Follow runs until they end: a status line each, then their metrics (exit 0 results, 1 failed, 2 not ended)."""
    runner.at_root()
    _follow(_runs(remote), run or [], sweep, timeout, interval)


def _follow(runs: Runs, specs: list[str], sweep_name: str, timeout: float, interval: float) -> None:
    """Exit 0 once every run has results (printing them), 1 at a failure, 2 at the timeout or for no run."""
    env = runner.pipeline_environment()  # GH_TOKEN may come from .env
    runs.fetch_or_say("following")
    try:
        tags = [r.tag for r in follow.chosen(runs, specs, sweep_name)]
    except Refused as exc:
        raise Exit(str(exc), code=follow.TIMED_OUT) from None
    code, said = follow.follow(runs, tags, timeout, interval, env)
    if code != follow.LANDED:
        raise Exit(said, code=code)
    print(f"\n{follow.outcome(runs, tags)}")


# -- Bounding storage -----------------------------------------------------------------------------------------------


@task(
    help={
        "keep_last": "Keep the N newest runs no branch or tag reaches that have results (and runs tagged since the "
        f"oldest of them; default {retention.KEEP_LAST}).",
        "keep_days": f"Keep every run tagged in the last D days (default {retention.KEEP_DAYS:g}; 0: none).",
        "apply": "Delete what goes (default: only say what stays and what would go).",
        "prefix": "The DVC remote's URL, saying it is this project's alone: gc then goes on when the remote holds "
        "newer objects no commit names (they stay).",
        "json": "Print what stays and what goes as JSON.",
        "remote": "The git remote the runs are on.",
    }
)
def gc(
    c: Context,
    keep_last: int = retention.KEEP_LAST,
    keep_days: int = retention.KEEP_DAYS,
    apply: bool = False,
    prefix: str = "",
    json: bool = False,
    remote: str = "origin",
) -> None:
    """Delete the DVC remote's and MLflow's data of runs gc does not keep (default: only say what would go)."""
    runner.at_root()
    env = runner.pipeline_environment()
    policy = retention.Policy(keep_last, keep_days)
    runs = _runs(remote)
    retention.fetch(runs)  # every branch and tag of the remote: gc never decides from a partial view
    store = retention.remote_store(env)
    client, where = retention.mlflow_store(env)  # None when no tracking server is configured: `where` says so
    with registry.speaking(env):
        plan = retention.plan(runs, store, policy, prefix, client, where)
    print(plan.as_json() if json else plan.text())
    if not apply:
        if not json:
            print("\nNothing was deleted: `invoke gc --apply` with the same options deletes what goes.")
        return
    retention.check_can_apply(plan)  # a run still going may be about to name what goes
    stopped = "run it again to finish; nothing a kept run names was deleted, and no entry names what was"
    with processes.stop_cleanly("invoke gc", stopped), registry.speaking(env):
        retention.apply(plan, store, client)
