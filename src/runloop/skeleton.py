"""The one-stage pipeline `invoke init` puts in place of the example: the smallest project the machinery runs.

One stage, `train` = src/<package>/train.py = params.yaml `train:`, shaped like any stage should be: a pure core
(explicit arguments, no file I/O), a thin `main()` that logs to MLflow through `tracking.stage_run` and runs as
`run_stage(main)`, its paths in one config module, and its own tests (tests/<package>/test_train.py).
"""

from __future__ import annotations

import ast
from pathlib import Path
from string import Template

from src.runloop.environment import ROOT

# What a stage imports from the machinery; their own imports from it are found by `runloop_deps`.
STAGE_IMPORTS = ("stage", "tracking")

INIT = '''"""The $name pipeline: dvc.yaml lists its stages, params.yaml their settings."""
'''

CONFIG = '''"""Every path the pipeline reads and writes, relative to the project root (dvc.yaml names the same)."""

from __future__ import annotations

from pathlib import Path

from src.runloop.environment import ROOT

MODEL = Path("models/model.json")
METRICS = Path("metrics/train.json")


def write(path: Path, text: str) -> None:
    """Write an output under the project root, making its folder first."""
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / path).write_text(text)
'''

TRAIN = '''"""Stage `train`: fit a model and record how good it is. A skeleton: keep its shape, put yours in it.

The core (`sample`, `fit`, `mse`) takes explicit arguments and touches no file; `main()` reads params.yaml's
`train:` section once, calls the core inside an MLflow run and writes the outputs dvc.yaml names.
"""

from __future__ import annotations

import json
import logging
import random

from src.runloop import tracking
from src.runloop.stage import BadInput, load_params, run_stage

from . import config

log = logging.getLogger(__name__)


def sample(rows: int, seed: int, noise: float) -> list[tuple[float, float]]:
    """A toy data set, y = 2x + 1 plus gaussian noise: load your data here instead (or in a stage of its own)."""
    if rows < 2:
        raise BadInput(f"train.rows is {rows}: a line needs at least 2 points — fix params.yaml")
    if noise < 0:
        raise BadInput(f"train.noise is {noise}: a standard deviation cannot be negative — fix params.yaml")
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not cryptography
    xs = [rng.random() for _ in range(rows)]
    return [(round(x, 6), round(2 * x + 1 + rng.gauss(0, noise), 6)) for x in xs]


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through `points`, as (slope, intercept): put your model here."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        raise BadInput("every point has the same x: no line fits them — check the data")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return round(slope, 6), round(mean_y - slope * mean_x, 6)


def mse(points: list[tuple[float, float]], slope: float, intercept: float) -> float:
    """Mean squared error of the line on `points`."""
    return round(sum((y - slope * x - intercept) ** 2 for x, y in points) / len(points), 6)


def main() -> None:
    import mlflow

    params = load_params("train")
    points = sample(int(params["rows"]), int(params["seed"]), float(params["noise"]))
    log.info("Training start: rows=%d", len(points))
    settings = {key: params[key] for key in ("rows", "seed", "noise")}
    with tracking.stage_run("train", params["experiment"], params=settings):
        slope, intercept = fit(points)
        metrics = {"mse": mse(points, slope, intercept)}
        config.write(config.MODEL, json.dumps({"slope": slope, "intercept": intercept}) + "\\n")
        config.write(config.METRICS, json.dumps(metrics, indent=2) + "\\n")
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(config.ROOT / config.MODEL), artifact_path="model")
    log.info("Training complete: mse=%.4f slope=%.3f intercept=%.3f", metrics["mse"], slope, intercept)


if __name__ == "__main__":
    run_stage(main)
'''

TEST = '''"""Stage `train`: its core, a bad input as one clear line, and the stage run by `invoke repro` in a copy."""

from __future__ import annotations

import json

import pytest
from gitrepos import copy_project, experiment, invoke_repro, record

from src.$package.train import BadInput, fit, mse, sample


def test_fit_finds_the_line_through_exact_points():
    points = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]

    assert fit(points) == (2.0, 1.0)
    assert mse(points, 2.0, 1.0) == 0.0


def test_sample_is_reproducible_from_its_seed():
    assert sample(50, 3, 0.1) == sample(50, 3, 0.1) != sample(50, 4, 0.1)
    slope, intercept = fit(sample(500, 3, 0.1))
    assert abs(slope - 2) < 0.05 and abs(intercept - 1) < 0.05


def test_too_few_rows_is_one_clear_line():
    with pytest.raises(BadInput, match=r"^train.rows is 1: a line needs at least 2 points — fix params.yaml$$"):
        sample(1, 0, 0.1)


@pytest.mark.slow
def test_invoke_repro_runs_the_stage_and_records_its_mlflow_run(tmp_path, isolated_env, untouched_checkout):
    from mlflow.tracking import MlflowClient

    project = copy_project(tmp_path / "project", example=True)  # a copy with this project's own pipeline

    code, out = invoke_repro(project)

    assert code == 0, out
    assert "Running stage 'train'" in out
    metrics = json.loads((project / "metrics/train.json").read_text())
    saved = record(project, "train")
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    run = client.get_run(saved["run_id"])
    assert run.data.metrics["mse"] == metrics["mse"] < 0.05
    assert client.get_experiment(run.info.experiment_id).name == experiment(project)
    assert saved["run_id"] in out
'''

PARAMS = """# One section per stage: stage `train` = src/$package/train.py = `train:` here.
train:
  # The MLflow experiment the runs go to: the project's name (invoke.yaml), which `invoke init` keeps it.
  experiment: $name
  rows: 200           # size of the toy data set
  seed: 0
  noise: 0.1          # standard deviation of the noise on y
"""

DVC_YAML = """# The pipeline. Stage name = src/$package/<stage>.py = params.yaml section. Each stage depends on its
# own modules and the machinery's modules it imports, so a change there re-runs it instead of restoring old
# results. Every output is cached (no `cache: false`), so `dvc push --run-cache` carries all of it.
stages:
  train:
    cmd: python -m src.$package.train
    deps:
      - src/$package/train.py
      - src/$package/config.py
$deps
    params:
      - train
    outs:
      - models/model.json
      - runs/train.json
    metrics:
      - metrics/train.json
"""


def runloop_deps(root: Path = ROOT) -> list[str]:
    """The machinery's modules a stage runs: what it imports from src/runloop/, and what those import in turn."""
    found: set[str] = set()
    todo = list(STAGE_IMPORTS)
    while todo:
        module = todo.pop()
        path = root / "src" / "runloop" / f"{module}.py"
        if module in found or not path.exists():
            continue
        found.add(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "src.runloop":
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("src.runloop."):
                todo.append(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                todo += [a.name.split(".")[2] for a in node.names if a.name.startswith("src.runloop.")]
    return [f"src/runloop/{module}.py" for module in sorted(found)]


def files(name: str, package: str, root: Path = ROOT) -> dict[str, str]:
    """The skeleton's files (path → text) for project `name`, its code in src/<package>/."""
    deps = "\n".join(f"      - {path}" for path in runloop_deps(root))
    fill = {"name": name, "package": package, "deps": deps}
    texts = {
        f"src/{package}/__init__.py": INIT,
        f"src/{package}/config.py": CONFIG,
        f"src/{package}/train.py": TRAIN,
        f"tests/{package}/test_train.py": TEST,
        "params.yaml": PARAMS,
        "dvc.yaml": DVC_YAML,
    }
    return {path: Template(text).substitute(fill) for path, text in texts.items()}
