"""Recompute a past run in isolation and say whether its results reproduce (what `nox -s reproduce` runs).

    python -m src.runloop.reproduction [RUN] [--rtol R] [--atol A] [--keep] [--track]

1. RUN (a run tag, a results commit, or nothing: the current branch's newest run with results) → its results
   commit (`runs.resolve`).
2. A temporary git worktree at that commit: the user's checkout is never touched.
3. A venv installed from *that commit's* Pipfile.lock with `pipenv sync`, as the runner installs it, kept under
   ~/.cache/runloop/venvs/<hash of the lock> and reused while the lock is the same.
4. The inputs (data tracked by .dvc files: `dvc add`, `dvc import-url`) pulled from the DVC remote, or from the
   local DVC cache when no remote is configured. Only those: never the outputs, never the run cache. A run whose
   outputs the remote no longer holds (`invoke gc` deleted them) is refused before anything is made.
5. Every stage recomputed: `dvc repro --force --no-run-cache`, logging to a throwaway MLflow store (or, with
   --track, to the configured one); the MLflow runs tagged `reproduction_of=<tag>` where they outlive the command
   (--track, --keep). DVC runs without its "git add dvc.lock … dvc push" reminders (pipeline.SCRIPT: the
   worktree's own src/runloop may be older than this one, so the script needs DVC alone).
6. The verdict, comparing dvc.lock's hashes with the recorded ones (`runs/*.json` excepted: they name MLflow
   runs) and, when bytes differ, the metrics with `dvc metrics diff` within --rtol/--atol:
   exit 0 bit-identical or numerically equivalent, 1 different, 2 could not reproduce.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from src.runloop import (
    ci,
    dvc_remote,
    dvc_store,
    environment,
    lock,
    lock_venv,
    machine,
    pipeline,
    report,
    runner,
    runner_cache,
)
from src.runloop.git import Git, listed
from src.runloop.refusal import Refused
from src.runloop.runs import Run, RunNotFound, Runs

BIT_IDENTICAL, EQUIVALENT, DIFFERENT = "bit-identical", "numerically equivalent", "different"
EXIT = {BIT_IDENTICAL: 0, EQUIVALENT: 0, DIFFERENT: 1}
CANNOT = 2
MARKER = lock_venv.MARKER  # written last: a venv without it is an install that did not finish
RTOL, ATOL = 1e-5, 1e-8  # numpy.isclose's defaults
MACHINE_SCRIPT = Path(machine.__file__)
_TAG_RUNS = """
import sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
for run_id in sys.argv[3:]:
    client.set_tag(run_id, "reproduction_of", sys.argv[2])
"""


class CannotReproduce(Refused):
    """The run could not be recomputed here; the message says why and what to do."""


@dataclass
class Verdict:
    name: str
    outputs: list[tuple[str, str, str]] = field(default_factory=list)  # path, recorded hash, new hash
    metrics: list[tuple[str, str, str, str]] = field(default_factory=list)  # metric, recorded, new, delta
    notes: list[str] = field(default_factory=list)


# -- the verdict (pure) -----------------------------------------------------------------------------------------


def differing(recorded: Mapping[str, str], new: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(output, recorded hash, new hash) for every output whose hash changed, appeared or vanished."""
    paths = sorted({*recorded, *new})
    return [(p, recorded.get(p, "-"), new.get(p, "-")) for p in paths if recorded.get(p) != new.get(p)]


