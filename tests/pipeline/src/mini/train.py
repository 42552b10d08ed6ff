"""Stage `train`: logistic regression by gradient descent, in plain Python."""

from __future__ import annotations

import json
import logging
from typing import Any

from src.mini import paths
from src.mini.model import WEIGHTS, probability
from src.runloop import tracking
from src.runloop.stage import load_params, run_stage

log = logging.getLogger(__name__)


def fit(points: list[tuple[float, float, int]], epochs: int, learning_rate: float) -> list[float]:
    weights = [0.0, 0.0, 0.0]
    for _ in range(epochs):
        grad = [0.0, 0.0, 0.0]
        for x, y, label in points:
            err = probability(weights, x, y) - label
            grad = [grad[0] + err, grad[1] + err * x, grad[2] + err * y]
        weights = [w - learning_rate * g / len(points) for w, g in zip(weights, grad, strict=True)]
    return [round(w, 6) for w in weights]


def accuracy(weights: list[float], points: list[tuple[float, float, int]], threshold: float = 0.5) -> float:
    hits = sum(int(probability(weights, x, y) >= threshold) == label for x, y, label in points)
    return round(hits / len(points), 6)


def log_model(run: Any, train: list[tuple[float, float, int]], registered_model: str) -> None:
    """Log the model as MLflow loads it (src/mini/model.py with the weights) and register a version of it."""
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(paths.ROOT / paths.MODEL_CODE),
        artifacts={WEIGHTS: str(paths.ROOT / paths.MODEL)},
        signature=ModelSignature(
            inputs=Schema([ColSpec("double", "x"), ColSpec("double", "y")]), outputs=Schema([ColSpec("double")])
        ),
        input_example=pd.DataFrame([(x, y) for x, y, _ in train[:3]], columns=["x", "y"]),
        pip_requirements=tracking.locked_requirements("mlflow", "pandas"),
    )
    tracking.register_model(info.model_uri, registered_model, run)


def main() -> None:
    import mlflow

    params = load_params("train", types={"experiment": str, "registered_model": str})
    train, _held_out = paths.split(paths.read_points())
    with tracking.stage_run("train", params["experiment"], params={"epochs": params["epochs"]}) as run:
        weights = fit(train, int(params["epochs"]), float(params["learning_rate"]))
        metrics = {"train_accuracy": accuracy(weights, train)}
        paths.write(paths.MODEL, json.dumps({"weights": weights}) + "\n")
        paths.write(paths.TRAIN_METRICS, json.dumps(metrics, indent=2) + "\n")
        mlflow.log_metrics(metrics)
        log_model(run, train, params["registered_model"])
    log.info("Training complete: train_accuracy=%.3f", metrics["train_accuracy"])


if __name__ == "__main__":
    run_stage(main)
