"""The checks `invoke repro` makes around the pipeline, which `invoke doctor` shows as rows.

Both tasks call the functions here, so what doctor says is what repro would find. Each check gives a Result (ok,
warning, failed or skipped; what was found; the fix) whose text never holds a secret. The network is asked only
about a server or remote that is configured, with a few seconds' timeout, and never through mlflow or dvc:
with embedded defaults the checks read a few files and cost milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from src.runloop import ci, dvc_remote, environment, lock, mlflow_server, packages, push_credential
from src.runloop.git import Git
from src.runloop.refusal import Refused

OK, WARNING, FAILED, SKIPPED = "ok", "warning", "failed", "skipped"
SYNC_FIX = "run `{command}` (it never removes packages: on a long-lived runner, uninstall the rest)"


class Result(NamedTuple):
    check: str
    status: str
    detail: str
    fix: str = ""

    @property
    def line(self) -> str:
        return f"{self.check}: {self.detail}" + (f" — {self.fix}" if self.fix else "")


# --- the checks, in the order repro and doctor make them ---------------------------------------------------


def settings(env: Mapping[str, str], on_runner: bool) -> Result:
    """On a runner every variable and secret the workflow passes must be set; anywhere, say where runs go."""
    if on_runner and (missing := ci.missing_settings(env)):
        why, _, fix = missing.partition(" — ")
        return Result("settings", FAILED, why, fix)
    where = dvc_remote.location(env) if dvc_remote.configured(env) else None
    return Result(
        "settings",
        OK,
        f"MLflow at {environment.redact(_tracking_uri(env))}; DVC remote "
        + (environment.redact(where.url) if where else "none (results stay in .dvc/cache)"),
    )


def files() -> Result:
    """`.env`, params.yaml and dvc.yaml can be read, and every param dvc.yaml names is in params.yaml."""
    try:
        if problem := environment.dotenv_problem():
            raise environment.SettingsError(problem)
        defined = lock.stages()
        params_file = environment.ROOT / "params.yaml"
        params = environment.read_yaml(params_file) if params_file.is_file() else {}
        if not isinstance(params, dict):
            raise environment.SettingsError("params.yaml is not a mapping of sections — fix it")
        for name, stage in defined.items():
            for key in _params_named(stage):
                if not _has(params, key):
                    raise environment.SettingsError(
                        f"params.yaml has no {key}, which dvc.yaml's stage {name!r} reads — add it, or drop it "
                        "from the stage's params"
                    )
    except environment.SettingsError as exc:
        why, _, fix = str(exc).partition(" — ")
        return Result("files", FAILED, why, fix)
    count = f"{len(defined)} stage{'s' if len(defined) != 1 else ''}"
    return Result("files", OK, f".env, params.yaml and dvc.yaml read ({count})")


def python(on_runner: bool) -> Result:
    if problem := packages.python_mismatch():
        why, _, fix = problem.partition(" — ")
        return Result("python", FAILED if on_runner else WARNING, why, fix)
    return Result("python", OK, f"{_python_version()} as Pipfile requires")


def installed_packages(on_runner: bool, path: list[str] | None = None) -> tuple[Result, list[str]]:
    """The pipeline's packages against Pipfile.lock's default section; and the extras (on the runner, which installs
    only that section, the development packages too). The fix is the command for how this environment was made."""
    drift = packages.drift(("default",) if on_runner else ("default", "develop"), path)
    problems = [f"{d}" for d in drift.differ] + [f"{m} missing" for m in drift.missing]
    if problems:
        fix = SYNC_FIX.format(command=packages.sync_command(on_runner, drift.dev))
        return Result(
            "packages", FAILED if on_runner else WARNING, "differ from Pipfile.lock: " + "; ".join(problems), fix
        ), drift.extras
    if drift.extras:
        return Result(
            "packages",
            WARNING,
            "installed beyond Pipfile.lock (recorded with the run as MLflow tag python_extras): "
            + ", ".join(drift.extras),
            "uninstall them for a clean runner (`pipenv sync` never removes packages)",
        ), drift.extras
    return Result("packages", OK, "as Pipfile.lock pins them"), []


def outputs() -> Result:
    """Outputs the DVC remote will not hold: a results commit could not bring them back."""
    try:
        unshareable = lock.unshareable(lock.declared(lock.stages()))
    except environment.SettingsError as exc:
        return Result("outputs", SKIPPED, str(exc))
    if unshareable:
        return Result(
            "outputs",
            WARNING,
            "not shared through the DVC remote: " + ", ".join(unshareable),
            "drop `cache: false` / `push: false` in dvc.yaml for outputs the results need",
        )
    return Result("outputs", OK, "every output is cached and pushed")


def remote(env: Mapping[str, str], used: bool = True) -> Result:
    """The DVC remote answers, its bucket exists and takes writes (an object written and deleted)."""
    if not dvc_remote.configured(env):
        return Result("dvc remote", SKIPPED, "no DVC remote configured: results stay in .dvc/cache")
    where = dvc_remote.location(env)
    if where is None:
        return Result("dvc remote", FAILED, "no URL for the DVC remote", "set DVC_REMOTE_URL or fix .dvc/config")
    shown = environment.redact(where.url)
    if not used:
        return Result("dvc remote", SKIPPED, f"{shown} not used (--no-pull)")
    if "://" in where.url and not where.url.startswith("s3://"):
        return Result("dvc remote", SKIPPED, f"{shown}: only S3 and folder remotes are probed")
    if problem := dvc_remote.probe(where, env):
        return Result("dvc remote", FAILED, *problem)
    at = f" at {environment.redact(where.endpoint)}" if where.endpoint else ""
    return Result("dvc remote", OK, f"{shown}{at} answers and takes writes")


def mlflow(env: Mapping[str, str], create: bool) -> Result:
    """The tracking server answers as MLflow and holds the params' experiments (created when missing and `create`)."""
    uri = _tracking_uri(env)
    if environment.is_local_store(uri):
        return Result("mlflow", OK, f"embedded store {uri} (no server configured)")
    if not uri.startswith(("http://", "https://")):
        return Result("mlflow", SKIPPED, f"{environment.redact(uri)}: only HTTP tracking servers are probed")
    try:
        return Result("mlflow", OK, mlflow_server.check(uri, experiments(), env, create))
    except mlflow_server.Unusable as exc:
        return Result("mlflow", FAILED, exc.why, exc.fix)


