"""The run loop: tag a commit, reproduce the pipeline on the runner, commit and push its results.

    invoke tag-run   tag HEAD as a run and push only that tag; the tag starts the workflow on the runner
    invoke repro     (on the runner) run the DVC pipeline; the stages log to MLflow
    invoke share     (on the runner) push the data, commit dvc.lock as "<subject>-results", push the commit

Every value that comes from outside (tag and branch names, commit subjects, URLs) reaches a command as a
quoted argument, never as shell text. Nothing here force-pushes, and data always goes out before the git ref
that points at it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invoke import Context, Exit, task

from src import tracking

# The workflow runs for tags that start with this (its `on.push.tags` filter is TAG_PREFIX + "*").
TAG_PREFIX = "run-example"
WORKFLOW = Path(".github/workflows/github_actions_pipeline.yml")
RESULTS_SUFFIX = "-results"
# Where results go when the tag's branch moved on before they could land on it.
RESULTS_BRANCH_PREFIX = "results/"
DVC_REMOTE = "storage"  # the default remote named in .dvc/config
# Variables a CI run needs, and where a team sets each one in the repository settings.
CI_SETTINGS = {
    "MLFLOW_URL": "repository variable MLFLOW_URL",
    "MLFLOW_S3_ENDPOINT_URL": "repository variable MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID": "secret MINIO_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "secret MINIO_SECRET_ACCESS_KEY",
    "ACCESS_TOKEN": "secret ACCESS_TOKEN",
}
DVC = [sys.executable, "-m", "dvc"]


# -- helpers ----------------------------------------------------------------------------------------------------


def _run(c: Context, *args: str, **kwargs):
    """Run a command given as arguments (quoted here, so no value is ever read as shell syntax)."""
    kwargs.setdefault("hide", True)
    kwargs.setdefault("warn", True)
    return c.run(shlex.join(args), **kwargs)


def _git(c: Context, *args: str) -> str | None:
    """Output of a git probe, or None when git says no."""
    result = _run(c, "git", *args)
    return result.stdout.strip() if result.ok else None


def _must(c: Context, what: str, *args: str, **kwargs) -> str:
    """Run a step that has to work; on failure stop with what failed and git's or DVC's own words."""
    result = _run(c, *args, **kwargs)
    if not result.ok:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
        raise Exit(f"{what} failed: {' / '.join(detail) or 'no output'}", code=1)
    return result.stdout.strip() if result.stdout else ""


def _at_root() -> None:
    """Work from the project's root, wherever invoke was started (it finds tasks.py from subfolders too)."""
    os.chdir(tracking.ROOT)


def _environment() -> dict[str, str]:
    """The environment the pipeline runs in: `.env` read in (real variables win) and the tracking URI fixed."""
    tracking.load_dotenv()
    env = {**tracking.QUIET, **os.environ}
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri(env)
    # Stages run `python`: make it this interpreter even when the venv is not activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _on_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def _require_ci_settings(env: Mapping[str, str]) -> None:
    """On GitHub Actions, stop at once if a variable or secret the run needs is missing, or Python is another."""
    import tomllib

    wanted = tomllib.loads((tracking.ROOT / "Pipfile").read_text()).get("requires", {}).get("python_version")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and running != wanted:
        raise Exit(
            f"This runner's Python is {running}, but Pipfile.lock was made for {wanted} (Pipfile [requires]) — put "
            f"Python {wanted} first on the runner's PATH; results from another Python are not the locked ones.",
            code=1,
        )
    missing = [name for name in CI_SETTINGS if not tracking.env_value(name, env)]
    if missing:
        where = ", ".join(f"{n} (from {CI_SETTINGS[n]})" for n in missing)
        raise Exit(
            f"Missing on this runner: {where} — set them in the repository's Settings → Secrets and variables "
            "→ Actions (see the README's environment table).",
            code=1,
        )