def judge(
    outputs: list[tuple[str, str, str]], metrics_diff: Mapping[str, Mapping], rtol: float = RTOL, atol: float = ATOL
) -> Verdict:
    """The verdict from the outputs whose bytes differ and `dvc metrics diff --all --json` (recorded → new)."""
    if not outputs:
        return Verdict(BIT_IDENTICAL)
    rows, notes = [], []
    for path, values in sorted(metrics_diff.items()):
        for key, value in sorted(values.items()):
            old, new = value.get("old"), value.get("new")
            if old is None or new is None:
                side = "recorded" if old is None else "recomputed"
                notes.append(f"{path}: the {side} value of {key} could not be read.")
            elif _close(old, new, rtol, atol):
                continue
            rows.append((f"{path} {key}", _show(old), _show(new), _delta(old, new)))
    if not metrics_diff:
        notes.append("No metrics could be compared: the pipeline declares none, or DVC could read neither side.")
    name = DIFFERENT if rows or not metrics_diff else EQUIVALENT
    return Verdict(name, outputs, rows, notes)


def _close(old, new, rtol: float, atol: float) -> bool:
    if isinstance(old, bool | str) or isinstance(new, bool | str):
        return old == new
    return abs(new - old) <= atol + rtol * abs(old)


def _show(value) -> str:
    return "-" if value is None else str(value)


def _delta(old, new) -> str:
    if isinstance(old, int | float) and isinstance(new, int | float) and not isinstance(old, bool):
        return f"{new - old:+.6g}"
    return "-"


# -- the steps ---------------------------------------------------------------------------------------------------


def _sh(cmd: list[str], cwd: Path, env: Mapping[str, str], quiet: bool = False) -> subprocess.CompletedProcess:
    """Run an argument list; with `quiet`, capture its output (for the message if it fails)."""
    if quiet:
        return subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=cwd, env=dict(env), text=True, stdin=subprocess.DEVNULL)


def _last_lines(result: subprocess.CompletedProcess, n: int = 4) -> str:
    """A failed tool's last lines, as one line without credentials (MLflow's errors quote its whole URL)."""
    said = " / ".join((result.stderr or result.stdout or "").strip().splitlines()[-n:]) or "no output"
    return environment.scrub(said)


def venv_cache(env: Mapping[str, str]) -> Path:
    """Where the venvs of runs' locks are kept: $XDG_CACHE_HOME/runloop/venvs (default ~/.cache), as on a runner."""
    return runner_cache.venvs(env)


def run_environment(tree: Path, env: Mapping[str, str]) -> Path:
    """The venv of the worktree's Pipfile.lock: reused when one was installed for the same lock, else installed."""
    if not (tree / lock_venv.LOCK).exists():
        raise CannotReproduce("The run's commit has no Pipfile.lock — it cannot be installed as the runner did.")
    try:
        return lock_venv.ensure(venv_cache(env), tree, env, quiet=True).path
    except lock_venv.BuildFailed as exc:
        if "Python" in exc.why and "PATH" in exc.why:
            raise CannotReproduce(f"The run's {exc}") from None
        raise CannotReproduce(
            f"The run's {exc.why} — reproduce on a machine like the runner (Python and OS printed by "
            "`invoke runs RUN`), or fix the lock in a new run."
        ) from None


def check_outputs_kept(run: Run, recorded: list[lock.Output], env: Mapping[str, str]) -> None:
    """Refuse a run whose outputs the DVC remote no longer holds: `invoke gc` deleted them (a run it does not keep),
    or someone did by hand. Its record stays in git; what it made is gone, so there is nothing to hold a
    reproduction against. A remote that cannot be asked is said, and the reproduction goes on."""
    where = dvc_remote.location(env) if dvc_remote.configured(env) else None
    inputs = {o.md5 for o in recorded if o.is_input}  # an input that is gone is said when it is pulled, by name
    outputs = [o for o in recorded if not o.is_input and o.md5 and o.md5 not in inputs]
    if where is None or not outputs or "://" in where.url and not where.url.startswith("s3://"):
        return
    keys = {o.path: dvc_store.object_key(o.md5) for o in outputs}
    try:
        held = dvc_store.store(where, env).holds(keys.values())
    except Refused as exc:
        print(f"(Whether the DVC remote still holds the run's outputs is not known: {exc})", flush=True)
        return
    if gone := [path for path, key in keys.items() if key not in held]:
        raise CannotReproduce(
            f"Run {run.tag}'s outputs are gone from the DVC remote {where.url} ({len(gone)} of {len(keys)}: "
            f"{listed(gone, 3)}): `invoke gc` deleted them (not a run it keeps), or someone did by hand — reproduce "
            "a run whose data is kept (`invoke gc` lists them)."
        )