def git_identity(env: Mapping[str, str]) -> Result:
    """Who `invoke share` commits as."""
    git = Git()
    name, email = git("config", "user.name"), git("config", "user.email")
    if name and email:
        return Result("git identity", OK, f"{name} <{email}>")
    if actor := ci.actor(env):
        return Result("git identity", OK, f"none in git config: share commits as {actor} (the CI run's actor)")
    return Result(
        "git identity",
        WARNING,
        "git has no user.name/user.email: share would commit as invoke-share",
        'set them: git config user.name "…" && git config user.email "…"',
    )


def git_push(env: Mapping[str, str], remote_name: str) -> Result:
    """Whether git may push to the remote (`git push --dry-run`: authenticates, sends nothing)."""
    git = Git()
    url = git("remote", "get-url", remote_name)
    if url is None:
        return Result("git push", FAILED, f"no git remote {remote_name!r}", "add it, or pass --remote NAME")
    shown = environment.redact(url)
    if git("rev-parse", "--verify", "--quiet", "HEAD") is None:
        return Result("git push", SKIPPED, f"{remote_name} ({shown}): no commit here to try a push with")
    probe = "refs/heads/results/runloop-doctor-check"  # a dry run: nothing is created
    batch = {"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")}
    try:
        tried = Git(environment.ROOT, env).run(
            "push", "--dry-run", "--quiet", remote_name, f"HEAD:{probe}", env=batch, timeout=30
        )
    except subprocess.TimeoutExpired:
        return Result("git push", FAILED, f"{remote_name} ({shown}) did not answer in 30 s", "check the network")
    if tried.returncode != 0:
        said = environment.one_line(environment.scrub(tried.stderr.strip() or "no output", env), 200)
        return Result(
            "git push",
            FAILED,
            f"git may not push to {remote_name} ({shown}): {said}",
            "give the runner's token (secret ACCESS_TOKEN) push rights (contents: write)",
        )
    return Result("git push", OK, f"{remote_name} ({shown}) accepts a push (dry run)")


# --- what the tasks call -----------------------------------------------------------------------------------


