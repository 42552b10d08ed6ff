"""What a run tells: its metrics, its MLflow runs (redacted links), and the job summary on GitHub Actions."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from src.runloop import ci, dvc_remote, environment, lock, machine, record
from src.runloop.dvc_repo import Dvc
from src.runloop.outcome_commit import Landing
from src.runloop.runs import Run, Runs, failed_where

# What a run's record says of the runner that took it (machine section keys), in `runs --run`'s words.
RUNNER_KEYS = (("runner", "runner"), ("labels", "labels"), ("gpu", "GPU"))
# Columns the metrics table may take before it is shown one metric per line (when no terminal says otherwise).
WIDTH = 100


def run_link(entry: Mapping[str, str]) -> str:
    """Where to see a recorded MLflow run: its page on a server, or its id in the embedded store."""
    uri = entry["tracking_uri"]
    if environment.is_local_store(uri):
        return f"run {entry['run_id']} in {uri}"
    return f"{uri.rstrip('/')}/#/experiments/{entry['experiment_id']}/runs/{entry['run_id']}"


def mlflow_lines(records: list[dict[str, Any]] | None = None) -> list[str]:
    """One line per MLflow run the outputs record (its stages, where to see it); how to browse a local store, once."""
    runs: dict[str, list[Mapping[str, str]]] = {}
    for entry in lock.run_records() if records is None else records:
        runs.setdefault(entry["run_id"], []).append(entry)
    lines = [f"MLflow ({', '.join(r['stage'] for r in same)}): {run_link(same[0])}" for same in runs.values()]
    stores = dict.fromkeys(
        r[0]["tracking_uri"] for r in runs.values() if environment.is_local_store(r[0]["tracking_uri"])
    )
    return lines + [f"Browse them: mlflow ui --backend-store-uri {shlex.quote(uri)}" for uri in stores]


def metrics_text(table: str, lines: Callable[[], list[str]], width: int) -> str:
    """DVC's metrics table, or one metric per line (`file key: value`) when the table is wider than `width`."""
    if not table:
        return "  (no metrics)"
    if max(len(line) for line in table.splitlines()) <= width:
        return table
    return "\n".join(f"  {line}" for line in lines()) or table


def results(env: Mapping[str, str], remote: bool, table: str, lines: list[str]) -> None:
    """Print the metrics (DVC's table, or one per line when wider than the terminal), the MLflow runs and where
    the data went, after `invoke repro`."""
    print("\nResults")
    print(metrics_text(table, lambda: lines, shutil.get_terminal_size((WIDTH, 24)).columns))
    for line in mlflow_lines() or [f"MLflow: {environment.redact(env['MLFLOW_TRACKING_URI'])}"]:
        print(line)
    where = "the DVC remote, after `invoke share`" if remote else "the local DVC cache (.dvc/cache), no remote"
    print(f"Data and models: {environment.ROOT} (outputs listed in dvc.yaml); shared through {where}.")


def summary(
    env: Mapping[str, str], dvc: Dvc, outcome: record.Outcome, landing: Landing, review: str | None = None
) -> None:
    """Tell the run's outcome on stdout and, on CI, in the job summary (its metrics, params, machine, comparison);
    `review`: what became of the pull request's comment."""
    said = landing.said
    print(said)
    if review:
        print(review)
    path = ci.summary_file(env)
    if not path:
        return
    command = landing.pull_request_command(outcome.subject or outcome.tag)
    opening = (
        f"\n`{landing.refused}` takes no direct push. Open a pull request of the results:\n\n```sh\n{command}\n```\n"
        if command
        else ""
    )
    links = "\n".join(f"- {line}" for line in mlflow_lines()) or "- MLflow: no run"
    more = "".join(
        f"\n### {title}\n\n```text\n{text.strip()}\n```\n"
        for title, text in (
            ("Environment", "\n".join(f"{k}: {v}" for k, v in outcome.machine.items())),
            ("The branch's previous run", outcome.comparison),
        )
        if text.strip()
    )
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            f"## Run `{outcome.tag}`\n\n- Commit: `{outcome.commit}`\n- {said}\n{links}\n"
            + (f"- {review}\n" if review else "")
            + f"{opening}\n"
            f"### Metrics\n\n{dvc.metrics_table(md=True) or 'none'}\n\n"
            f"### Params\n\n{dvc.params_table(md=True) or 'none'}\n{more}"
        )


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned columns under `header`, indented two spaces."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(f"  {line}" for line in lines)


