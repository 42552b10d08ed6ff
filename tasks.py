"""The run loop: tag a commit, reproduce the pipeline on the runner, commit and push its results.

    invoke tag-run   tag HEAD as a run and push only that tag; the tag starts the workflow on the runner
                     (--set KEY=VALUES: a sweep, one run per combination of values, on the runner pool)
    invoke repro     (on the runner) run the DVC pipeline; the stages log to MLflow
    invoke share     (on the runner) push the data, commit dvc.lock as "<subject>-results", push the commit
    invoke init      (once) make a clone of the template your project: its name everywhere, a pipeline skeleton
    invoke runs      the runs and their state; one run's whole chain (--run); which run made a file (--find)
    invoke compare   two runs' params and metrics side by side (DVC's own diffs)
    invoke promote   point an MLflow alias (champion) at the model version a run made: models:/<name>@champion
    invoke watch     follow runs (or a sweep's legs) until their results are on the remote

`nox -s reproduce` recomputes a past run in isolation (src/runloop/reproduction.py).

Each task reads as its steps; the plumbing they share lives in src/runloop/. Every value that comes from outside
(tag and branch names, commit subjects, URLs) reaches a command as a quoted argument, never as shell text.
Nothing here force-pushes, and data always goes out before the git ref that points at it.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from invoke import Context, Exit, task

# invoke turns bytecode caching off (so that tasks.py leaves no .pyc); the package below is imported by every
# command, and compiling it from source each time cost 40 ms of `invoke --list`'s 160. Cache it in __pycache__/
# (ignored by git and by DVC, whose stage deps are files) unless the user asked Python not to (-B or
# PYTHONDONTWRITEBYTECODE).
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

from src.runloop import (  # noqa: E402  (after the bytecode switch, on purpose)
    checks,
    comparison,
    dvc_remote,
    dvc_repo,
    environment,
    interrupts,
    machine,
    pipeline,
    project,
    push_credential,
    registry,
    report,
    results_commit,
    run_tag,
    runner,
    tracking,
)
from src.runloop import runs as past_runs  # noqa: E402
from src.runloop import sweep as sweeps  # noqa: E402
from src.runloop import watch as watching  # noqa: E402
from src.runloop.commands import git  # noqa: E402

# Lines in the order they happen, in a CI log or a pipe too: a refusal (invoke's Exit) goes to stderr, which is
# unbuffered, after whatever the task printed to stdout.
if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)

# Run tags are "run-<the project's name>-…", the name being invoke.yaml's (`invoke init NAME` sets it there and in
# every file that repeats it); the workflow runs for tags that match TAG_PREFIX + "*".
TAG_PREFIX = project.tag_prefix()
WORKFLOW = Path(".github/workflows/github_actions_pipeline.yml")


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
    if tag := run_tag.at_head(c, env, TAG_PREFIX):
        env["RUN_TAG"] = tag
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
    with tempfile.TemporaryDirectory(prefix="repro-") as tmp:
        # One DVC process runs the pipeline and reads the metrics (and, if dvc.lock changed, DVC's status).
        report_file = Path(tmp) / "outcome.json"
        pipeline.reproduce([*pipeline.REPRO, *flags, "--report", str(report_file)], env)  # a signal stops the group
        outcome = pipeline.read_outcome(report_file)
    checks.after_repro(outcome.status)
    report.results(env, remote, outcome.metrics_table, outcome.metric_lines)
    if not (remote or runner.on_actions(env)):
        pipeline.keep_committed_lock(c)  # reproduced here without the remote: only the run records are new


@task(
    iterable=["set_"],
    help={
        "name": "A label to add to the generated tag name (letters, digits, '.', '_', '-'); with --set, the sweep's.",
        "message": "The tag's annotation: what this run is for.",
        "remote": "The git remote the runner watches.",
        "set_": "KEY=VALUES: a run with params.yaml's KEY set to each value (a value, a comma list, range(start, stop, "
        "step)); repeat for the Cartesian product. Each leg is a commit of its own, tagged and pushed alone.",
        "max_legs": f"Refuse a sweep of more legs than this (default {sweeps.MAX_LEGS}).",
        "wait": "Then follow the run(s) until their results are on the remote, as `invoke watch` does.",
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
    max_legs: int = sweeps.MAX_LEGS,
    wait: bool = False,
    timeout: float = watching.TIMEOUT,
    dry_run: bool = False,
) -> None:
    """Tag HEAD as a run and push only that tag, which starts the pipeline on the runner (--set: a sweep)."""
    runner.at_root()
    run_tag.check_label(name)
    branch, commit, remote_url = run_tag.check_head_is_pushed(c, remote)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if set_:
        tags = _tag_sweep(c, set_, name, message, remote, branch, commit, stamp, max_legs, dry_run)
    else:
        tags = [run_tag.name(TAG_PREFIX, branch, stamp, name)]
        run_tag.check_new(c, tags[0], remote)
        if dry_run:
            print(f"Would tag {commit} ({branch}) as {tags[0]} and push only that tag to {remote}.")
        else:
            run_tag.create_and_push(c, tags[0], run_tag.annotation(message or f"Run {tags[0]}", branch), remote)
            print(f"Tagged {commit} ({branch}) as {tags[0]} and pushed it to {remote}.")
    if dry_run:
        return
    url = run_tag.actions_url(remote_url, WORKFLOW.name)
    print(f"Watch the run: {url}" if url else f"The runner watching {remote} picks it up ({WORKFLOW}).")
    if wait:
        _follow(c, tags, "", remote, timeout, watching.INTERVAL)


def _tag_sweep(
    c: Context,
    sets: list[str],
    label: str,
    message: str,
    remote: str,
    branch: str,
    base: str,
    stamp: str,
    max_legs: int,
    dry_run: bool,
) -> list[str]:
    """A leg per combination of the --set values: a commit on `base` changing only params.yaml, tagged and pushed
    alone (GitHub starts no workflow for a push of more than three tags); its results go to results/<tag>."""
    try:
        specs = [sweeps.parse(text, max_legs) for text in sets]
        legs = sweeps.plan(git(c, "show", f"{base}:{sweeps.PARAMS}") or "", specs, max_legs)
    except sweeps.Refused as exc:
        raise Exit(str(exc), code=1) from None
    label = label or sweeps.DEFAULT_LABEL
    stem = run_tag.name(TAG_PREFIX, branch, stamp, label)
    tags = sweeps.tag_names(stem, len(legs))
    if taken := sweeps.taken(c, tags, remote):
        raise Exit(f"Tag {taken[0]!r} already exists — wait a second or pass another --name.", code=1)
    if not sweeps.has_run(c, past_runs.listed(c, TAG_PREFIX, remote), base):
        print(sweeps.COLD.format(base=base[:12]))
    if dry_run:
        print(f"Would make sweep {stem}: {len(legs)} leg(s) on {base[:12]} ({branch}), each a commit that changes only")
        print(f"{sweeps.PARAMS}, its tag pushed alone to {remote}:")
        print("\n".join(f"  {tag}  {leg.label}" for leg, tag in zip(legs, tags, strict=True)))
        return tags
    pushed: list[str] = []
    for leg, tag in zip(legs, tags, strict=True):
        made = sweeps.commit(c, base, leg, sweeps.message(leg, label))
        about = message or f"Leg {leg.number}/{leg.count} of sweep {stem}"
        text = run_tag.annotation(about, branch, sweeps.trailers(stem, leg))
        try:
            run_tag.create_and_push(c, tag, text, remote, made)
        except Exit as exc:
            rest = "; ".join(later.label for later in legs[leg.number - 1 :])
            left = f" Legs pushed (they run): {', '.join(pushed)}. Not made: {rest}." if pushed else ""
            raise Exit(f"{exc.message}{left}", code=1) from None
        pushed.append(tag)
        print(f"Tagged {made} (leg {leg.number}/{leg.count}: {leg.label}) as {tag} and pushed it to {remote}.")
    print(f"Each leg's results go to results/<its tag>; compare the legs: invoke runs --sweep {stem}")
    return tags


@task(
    help={
        "tag": "The run's tag (default: on GitHub Actions the pushed tag; locally the newest run tag at HEAD).",
        "branch": "The branch the results go to (default: the one the tag names, or the only one that fits).",
        "remote": "The git remote to push to.",
        "dry_run": "Print the plan and change nothing.",
    }
)
def share(c: Context, tag: str = "", branch: str = "", remote: str = "origin", dry_run: bool = False) -> None:
    """Push the run's data, then commit dvc.lock as '<subject>-results' and push it to the tag's branch."""
    runner.at_root()
    auth = push_credential.git_auth(push_credential.withhold())  # for git's fetch and push alone, never DVC's
    described = machine.describe_meanwhile()  # the runner's Python, OS and BLAS, for the results commit
    env = runner.pipeline_environment()
    if runner.on_actions(env):
        runner.require_ci_settings(env)
    tag = tag or run_tag.at_head(c, env, TAG_PREFIX) or ""
    if not tag:
        raise Exit("No run tag — pass --tag NAME (on GitHub Actions it comes from GITHUB_REF).", code=1)
    if not dry_run:
        dvc_remote.configure(env)  # the remote's endpoint in .dvc/config.local, before DVC reads its config, once
    stopped = "run it again in this clone to finish; no ref points at missing data"
    with interrupts.stop_cleanly("invoke share", stopped), dvc_repo.opened(locked=True) as dvc:
        if not dry_run:
            results_commit.fetch(c, auth, remote, tag)
        commit = _check_shareable(c, env, tag, remote)
        existing = results_commit.existing(c, remote, tag, commit)
        target, unclear = (None, "") if existing else results_commit.pick_branch(c, remote, tag, commit, branch)
        files = _check_results(c, dvc, commit)
        subject = git(c, "log", "-1", "--format=%s", commit) or tag
        runs, ci_url = tracking.run_records(), environment.ci_run_url(env)
        details = report.details(c, dvc, TAG_PREFIX, tag, remote, described())  # and the branch's previous run
        message = results_commit.message(subject, tag, commit, dvc.metric_lines(), runs, ci_url, details)
        if dry_run:
            side = results_commit.side_branch(c, remote, tag)
            _print_share_plan(tag, commit, remote, existing, target, unclear, side, files, message)
            return

        # The data goes first, whatever happens next: once it is on the remote nothing of the run can be lost.
        _push_data(dvc)
        if existing:
            outcome = f"Results of {tag} are already on {remote} as {existing[:12]}: nothing to commit (a re-run)."
        elif results := results_commit.commit(c, env, commit, files, message):
            outcome = results_commit.push(c, auth, remote, target, unclear, tag, commit, results)
        else:
            outcome = (
                f"dvc.lock did not change: {commit[:12]} already records these results, so no commit was made. "
                "The data is on the DVC remote."
            )
        report.summary(env, dvc, tag, commit, outcome, details)


def _push_data(dvc: dvc_repo.Dvc) -> None:
    """`dvc push --run-cache`, then make sure the remote holds every output dvc.lock names (DVC only warns)."""
    print("$ dvc push --run-cache", flush=True)
    try:
        pushed = dvc.push()
    except Exception as exc:  # noqa: BLE001 - DVC's own error (its details are logged above), in one line
        said = environment.one_line(environment.scrub(str(exc)))
        raise Exit(
            f"Pushing the data failed ({said}) — nothing was committed or pushed to git; fix the remote and run "
            "`invoke share` again.",
            code=1,
        ) from None
    print(f"{pushed} file{'s' if pushed != 1 else ''} pushed" if pushed else "Everything is up to date.")
    if missing := dvc.not_on_remote():
        raise Exit(
            f"The DVC remote lacks data dvc.lock names: {', '.join(missing)} — nothing was pushed to git; check "
            "the remote and share again (if this clone lost the data too, `invoke repro --force` remakes it).",
            code=1,
        )


def _check_shareable(c: Context, env: dict[str, str], tag: str, remote: str) -> str:
    """Refuse to share what is not a run of `tag` here; else the tagged commit."""
    commit = git(c, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    if not commit:
        raise Exit(
            f"Tag {tag!r} is not in this clone — check the name, or fetch it: "
            + shlex.join(["git", "fetch", remote, "--tags"]),
            code=1,
        )
    # HEAD is the tagged commit, or the results commit an interrupted share made on it (this share finishes it).
    if git(c, "rev-parse", "HEAD") != commit and not results_commit.is_results_of(c, "HEAD", tag, commit):
        raise Exit(f"HEAD is not {tag} ({commit[:12]}) — check out the tag and run `invoke repro` there first.", code=1)
    if not (environment.ROOT / "dvc.lock").exists():
        raise Exit("There is no dvc.lock — run `invoke repro` first.", code=1)
    if not dvc_remote.configured(env):
        raise Exit(
            "No DVC remote is configured — set MLFLOW_S3_ENDPOINT_URL (or DVC_REMOTE_ENDPOINT_URL / DVC_REMOTE_URL) "
            "and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (see .env.example): results are shared through it.",
            code=1,
        )
    return commit


def _check_results(c: Context, dvc: dvc_repo.Dvc, tagged: str) -> list[str]:
    """Refuse outputs the remote cannot carry, a pipeline DVC calls out of date, and changes that are not results;
    else the files the results commit holds."""
    outputs = dvc.outputs()
    if unshareable := [o.path for o in outputs if not (o.cached and o.pushed)]:
        raise Exit(
            f"Outputs the DVC remote cannot carry: {', '.join(unshareable)} (`cache: false` or `push: false` in "
            "dvc.yaml), so a clone of the results could not pull them — drop those options, then repro and share.",
            code=1,
        )
    if stale := dvc.stale():
        raise Exit(
            f"DVC says the pipeline is not up to date here: {'; '.join(stale)} — run `invoke repro` (and fix the "
            "stage that fails) before sharing; nothing was pushed.",
            code=1,
        )
    return results_commit.result_files(c, tagged, [o.path for o in outputs])


def _print_share_plan(
    tag: str,
    commit: str,
    remote: str,
    existing: str | None,
    target: str | None,
    unclear: str,
    side: str,
    files: list[str],
    message: str,
) -> None:
    print(f"Tag {tag} → commit {commit}")
    print("1. dvc push --run-cache, then check that the DVC remote holds every output dvc.lock names")
    if existing:
        print(f"2. nothing more: results of {tag} are already on {remote} as {existing}")
        return
    print(f"2. git add {shlex.join(files) or '(nothing changed)'}; commit on {commit[:12]}:\n")
    print("   " + message.replace("\n", "\n   "))
    where = f"{target}  (if it moved on or refuses: {side})" if target else f"{side}  ({unclear})"
    print(f"3. git push {shlex.quote(remote)} HEAD:refs/heads/{where}")


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
    rows = checks.doctor(env, on_runner or runner.on_actions(env), remote, network=not dry_run)
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
    """List the runs, newest first, with their state; or one run's whole chain (--run), or what made a file (--find)."""
    runner.at_root()
    if fetch:
        past_runs.fetch_or_say(c, remote, "showing")
    listed = past_runs.listed(c, TAG_PREFIX, remote)
    if sweep:
        try:
            stem, legs = sweeps.named(listed, sweep)
            text, best = sweeps.table(stem, legs, sort, ascending)
        except sweeps.Refused as exc:
            raise Exit(str(exc), code=1) from None
        adopt = f"\n\n{sweeps.adopt(c, best, remote)}" if best else ""
        print(past_runs.as_json([leg.run for leg in legs]) if json else text + adopt)
        return
    if run:
        chosen, env = _resolve(c, run, remote), runner.pipeline_environment()
        dvc_remote.configure(env)  # the chain says which outputs the remote holds
        print(past_runs.as_json([chosen]) if json else report.chain(c, env, chosen))
        if not json:  # MLflow asked only here, with a short timeout: the listing below stays git-only
            print(f"\n{registry.section(c, env, chosen, listed)}")
        return
    if find:
        try:
            needle = past_runs.needle(find)
        except past_runs.RunNotFound as exc:
            raise Exit(str(exc), code=1) from None
        hits = past_runs.find(c, listed, needle)
        if not hits:
            raise Exit(f"No run's results record {find} ({needle}) — no shared run made it (a local repro?).", code=1)
        listed = [r for r, _ in hits]
        if not json:
            print("\n".join(f"{r.tag}  results {r.results[:12]} on {r.where}: {why}" for r, why in hits))
            return
    listed = past_runs.of_branch(listed, branch) if branch else listed
    listed = listed[:limit] if limit > 0 else listed
    print(past_runs.as_json(listed) if json else report.runs_table(listed, runner.pipeline_environment()))