def connect_data(tree: Path, env: Mapping[str, str]) -> str:
    """Point the worktree's DVC at the remote (or, without one, at the local cache); say where data comes from."""
    local = environment.ROOT / ".dvc" / "config.local"
    if local.exists():  # machine-specific settings a user made here; never a credential (DVC reads those from env)
        shutil.copy2(local, tree / ".dvc" / "config.local")
    if dvc_remote.configured(env):
        dvc_remote.configure(env, root=tree)
        return "the DVC remote"
    cache = environment.ROOT / ".dvc" / "cache"
    # The local cache has a remote's layout: as a local remote it lends the inputs without being written to.
    dvc_remote.use_folder(tree, "local-cache", cache)
    return f"the local DVC cache ({cache}; no remote is configured)"


def pull_inputs(tree: Path, venv: Path, env: Mapping[str, str], recorded: list[lock.Output], source: str) -> None:
    """Pull the data the pipeline reads that no stage makes (what .dvc files track); print each with its hash."""
    inputs = [o for o in recorded if o.is_input]
    if not inputs:
        print("Inputs: none to pull (no .dvc files: every input is made by the pipeline's stages).", flush=True)
        return
    dvc_files = sorted({o.stage for o in inputs})
    print(f"Inputs, from {source}:", flush=True)
    print(report.table(("input", "md5", "tracked by"), [(o.path, o.md5, o.stage) for o in inputs]), flush=True)
    pulled = _sh([str(venv / "bin" / "python"), "-m", "dvc", "pull", *dvc_files], tree, env, quiet=True)
    if pulled.returncode != 0:
        raise CannotReproduce(
            f"The run's input data could not be pulled from {source} (DVC: {_last_lines(pulled)}) — push it from "
            "a clone that has it (`dvc push`), or check the DVC remote settings (.env, see .env.example)."
        )


def stage_environment(env: Mapping[str, str], tree: Path, venv: Path, store: str) -> dict[str, str]:
    """The pipeline's environment for the worktree: the venv's Python, the worktree's code, the MLflow `store`."""
    # Nothing of the original launch: the recomputed stages are no run of the tag (RUN_TAG, the CI's variables).
    launch = (environment.RUN_TAG_ENV, environment.RUN_CI_URL_ENV, "MLFLOW_URL")
    stage_env = {k: v for k, v in env.items() if not k.startswith(ci.PREFIX) and k not in launch}
    stage_env.update(
        PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]),
        VIRTUAL_ENV=str(venv),
        PYTHONPATH=str(tree),  # not the user's checkout, which a PYTHONPATH may name
        MLFLOW_TRACKING_URI=store,
    )
    stage_env.pop("PYTHONHOME", None)
    return stage_env


def tag_mlflow_runs(tree: Path, venv: Path, env: Mapping[str, str], store: str, tag: str) -> str:
    """Tag the MLflow runs the recomputed stages made as a reproduction of `tag`; say where they are."""
    ids = [r["run_id"] for r in lock.run_records(tree)]
    if not ids:
        return "The stages logged no MLflow run."
    tagged = _sh([str(venv / "bin" / "python"), "-c", _TAG_RUNS, store, tag, *ids], tree, env, quiet=True)
    status = f"tagged reproduction_of={tag}" if tagged.returncode == 0 else f"not tagged ({_last_lines(tagged, 1)})"
    return f"MLflow runs {', '.join(ids)} in {environment.redact(store)}, {status}."