def before_repro(env: Mapping[str, str], uses_remote: bool, network: bool = True) -> dict[str, str]:
    """Stop with one line per failed check before any stage runs; print the warnings; say what the runs record.

    Returns the variables the stages' MLflow runs record: the packages beyond Pipfile.lock, when there are some.
    """
    on_runner = ci.on_ci(env)
    found, extras = installed_packages(on_runner)
    _stop_on_failure([settings(env, on_runner), files(), python(on_runner), found, outputs()])
    if network:
        _stop_on_failure([remote(env, uses_remote), mlflow(env, create=True)])
    return {environment.PYTHON_EXTRAS_ENV: ", ".join(extras)} if extras else {}


def after_repro(status: Mapping[str, str] | None) -> None:
    """Stop unless every stage is up to date with its outputs present; `status` is what DVC said after the
    pipeline when it changed dvc.lock (stage → its words), None when it did not."""
    defined = lock.stages()
    if stale := lock.not_up_to_date(defined):
        fix = (
            "run `invoke repro --no-pull` (DVC skips a new stage whose outputs are all `cache: false` when it pulls) "
            "or `invoke repro --force`"
        )
    elif stale := {
        name: environment.one_line(words, 200)
        for name, words in (status or {}).items()
        if not (defined.get(name) or {}).get("always_changed")
    }:
        fix = "a stage changed files that are not its outputs: fix its command, then run `invoke repro` again"
    else:
        return
    listed = "; ".join(f"stage {name!r}: {why}" for name, why in stale.items())
    raise Refused(f"The pipeline is not up to date after `dvc repro` ({listed}) — {fix}.")


def doctor(env: Mapping[str, str], on_runner: bool, remote_name: str, network: bool = True) -> list[Result]:
    """Every check, as rows: what repro checks, and what share will need from git."""
    rows = [settings(env, on_runner), files(), python(on_runner), installed_packages(on_runner)[0], outputs()]
    if network:
        rows += [remote(env), mlflow(env, create=False)]
    else:
        rows += [Result(name, SKIPPED, "--dry-run: not contacted") for name in ("dvc remote", "mlflow")]
    rows.append(git_identity(env))
    rows.append(push_credential_row(env, on_runner))
    rows.append(git_push(env, remote_name) if network else Result("git push", SKIPPED, "--dry-run: not tried"))
    return rows


def push_credential_row(env: Mapping[str, str], on_runner: bool) -> Result:
    """Which credential share (and a failure's record) will push with on the runner; never its value."""
    if said := push_credential.described(env):
        return Result("push credential", OK, f"the run pushes with {said}")
    if not on_runner:
        return Result("push credential", OK, "none set: pushes from here use your own git credentials")
    return Result(
        "push credential",
        FAILED,
        "the run has nothing to push its results with",
        f"set secret {push_credential.VARIABLE}, or a GitHub App ({ci.ALTERNATIVES[push_credential.VARIABLE]})",
    )


def table(rows: list[Result]) -> str:
    width = max(len(r.check) for r in rows)
    lines = []
    for r in rows:
        lines.append(f"{r.check:<{width}}  {r.status:<7}  {r.detail}")
        if r.fix:
            lines.append(f"{'':<{width}}  {'':<7}  fix: {r.fix}")
    return "\n".join(lines)


# --- helpers -----------------------------------------------------------------------------------------------


def experiments() -> list[str]:
    """The MLflow experiments params.yaml names (an `experiment:` key in a stage's section)."""
    try:
        params = environment.read_yaml(environment.ROOT / "params.yaml") or {}
    except (OSError, environment.SettingsError):
        return []
    names = [v.get("experiment") for v in params.values() if isinstance(v, dict)] if isinstance(params, dict) else []
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def _stop_on_failure(results: list[Result]) -> None:
    """One line per failed check, and stop; else one line per warning."""
    if failed := [r.line for r in results if r.status == FAILED]:
        raise Refused("\n".join(failed))
    for r in results:
        if r.status == WARNING:
            print(f"warning: {r.line}", flush=True)


def _tracking_uri(env: Mapping[str, str]) -> str:
    return env.get("MLFLOW_TRACKING_URI") or environment.tracking_uri(env)


def _python_version() -> str:
    return f"Python {sys.version_info.major}.{sys.version_info.minor}"


def _params_named(stage: Mapping[str, Any]) -> list[str]:
    """The params.yaml keys a stage lists (`params: [prepare.seed, …]`; other files' params are not read here)."""
    keys = []
    for entry in stage.get("params") or []:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            keys += [k for file, ks in entry.items() if file == "params.yaml" for k in ks or []]
    return [k for k in keys if "${" not in k]


def _has(params: Mapping[str, Any], dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