def _remote_settings(env: Mapping[str, str]) -> dict[str, str | None]:
    """The DVC remote's machine-specific settings, from the environment only."""
    return {
        "endpointurl": tracking.env_value("DVC_REMOTE_ENDPOINT_URL", env)
        or tracking.env_value("MLFLOW_S3_ENDPOINT_URL", env),
        "url": tracking.env_value("DVC_REMOTE_URL", env),
    }


def _has_remote(env: Mapping[str, str]) -> bool:
    """Whether a DVC remote is set up: an endpoint or remote URL in the environment, or .dvc/config.local."""
    local = tracking.ROOT / ".dvc" / "config.local"
    return any(_remote_settings(env).values()) or (local.exists() and bool(local.read_text().strip()))


def _configure_remote(c: Context, env: Mapping[str, str]) -> None:
    """Write the endpoint (and any URL override) to .dvc/config.local: untracked, and never a secret.

    Only what the environment sets is written; what a user put in config.local by hand stays.
    """
    for key, value in _remote_settings(env).items():
        if value:
            cmd = [*DVC, "remote", "modify", "--local", DVC_REMOTE, key, value]
            _must(c, f"Setting the DVC remote's {key}", *cmd, env=env)


def _head_run_tag(c: Context, env: Mapping[str, str]) -> str | None:
    """The run tag of this checkout: the pushed tag on CI, else the newest run tag pointing at HEAD."""
    if tag := tracking.run_tag(env):
        return tag
    tags = _git(c, "tag", "--points-at", "HEAD", "--list", f"{TAG_PREFIX}*", "--sort=-creatordate")
    return tags.splitlines()[0] if tags else None


def _mlflow_lines() -> list[str]:
    """One line per MLflow run the outputs record: its stage and where to see it."""
    return [f"MLflow ({r['stage']}): {_run_link(r)}" for r in tracking.run_records()]


def _run_link(record: Mapping[str, str]) -> str:
    uri = record["tracking_uri"]
    if tracking.is_local_store(uri):
        return f"run {record['run_id']} in {uri} (browse: mlflow ui --backend-store-uri {shlex.quote(uri)})"
    return f"{uri.rstrip('/')}/#/experiments/{record['experiment_id']}/runs/{record['run_id']}"


# -- repro ------------------------------------------------------------------------------------------------------


@task(
    help={
        "pull": "Pull cached results from the DVC remote when one is configured (--no-pull: never).",
        "force": "Re-run every stage, even those DVC considers up to date.",
        "dry_run": "Print what would run and where results would go, and change nothing.",
    }
)
def repro(c: Context, pull: bool = True, force: bool = False, dry_run: bool = False) -> None:
    """Run the DVC pipeline (stages log to MLflow) and say where the results are."""
    _at_root()
    env = _environment()
    if _on_actions(env):
        _require_ci_settings(env)
    if tag := _head_run_tag(c, env):
        env["RUN_TAG"] = tag
    remote = pull and _has_remote(env)
    cmd = [*DVC, "repro", *(["--pull"] if remote else []), *(["--force"] if force else [])]
    print(f"$ {shlex.join(['dvc', *cmd[3:]])}", flush=True)
    if dry_run:
        where = "pull from the DVC remote" if remote else "use no DVC remote"
        print(f"Would log to MLflow at {tracking.redact(env['MLFLOW_TRACKING_URI'])} and {where}.")
        return
    if remote:
        _configure_remote(c, env)
    if not c.run(shlex.join(cmd), env=env, warn=True, pty=False).ok:
        raise Exit("The pipeline failed (DVC's message is above) — fix the failing stage and run again.", code=1)
    _report(c, env, remote)


def _report(c: Context, env: Mapping[str, str], remote: bool) -> None:
    print("\nResults")
    metrics = _run(c, *DVC, "metrics", "show", env=env)
    print(metrics.stdout.rstrip() if metrics.ok else "  (no metrics)")
    for line in _mlflow_lines() or [f"MLflow: {tracking.redact(env['MLFLOW_TRACKING_URI'])}"]:
        print(line)
    where = "the DVC remote, after `invoke share`" if remote else "the local DVC cache (.dvc/cache), no remote"
    print(f"Data and models: {tracking.ROOT} (outputs listed in dvc.yaml); shared through {where}.")