@task(
    help={
        "a": "The run to look at: a run tag or results commit (default: the current branch's newest run with results).",
        "b": "The run to compare it with (default: the run before A on its branch; for a sweep's leg, its base).",
        "md": "Print Markdown tables.",
        "plots": "Also render both runs' plots into this directory (DVC's plots diff, an HTML page).",
        "fetch": "Fetch the remote's tags and branches first (--no-fetch: use what this clone has).",
        "remote": "The git remote the runs are on.",
    }
)
def compare(
    c: Context, a: str = "", b: str = "", md: bool = False, plots: str = "", fetch: bool = True, remote: str = "origin"
) -> None:
    """Compare two runs' params and metrics with DVC's diffs (default: the branch's newest run and the one before)."""
    runner.at_root()
    env = runner.pipeline_environment()
    if fetch:
        past_runs.fetch_or_say(c, remote, "comparing")
    new = _resolve(c, a, remote)
    listed = past_runs.listed(c, TAG_PREFIX, remote)
    old = (
        _resolve(c, b, remote)
        if b
        else sweeps.base_run(c, listed, new) or past_runs.previous(listed, new.tag, new.branch)
    )
    if old is None:
        raise Exit(f"No run before {new.tag} on {new.branch} has results — name one with -b RUN.", code=1)
    for r in (old, new):
        if not r.results:
            raise Exit(f"Run {r.tag} has no results yet ({r.state}) — wait for its job, or name another run.", code=1)
    dvc_remote.configure(env)
    with dvc_repo.opened() as dvc:
        failed = comparison.fetch(dvc, [old.results, new.results])  # metric and plot files are DVC outputs
        text = comparison.text(c, dvc, comparison.rev(old), comparison.rev(new), md)
    print(f"{comparison.rev(old)} = {old.tag}\n{comparison.rev(new)} = {new.tag}\n")
    print(
        text
        + (f"(Fetching their metric and plot files failed: {failed})" if failed and comparison.MISSING in text else "")
    )
    if plots:
        if error := comparison.plots(c, env, comparison.rev(old), comparison.rev(new), plots):
            raise Exit(f"DVC could not render the plots ({error}) — check the plots dvc.yaml declares.", code=1)
        print(f"Plots of both runs: {Path(plots).resolve() / 'index.html'}")