def verdict(tree: Path, venv: Path, env: Mapping[str, str], run: Run, rtol: float, atol: float) -> Verdict:
    """Compare the recomputed dvc.lock with the recorded one (`runs/*.json` aside: they name MLflow runs), and the
    metrics when bytes differ."""
    recorded = lock.Lock(Git()("show", f"{run.results}:{lock.DVC_LOCK}")).hashes()
    new = lock.Lock.read(tree).hashes()
    outputs = differing(recorded, new)
    if not outputs:
        return Verdict(BIT_IDENTICAL)
    dvc = [str(venv / "bin" / "python"), "-m", "dvc"]
    shown = _sh([*dvc, "metrics", "diff", "HEAD", "--all", "--json"], tree, env, quiet=True)
    try:
        diff = json.loads(shown.stdout) if shown.returncode == 0 and shown.stdout.strip() else {}
    except ValueError:
        diff = {}
    return judge(outputs, diff, rtol, atol)


def this_machine(venv: Path) -> dict[str, str]:
    """What machine.describe() says in the reproduction's interpreter (the run's numpy and BLAS)."""
    result = _sh([str(venv / "bin" / "python"), str(MACHINE_SCRIPT)], Path.cwd(), os.environ, quiet=True)
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {"python": f"unknown ({_last_lines(result, 1)})"}


def tell(v: Verdict, run: Run, n_outputs: int, rtol: float, atol: float, here: dict[str, str]) -> None:
    results = (run.results or "")[:12]
    if v.name == BIT_IDENTICAL:
        print(
            f"\nVerdict: bit-identical — all {n_outputs} outputs have the hashes {results} recorded "
            "(runs/*.json, which name the MLflow runs, are not counted)."
        )
        return
    if v.name == EQUIVALENT:
        print(
            f"\nVerdict: numerically equivalent — {len(v.outputs)} of {n_outputs} outputs differ in their bytes; "
            f"every metric matches within rtol={rtol:g}, atol={atol:g}."
        )
    else:
        print(f"\nVerdict: different — from what {results} recorded (tolerance rtol={rtol:g}, atol={atol:g}).")
    print("\nOutputs whose bytes differ:")
    print(report.table(("output", "recorded hash", "new hash"), v.outputs))
    if v.metrics:
        print("\nMetrics beyond the tolerance:")
        print(report.table(("metric", "recorded", "new", "delta"), v.metrics))
    for note in v.notes:
        print(f"Note: {note}")
    recorded = run.environment or {}
    print("\nEnvironment (why bytes may differ):")
    rows = [(k, recorded.get(k, "not recorded"), here.get(k, "unknown")) for k in machine.KEYS]
    print(report.table(("", "the run's runner", "this machine"), rows))


# -- the command -------------------------------------------------------------------------------------------------