# -- tag-run ----------------------------------------------------------------------------------------------------

LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "branch"


def _actions_url(remote_url: str | None) -> str | None:
    """The Actions page of a GitHub remote (https or ssh form), else None."""
    match = re.match(
        r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
        r"([\w.-]+/[\w.-]+?)(?:\.git)?/?$",
        remote_url or "",
    )
    return f"https://github.com/{match.group(1)}/actions/workflows/{WORKFLOW.name}" if match else None


@task(
    help={
        "name": "A label to add to the generated tag name (letters, digits, '.', '_', '-').",
        "message": "The tag's annotation: what this run is for.",
        "remote": "The git remote the runner watches.",
        "dry_run": "Print what would be done and change nothing.",
    }
)
def tag_run(c: Context, name: str = "", message: str = "", remote: str = "origin", dry_run: bool = False) -> None:
    """Tag HEAD as a run and push only that tag, which starts the pipeline on the runner."""
    _at_root()
    if _git(c, "rev-parse", "--is-inside-work-tree") != "true":
        raise Exit("Not inside a git repository — run this from the project's clone.", code=1)
    if name and not LABEL.fullmatch(name):
        raise Exit(
            f"--name {name!r} is not a safe label — use up to 50 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            code=1,
        )
    changes = (_git(c, "status", "--porcelain") or "").splitlines()
    if [line[3:] for line in changes] == ["dvc.lock"]:
        raise Exit(
            "dvc.lock was changed by a local `invoke repro` — the runner makes its own from the tagged commit: "
            "discard it (git checkout -- dvc.lock, or delete it if it is untracked) or commit and push it, "
            "then tag again.",
            code=1,
        )
    if changes:
        raise Exit(
            "The working tree has uncommitted or untracked changes — commit (and push) or stash them: "
            "the runner only sees pushed commits.",
            code=1,
        )
    branch = _git(c, "symbolic-ref", "--quiet", "--short", "HEAD")
    if not branch:
        raise Exit("HEAD is detached — check out the branch the run belongs to, then tag again.", code=1)
    commit = _git(c, "rev-parse", "HEAD") or ""
    remote_url = _git(c, "remote", "get-url", remote)
    if remote_url is None:
        raise Exit(f"There is no git remote {remote!r} — add it, or pass --remote NAME.", code=1)
    if _git(c, "fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}") is None:
        push = shlex.join(["git", "push", "-u", remote, branch])
        raise Exit(f"Branch {branch!r} is not on {remote} — push it first: {push}", code=1)
    if _git(c, "merge-base", "--is-ancestor", commit, "FETCH_HEAD") is None:
        raise Exit(
            f"HEAD {commit[:12]} is not on {remote}/{branch} yet — push it first: "
            + shlex.join(["git", "push", remote, branch]),
            code=1,
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tag = "-".join([TAG_PREFIX, _slug(branch), stamp, *([name] if name else [])])
    if _git(c, "check-ref-format", f"refs/tags/{tag}") is None:
        raise Exit(f"{tag!r} is not a valid git tag name — choose another --name.", code=1)
    if _git(c, "rev-parse", "--quiet", "--verify", f"refs/tags/{tag}") is not None or _git(
        c, "ls-remote", "--tags", remote, f"refs/tags/{tag}"
    ):
        raise Exit(f"Tag {tag!r} already exists — wait a second or pass another --name.", code=1)
    # The branch goes into the annotation so `share` knows where the results belong, even when several
    # branches contain the commit.
    annotation = f"{message or f'Run {tag}'}\n\nBranch: {branch}\n"
    if dry_run:
        print(f"Would tag {commit} ({branch}) as {tag} and push only that tag to {remote}.")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(annotation)
    try:
        _must(c, "Creating the tag", "git", "tag", "--annotate", "--cleanup=verbatim", "--file", f.name, tag)
    finally:
        os.unlink(f.name)
    pushed = _run(c, "git", "push", "--quiet", remote, f"refs/tags/{tag}")
    if not pushed.ok:
        _run(c, "git", "tag", "--delete", tag)
        error = " / ".join(pushed.stderr.strip().splitlines()[-4:])
        raise Exit(
            f"Pushing tag {tag} to {remote} failed ({error}) — the local tag is removed; fix that and tag again."
        )
    print(f"Tagged {commit} ({branch}) as {tag} and pushed it to {remote}.")
    url = _actions_url(remote_url)
    print(f"Watch the run: {url}" if url else f"The runner watching {remote} picks it up ({WORKFLOW}).")


# -- share ------------------------------------------------------------------------------------------------------


def _trailers(c: Context, rev: str, key: str) -> list[str]:
    out = _git(c, "log", "-1", f"--format=%(trailers:key={key},valueonly,separator=%x00)", rev)
    return [v for v in (out or "").split("\0") if v]


def _is_results_of(c: Context, rev: str, tag: str, commit: str) -> bool:
    """True when `rev` is a results commit of `tag`: its only parent is the tagged commit and it names the tag."""
    parents = (_git(c, "rev-list", "--parents", "-n", "1", rev) or "").split()[1:]
    return parents == [commit] and tag in _trailers(c, rev, "Run-Tag")


def _existing_results(c: Context, remote: str, tag: str, commit: str) -> str | None:
    """A results commit of `tag` already on the remote (a re-run of the same tag), if any."""
    found = _git(c, "log", f"--remotes={remote}", "--fixed-strings", f"--grep=Run-Tag: {tag}", "--format=%H")
    return next((sha for sha in (found or "").split() if _is_results_of(c, sha, tag, commit)), None)


def _tag_branch(c: Context, tag: str) -> str | None:
    """The branch `invoke tag-run` recorded in the tag's annotation."""
    if _git(c, "cat-file", "-t", f"refs/tags/{tag}") != "tag":
        return None
    body = _git(c, "cat-file", "-p", f"refs/tags/{tag}") or ""
    names = re.findall(r"^Branch: (\S+)$", body.partition("\n\n")[2], flags=re.MULTILINE)
    return names[-1] if names else None


def _pick_branch(c: Context, remote: str, tag: str, commit: str, requested: str) -> tuple[str | None, str]:
    """The branch the results belong on, or None and why there is no clear one.

    --branch wins; else the branch tag-run recorded in the tag; else the only remote branch that contains the
    commit; else the only one whose tip is the commit.
    """
    refs = _git(c, "for-each-ref", "--contains", commit, "--format=%(refname)", f"refs/remotes/{remote}/") or ""
    candidates = [
        name
        for name in (ref.removeprefix(f"refs/remotes/{remote}/") for ref in refs.splitlines())
        if name != "HEAD" and not name.startswith(RESULTS_BRANCH_PREFIX)
    ]
    listed = ", ".join(candidates) or "none"
    if requested:
        if requested not in candidates:
            raise Exit(f"--branch {requested!r} on {remote} does not contain {commit[:12]} — use one of: {listed}.")
        return requested, ""
    hint = _tag_branch(c, tag)
    if hint in candidates:
        return hint, ""
    if hint:
        return None, f"Tag {tag} was made on branch {hint!r}, which no longer contains {commit[:12]} on {remote}"
    if len(candidates) == 1:
        return candidates[0], ""
    if not candidates:
        return None, f"No branch on {remote} contains {tag}'s commit {commit[:12]}"
    at_tip = [b for b in candidates if _git(c, "rev-parse", f"refs/remotes/{remote}/{b}") == commit]
    if len(at_tip) == 1:
        return at_tip[0], ""
    return None, f"Several branches on {remote} contain {commit[:12]} ({listed}) and the tag names none of them"


def _metrics(c: Context, env: Mapping[str, str]) -> list[str]:
    """The pipeline's metrics as `file key: value` lines, flattened, as `dvc metrics show` finds them."""
    shown = _run(c, *DVC, "metrics", "show", "--json", env=env)
    try:
        files = json.loads(shown.stdout)[""]["data"] if shown.ok else {}
    except (ValueError, KeyError):
        return []
    lines: list[str] = []

    def walk(path: str, prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(path, f"{prefix}.{k}" if prefix else str(k), v)
        else:
            lines.append(f"{path} {prefix}: {value}")

    for path, content in files.items():
        walk(path, "", content.get("data", {}))
    return lines


def _results_message(
    subject: str, tag: str, commit: str, metrics: list[str], runs: list[dict], ci_url: str | None
) -> str:
    trailers = [f"Run-Tag: {tag}", f"Run-Commit: {commit}"]
    trailers += [f"MLflow-Run: {r}" for r in dict.fromkeys(r["run_id"] for r in runs)]
    trailers += [f"CI-Run: {ci_url}"] if ci_url else []
    body = "".join(f"    {line}\n" for line in metrics) or "    (none)\n"
    return (
        f"{subject}{RESULTS_SUFFIX}\n\nResults of run {tag} for {commit}.\n\nMetrics:\n{body}\n"
        + "\n".join(trailers)
        + "\n"
    )


def _identity(c: Context, env: Mapping[str, str]) -> list[str]:
    """`-c` options naming the committer when git has no identity (a fresh runner); global config is untouched."""
    if _git(c, "config", "user.email") and _git(c, "config", "user.name"):
        return []
    actor = tracking.env_value("GITHUB_ACTOR", env) or "invoke-share"
    return ["-c", f"user.name={actor}", "-c", f"user.email={actor}@users.noreply.github.com"]


def _summary(c: Context, env: Mapping[str, str], tag: str, commit: str, outcome: str) -> None:
    """Tell the run's outcome on stdout and, on GitHub Actions, in the job summary."""
    print(outcome)
    path = tracking.env_value("GITHUB_STEP_SUMMARY", env)
    if not path:
        return
    metrics = _run(c, *DVC, "metrics", "show", "--md", env=env)
    params = _run(c, *DVC, "params", "diff", "--all", "--md", env=env)
    links = "\n".join(f"- {line}" for line in _mlflow_lines()) or "- MLflow: no run"
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            f"## Run `{tag}`\n\n- Commit: `{commit}`\n- {outcome}\n{links}\n\n"
            f"### Metrics\n\n{metrics.stdout.strip() if metrics.ok else 'none'}\n\n"
            f"### Params\n\n{params.stdout.strip() if params.ok else 'none'}\n"
        )


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
    _at_root()
    env = _environment()
    if _on_actions(env):
        _require_ci_settings(env)
    tag = tag or _head_run_tag(c, env) or ""
    if not tag:
        raise Exit("No run tag — pass --tag NAME (on GitHub Actions it comes from GITHUB_REF).", code=1)
    if not dry_run:
        _must(c, f"Fetching {remote}", "git", "fetch", "--quiet", "--no-tags", "--prune", remote)
        # A checkout may have turned the annotated tag into a lightweight one (actions/checkout before v6.0.2
        # re-fetched it as <sha>:refs/tags/<tag>); the annotation names the tag's branch, so fetch the tag itself.
        _run(c, "git", "fetch", "--quiet", "--no-tags", remote, f"+refs/tags/{tag}:refs/tags/{tag}")
    commit = _git(c, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    if not commit:
        raise Exit(
            f"Tag {tag!r} is not in this clone — check the name, or fetch it: "
            + shlex.join(["git", "fetch", remote, "--tags"]),
            code=1,
        )
    if _git(c, "rev-parse", "HEAD") != commit:
        raise Exit(f"HEAD is not {tag} ({commit[:12]}) — check out the tag and run `invoke repro` there first.", code=1)
    if not (tracking.ROOT / "dvc.lock").exists():
        raise Exit("There is no dvc.lock — run `invoke repro` first.", code=1)
    if not _has_remote(env):
        raise Exit(
            "No DVC remote is configured — set MLFLOW_S3_ENDPOINT_URL (or DVC_REMOTE_ENDPOINT_URL / DVC_REMOTE_URL) "
            "and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (see .env.example): results are shared through it.",
            code=1,
        )
    existing = _existing_results(c, remote, tag, commit)
    target, unclear = (None, "") if existing else _pick_branch(c, remote, tag, commit, branch)
    side = f"{RESULTS_BRANCH_PREFIX}{tag}"
    subject = _git(c, "log", "-1", "--format=%s", commit) or tag
    runs = tracking.run_records()
    message = _results_message(subject, tag, commit, _metrics(c, env), runs, tracking.ci_run_url(env))
    if dry_run:
        print(f"Tag {tag} → commit {commit}")
        print("1. dvc push --run-cache")
        if existing:
            print(f"2. nothing more: results of {tag} are already on {remote} as {existing}")
            return
        print(f"2. git add dvc.lock (and tracked result files); commit on {commit[:12]}:\n")
        print("   " + message.replace("\n", "\n   "))
        where = f"{target}  (if it moved on or refuses: {side})" if target else f"{side}  ({unclear})"
        print(f"3. git push {shlex.quote(remote)} HEAD:refs/heads/{where}")
        return

    # The data goes first, whatever happens next: once it is on the remote nothing of the run can be lost.
    _configure_remote(c, env)
    print("$ dvc push --run-cache", flush=True)
    if not c.run(shlex.join([*DVC, "push", "--run-cache"]), env=env, warn=True, pty=False).ok:
        raise Exit(
            "Pushing the data failed (DVC's message is above) — nothing was committed or pushed to git; "
            "fix the remote and run `invoke share` again.",
            code=1,
        )
    if existing:
        outcome = f"Results of {tag} are already on {remote} as {existing[:12]}: nothing to commit (a re-run)."
    else:
        outcome = _commit_and_push(c, env, remote, target, unclear, tag, commit, message)
    _summary(c, env, tag, commit, outcome)


def _commit_and_push(
    c: Context,
    env: Mapping[str, str],
    remote: str,
    target: str | None,
    unclear: str,
    tag: str,
    commit: str,
    message: str,
) -> str:
    """Commit the results on the tagged commit and push them to `target`, else to results/<tag>; say where."""
    _must(c, "Staging dvc.lock", "git", "add", "--", "dvc.lock")
    _must(c, "Staging result files", "git", "add", "--update")
    if _run(c, "git", "diff", "--cached", "--quiet").ok:
        return (
            f"dvc.lock did not change: {commit[:12]} already records these results, so no commit was made. "
            "The data is on the DVC remote."
        )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(message)
    try:
        commit_cmd = ["git", *_identity(c, env), "commit", "--quiet", "--cleanup=verbatim", "--file", f.name]
        _must(c, "Committing the results", *commit_cmd)
    finally:
        os.unlink(f.name)
    results = (_git(c, "rev-parse", "HEAD") or "")[:12]
    # Whenever the results cannot land on their branch, they are kept on a branch of their own: they belong to
    # the tagged code, so they are never rebased onto code they were not produced from, and never force-pushed.
    if target is None:
        reason = unclear
    else:
        tip = _git(c, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{target}")
        if tip and _git(c, "rev-parse", f"{tip}^{{tree}}") == _git(c, "rev-parse", "HEAD^{tree}"):
            return f"{remote}/{target} already holds these exact results ({tip[:12]}): nothing to push."
        reason = f"{remote}/{target} moved on since {tag}"
        if tip == commit:
            pushed = _run(c, "git", "push", "--quiet", remote, f"HEAD:refs/heads/{target}")
            if pushed.ok:
                return f"Results committed as {results} on {remote}/{target}."
            ref = f"refs/remotes/{remote}/{target}"
            _run(c, "git", "fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{target}:{ref}")
            if _git(c, "rev-parse", "--verify", "--quiet", ref) == commit:  # not a race: the push was refused
                error = " / ".join(pushed.stderr.strip().splitlines()[-6:])
                reason = f"{remote}/{target} refused the push ({error})"
    side = f"{RESULTS_BRANCH_PREFIX}{tag}"
    _must(c, f"Pushing the results to {side}", "git", "push", "--quiet", remote, f"HEAD:refs/heads/{side}")
    into = f" into {target}" if target else ""
    return f"{reason}: results committed as {results} on branch {side} instead — merge it{into} to keep them there."