def _resolve(c: Context, spec: str, remote: str) -> past_runs.Run:
    try:
        return past_runs.resolve(c, TAG_PREFIX, spec, remote)
    except past_runs.RunNotFound as exc:
        raise Exit(str(exc), code=1) from None


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
    project.check_name(name)
    project.check_can_commit(c)
    changes = project.plan(c, name, keep_example)
    if not changes:
        raise Exit(f"This clone is project {name} already: nothing to change.", code=0)
    text = project.message(name, changes)
    if dry_run:
        print(f"Would commit on {git(c, 'symbolic-ref', '--quiet', '--short', 'HEAD') or 'HEAD'}:\n")
        print("".join(f"   {line}\n" if line else "\n" for line in text.splitlines()))
        print("Nothing was changed (--dry-run).")
        return
    commit = project.apply(c, changes, text)
    print(project.next_steps(c, name, commit, keep_example))


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
    try:
        registry.check_alias(alias)
        if fetch:
            past_runs.fetch_or_say(c, remote, "using")
        chosen = _resolve(c, run, remote)
        # Its results commit names the MLflow runs that made its outputs, the model's too when train was restored.
        shared = registry.results_of(chosen, past_runs.listed(c, TAG_PREFIX, remote))
        if shared is None:
            raise registry.Refused(
                f"Run {chosen.tag} has no results commit yet ({chosen.state}) — wait for its job to share them "
                f"(`invoke runs --run {chosen.tag}` shows it), then promote it."
            )
        if shared.tag != chosen.tag:
            print(f"{registry.borrowed(chosen, shared)}.")
        client = registry.connect(env)  # a short-timeout check first: no four minutes of MLflow's retries
        versions = registry.produced(client, shared, c, env)
        with registry.speaking(env):
            for version in versions:
                held_by = registry.previous_holder(client, version.name, alias)
                what = (
                    f"{version.name} version {version.version} (MLflow run {version.run_id}; results "
                    f"{shared.results[:12]} on {shared.where})"
                )
                if dry_run:
                    print(f"Would point alias {alias!r} at {what}; it is on {_version(held_by)} now.")
                    continue
                registry.promote(client, version, alias, shared)  # tags the version with its results commit first
                print(f"Alias {alias!r} now points at {what}; it was on {_version(held_by)}.")
    except registry.Refused as exc:
        raise Exit(str(exc), code=1) from None
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
        "timeout": f"Give up after this many seconds (exit 2; default {watching.TIMEOUT:g}).",
        "interval": f"Seconds between two looks at the remote and GitHub's API (default {watching.INTERVAL:g}).",
        "remote": "The git remote the results are pushed to.",
    },
)
def watch(
    c: Context,
    run: list[str] | None = None,
    sweep: str = "",
    timeout: float = watching.TIMEOUT,
    interval: float = watching.INTERVAL,
    remote: str = "origin",
) -> None:
    """Follow runs until their results are on the remote: a status line each, then their metrics (exit 0, 1, 2)."""
    runner.at_root()
    _follow(c, run or [], sweep, remote, timeout, interval)


def _follow(c: Context, specs: list[str], sweep: str, remote: str, timeout: float, interval: float) -> None:
    """Exit 0 once every run's results landed (printing them), 1 at a failure, 2 at the timeout or for no run."""
    env = runner.pipeline_environment()  # GH_TOKEN may come from .env
    past_runs.fetch_or_say(c, remote, "following")
    try:
        chosen = watching.chosen(c, TAG_PREFIX, past_runs.listed(c, TAG_PREFIX, remote), specs, sweep, remote)
    except (past_runs.RunNotFound, sweeps.Refused) as exc:
        raise Exit(str(exc), code=watching.TIMED_OUT) from None
    tags = [r.tag for r in chosen]
    code, said = watching.follow(c, TAG_PREFIX, tags, remote, timeout, interval, env)
    if code != watching.LANDED:
        raise Exit(said, code=code)
    print(f"\n{watching.outcome(c, TAG_PREFIX, tags, remote)}")
