"""What a run tells: its metrics, its MLflow runs (redacted links), and the job summary on GitHub Actions."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from invoke import Context

from src.runloop import environment, tracking
from src.runloop.commands import DVC, run

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


def metrics(c: Context, env: Mapping[str, str]) -> list[str]:
    """The pipeline's metrics as `file key: value` lines, flattened, as `dvc metrics show` finds them."""
    shown = run(c, *DVC, "metrics", "show", "--json", env=env)
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


def metrics_text(table: str, lines: Callable[[], list[str]], width: int) -> str:
    """DVC's metrics table, or one metric per line (`file key: value`) when the table is wider than `width`."""
    if not table:
        return "  (no metrics)"
    if max(len(line) for line in table.splitlines()) <= width:
        return table
    return "\n".join(f"  {line}" for line in lines()) or table


def results(c: Context, env: Mapping[str, str], remote: bool) -> None:
    """Print the metrics, the MLflow runs and where the data went, after `invoke repro`."""
    print("\nResults")
    shown = run(c, *DVC, "metrics", "show", env=env)
    table = shown.stdout.rstrip() if shown.ok else ""
    print(metrics_text(table, lambda: metrics(c, env), shutil.get_terminal_size((WIDTH, 24)).columns))
    for line in mlflow_lines() or [f"MLflow: {environment.redact(env['MLFLOW_TRACKING_URI'])}"]:
        print(line)
    where = "the DVC remote, after `invoke share`" if remote else "the local DVC cache (.dvc/cache), no remote"
    print(f"Data and models: {environment.ROOT} (outputs listed in dvc.yaml); shared through {where}.")


def summary(c: Context, env: Mapping[str, str], tag: str, commit: str, outcome: str) -> None:
    """Tell the run's outcome on stdout and, on GitHub Actions, in the job summary."""
    print(outcome)
    path = environment.env_value("GITHUB_STEP_SUMMARY", env)
    if not path:
        return
    shown = run(c, *DVC, "metrics", "show", "--md", env=env)
    params = run(c, *DVC, "params", "diff", "--all", "--md", env=env)
    links = "\n".join(f"- {line}" for line in mlflow_lines()) or "- MLflow: no run"
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            f"## Run `{tag}`\n\n- Commit: `{commit}`\n- {outcome}\n{links}\n\n"
            f"### Metrics\n\n{shown.stdout.strip() if shown.ok else 'none'}\n\n"
            f"### Params\n\n{params.stdout.strip() if params.ok else 'none'}\n"
        )
