"""What a run tells: its metrics, its MLflow runs (redacted links), and the job summary on GitHub Actions."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from invoke import Context

from src.runloop import dvc_remote, environment, tracking
from src.runloop.commands import run
from src.runloop.dvc_repo import Dvc

# Columns the metrics table may take before it is shown one metric per line (when no terminal says otherwise).
WIDTH = 100


def run_link(record: Mapping[str, str]) -> str:
    """Where to see a recorded MLflow run: its page on a server, or its id in the embedded store."""
    uri = record["tracking_uri"]
    if environment.is_local_store(uri):
        return f"run {record['run_id']} in {uri}"
    return f"{uri.rstrip('/')}/#/experiments/{record['experiment_id']}/runs/{record['run_id']}"


def mlflow_lines(records: list[dict[str, Any]] | None = None) -> list[str]:
    """One line per MLflow run the outputs record (its stages, where to see it); how to browse a local store, once."""
    runs: dict[str, list[Mapping[str, str]]] = {}
    for record in tracking.run_records() if records is None else records:
        runs.setdefault(record["run_id"], []).append(record)
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


def summary(env: Mapping[str, str], dvc: Dvc, tag: str, commit: str, outcome: str, details: str = "") -> None:
    """Tell the run's outcome on stdout and, on GitHub Actions, in the job summary (with `details` below it)."""
    print(outcome)
    path = environment.env_value("GITHUB_STEP_SUMMARY", env)
    if not path:
        return
    links = "\n".join(f"- {line}" for line in mlflow_lines()) or "- MLflow: no run"
    more = f"\n### Environment and the branch's previous run\n\n```text\n{details.strip()}\n```\n" if details else ""
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            f"## Run `{tag}`\n\n- Commit: `{commit}`\n- {outcome}\n{links}\n\n"
            f"### Metrics\n\n{dvc.metrics_table(md=True) or 'none'}\n\n"
            f"### Params\n\n{dvc.params_table(md=True) or 'none'}\n{more}"
        )


def details(c: Context, dvc: Dvc, prefix: str, tag: str, remote: str, described: dict[str, str]) -> str:
    """What the results commit and the job summary tell beyond the metrics: the machine the run ran on (as
    `machine.describe` has it), and its params and metrics against the previous run of its branch (DVC's diffs,
    indented as the message's sections)."""
    from src.runloop import comparison, machine, runs

    listed = runs.listed(c, prefix, remote)
    branch = next((r.branch for r in listed if r.tag == tag), None)
    head, _, body = comparison.against_previous(c, dvc, runs.previous(listed, tag, branch), branch).partition("\n")
    indented = "".join(f"    {line}\n" if line else "\n" for line in body.splitlines())
    return f"{machine.section(described)}\n{head}\n{indented}"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned columns under `header`, indented two spaces."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(f"  {line}" for line in lines)


def mlflow_link(env: Mapping[str, str], run_id: str) -> str:
    """An MLflow run's page on the configured server (MLflow's /#/runs/<id> finds its experiment), else its id."""
    uri = environment.tracking_uri(env)
    return run_id if environment.is_local_store(uri) else f"{environment.redact(uri).rstrip('/')}/#/runs/{run_id}"


def runs_table(listed: list, env: Mapping[str, str]) -> str:
    """`invoke runs`: one row per run, newest first (git only: no MLflow or DVC here)."""
    if not listed:
        return "No runs yet: `invoke tag-run` launches one."
    rows = [
        (
            r.date[:16].replace("T", " "),
            r.tag,
            r.branch or "?",
            r.commit[:12],
            r.state,
            # The headline: the results commit's last metric file, as `dvc metrics show` lists them.
            ", ".join(m.split(" ", 1)[1] for m in _headline(r.metrics)) or "-",
            mlflow_link(env, r.mlflow_runs[0]) if r.mlflow_runs else "-",
        )
        for r in listed
    ]
    return table(("tagged", "tag", "branch", "commit", "state", "metrics", "MLflow"), rows)


def _headline(metrics: list[str], n: int = 3) -> list[str]:
    last = metrics[-1].split(" ", 1)[0] if metrics else ""
    return [m for m in metrics if m.split(" ", 1)[0] == last][:n]


def chain(c: Context, env: Mapping[str, str], r) -> str:
    """`invoke runs --run RUN`: the whole chain of one run, from its tag to its outputs and the remote."""
    from src.runloop import machine, runs

    lines = [
        f"Run {r.tag}: {r.state}",
        f"  tag          {r.tag}, tagged {r.date} on branch {r.branch or '?'}",
        *[f"               {line}" for line in (r.message or "(no message)").splitlines()],
        f"  tagged       {r.commit}  {git_subject(c, r.commit)}",
        f"  results      {r.results + ' on ' + (r.where or '?') if r.results else 'none yet: ' + r.state}",
        f"  CI run       {r.ci_run or '-'}",
        *[f"  MLflow run   {mlflow_link(env, run_id)}" for run_id in r.mlflow_runs],
    ]
    recorded = runs.outputs(c, r)
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


def git_subject(c: Context, rev: str) -> str:
    return run(c, "git", "log", "-1", "--format=%s", rev).stdout.strip()