def mlflow_link(env: Mapping[str, str], run_id: str) -> str:
    """An MLflow run's page on the configured server (MLflow's /#/runs/<id> finds its experiment), else its id."""
    uri = environment.tracking_uri(env)
    return run_id if environment.is_local_store(uri) else f"{environment.redact(uri).rstrip('/')}/#/runs/{run_id}"


def runs_table(listed: list[Run], env: Mapping[str, str]) -> str:
    """`invoke runs`: one row per run, newest first (git only: no MLflow or DVC here)."""
    if not listed:
        return "No runs yet: `invoke tag-run` launches one."
    rows = [
        (
            r.date[:16].replace("T", " "),
            r.tag,
            r.branch or "?",
            r.runner_class or "-",
            r.commit[:12],
            r.state,
            # The headline: the results commit's last metric file, as `dvc metrics show` lists them.
            ", ".join(m.split(" ", 1)[1] for m in _headline(r.metrics)) or "-",
            mlflow_link(env, r.mlflow_runs[0]) if r.mlflow_runs else "-",
        )
        for r in listed
    ]
    return table(("tagged", "tag", "branch", "runner", "commit", "state", "metrics", "MLflow"), rows)


def _headline(metrics: list[str], n: int = 3) -> list[str]:
    last = metrics[-1].split(" ", 1)[0] if metrics else ""
    return [m for m in metrics if m.split(" ", 1)[0] == last][:n]


def chain(runs: Runs, env: Mapping[str, str], r: Run) -> str:
    """`invoke runs --run RUN`: the whole chain of one run, from its tag to its outputs and the remote."""
    lines = [
        f"Run {r.tag}: {r.state}",
        f"  tag          {r.tag}, tagged {r.date} on branch {r.branch or '?'}",
        *[f"               {line}" for line in (r.message or "(no message)").splitlines()],
        f"  tagged       {r.commit}  {runs.git('log', '-1', '--format=%s', r.commit) or ''}",
        f"  runner       {_runner(r)}",
        f"  results      {r.results + ' on ' + (r.where or '?') if r.results else 'none: ' + r.state}",
        *_ending(r),
        f"  CI run       {r.ci_run or '-'}",
        *[f"  MLflow run   {mlflow_link(env, run_id)}" for run_id in r.mlflow_runs],
    ]
    recorded = runs.outputs(r)
    if recorded:
        try:
            held = dvc_remote.holds(env, [o.md5 for o in recorded])
        except Exception as exc:  # noqa: BLE001 - an unreachable remote is an answer here, not a crash
            said = environment.one_line(environment.scrub(str(exc)))
            held, lines = set(), [*lines, f"  (the DVC remote could not be asked: {said})"]
        where = (lambda o: "no remote configured") if held is None else (lambda o: "yes" if o.md5 in held else "NO")
        lines += ["", "Outputs and inputs (dvc.lock and .dvc files of the results commit):"]
        rows = [(o.path, o.md5, o.stage, where(o)) for o in recorded]
        lines.append(table(("path", "md5", "stage or .dvc file", "on the DVC remote"), rows))
    env_lines = [f"  {k}: {r.environment[k]}" for k in machine.KEYS if k in r.environment]
    lines += ["", "Environment of the runner:", *(env_lines or ["  not recorded in its results commit"])]
    return "\n".join(lines)


def _runner(r: Run) -> str:
    """The runner class a run asked for, and the runner that took it (its name, labels, GPU) as its record says."""
    machine = r.environment
    took = ", ".join(f"{what} {machine[key]}" for key, what in RUNNER_KEYS if machine.get(key))
    asked = f"class {r.runner_class}" if r.runner_class else "no class recorded (the default runners)"
    return asked + (f"; {took}" if took else "")


def _ending(r: Run) -> list[str]:
    """How a run that did not end with results ended, and its last lines of output, as its record says."""
    o = r.outcome
    if o is None or o.has_results:
        return [f"  attempts     {r.attempts}"] if r.attempts > 1 else []
    ended = " at ".join(filter(None, (record.describe(o.kind), failed_where(o))))
    lines = [f"  ended        {ended}; its record is on {r.where} ({r.attempts} attempt(s))"]
    return lines + [f"               | {line}" for line in o.output]