def reproduce(spec: str, rtol: float, atol: float, keep: bool, track: bool) -> int:
    env = runner.pipeline_environment()
    runs = Runs()
    runs.fetch_or_say("using")
    try:
        run = runs.with_results(spec)
    except RunNotFound as exc:
        raise CannotReproduce(str(exc)) from None
    print(f"Reproducing {run.tag}: results commit {run.results[:12]} on {run.where}.", flush=True)
    recorded = runs.outputs(run)
    check_outputs_kept(run, recorded, env)
    base = Path(tempfile.mkdtemp(prefix="reproduce-"))
    tree = base / "worktree"
    try:
        added = runs.git.run("worktree", "add", "--detach", "--quiet", str(tree), run.results or "")
        if added.returncode != 0:
            raise CannotReproduce(f"Could not make a worktree at {run.results[:12]} ({_last_lines(added)}).")
        print(f"Worktree: {tree}", flush=True)
        venv = run_environment(tree, env)
        source = connect_data(tree, env)
        pull_inputs(tree, venv, env, recorded, source)
        dvc = [str(venv / "bin" / "python"), "-m", "dvc"]
        # The recorded metric files, for `dvc metrics diff` should the bytes differ (small; failure is said later).
        _sh([*dvc, "fetch", "--type", "metrics"], tree, env, quiet=True)
        store = env["MLFLOW_TRACKING_URI"] if track else f"sqlite:///{base / 'mlflow.db'}"
        stage_env = stage_environment(env, tree, venv, store)
        print("$ dvc repro --force --no-run-cache", flush=True)
        # DVC's reproduce without its "git add dvc.lock … dvc push" reminders: nothing here is committed or pushed.
        repro = [str(venv / "bin" / "python"), "-c", pipeline.SCRIPT, "--force", "--no-run-cache"]
        if _sh(repro, tree, stage_env).returncode != 0:
            raise CannotReproduce(
                "A stage failed while recomputing the run (DVC's message is above) — the run's code does not run on "
                "this machine as it did on the runner; `--keep` keeps the worktree to look into it."
            )
        if track or keep:  # the store outlives this command: mark its runs (MLflow's import alone is ~1.5 s)
            print(tag_mlflow_runs(tree, venv, stage_env, store, run.tag))
        else:
            ids = ", ".join(r["run_id"] for r in lock.run_records(tree)) or "none"
            print(f"MLflow runs {ids} in a throwaway store, removed with the worktree (--keep keeps it, --track logs")
            print("to the configured one; both tag the runs reproduction_of=<tag>).")
        v = verdict(tree, venv, stage_env, run, rtol, atol)
        n_outputs = len(lock.Lock.read(tree).hashes())
        tell(v, run, n_outputs, rtol, atol, this_machine(venv) if v.name != BIT_IDENTICAL else {})
        return EXIT[v.name]
    finally:
        if keep and tree.exists():
            remove = f"git worktree remove --force {shlex.quote(str(tree))} && rm -rf {shlex.quote(str(base))}"
            print(f"\nKept the worktree: {tree} (and the MLflow store beside it; remove both with: {remove})")
        else:
            _remove(tree, base)


def _remove(tree: Path, base: Path) -> None:
    """Remove the worktree and its temp dir, also after Ctrl-C (git's bookkeeping of it too)."""
    with contextlib.suppress(KeyboardInterrupt):
        Git().run("worktree", "remove", "--force", str(tree))
        shutil.rmtree(base, ignore_errors=True)
        Git().run("worktree", "prune")


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nox -s reproduce --", description="Recompute a past run in isolation and say whether it reproduces."
    )
    parser.add_argument("run", nargs="?", default="", help="a run tag or results commit (default: the branch's newest)")
    parser.add_argument("--rtol", type=float, default=RTOL, help=f"relative tolerance for metrics (default {RTOL})")
    parser.add_argument("--atol", type=float, default=ATOL, help=f"absolute tolerance for metrics (default {ATOL})")
    parser.add_argument("--keep", action="store_true", help="keep the worktree and print its path")
    parser.add_argument("--track", action="store_true", help="log the stages to the configured MLflow store")
    args = parser.parse_args(argv)
    if args.rtol < 0 or args.atol < 0:
        parser.error("--rtol and --atol must be zero or positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runner.at_root()
    # Both, explicitly: a shell that starts a command in the background hands it SIGINT ignored, and Ctrl-C (or a
    # cancelled job's SIGTERM) must still stop the reproduction and remove its worktree.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted)
    try:
        return reproduce(args.run, args.rtol, args.atol, args.keep, args.track)
    except CannotReproduce as exc:
        print(f"\nCould not reproduce: {exc}", flush=True)
        return CANNOT
    except Refused as exc:  # a refusal of the shared plumbing (an unreadable .env, say): its one line
        print(f"\nCould not reproduce: {exc}", flush=True)
        return CANNOT
    except KeyboardInterrupt:
        print("\nInterrupted: the worktree is removed; nothing of the run was changed.", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
