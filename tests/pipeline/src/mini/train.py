"""Stage `train`: logistic regression by gradient descent, in plain Python."""

from __future__ import annotations

import json
import logging
import math

from src.mini import paths
from src.runloop import tracking
from src.runloop.stage import load_params, run_stage

log = logging.getLogger(__name__)


def probability(weights: list[float], x: float, y: float) -> float:
    return 1 / (1 + math.exp(-(weights[0] + weights[1] * x + weights[2] * y)))


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


def main() -> None:
    import mlflow

    params = load_params("train")
    train, _held_out = paths.split(paths.read_points())
    with tracking.stage_run("train", params["experiment"], params={"epochs": params["epochs"]}):
        weights = fit(train, int(params["epochs"]), float(params["learning_rate"]))
        metrics = {"train_accuracy": accuracy(weights, train)}
        paths.write(paths.MODEL, json.dumps({"weights": weights}) + "\n")
        paths.write(paths.TRAIN_METRICS, json.dumps(metrics, indent=2) + "\n")
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(paths.ROOT / paths.MODEL), artifact_path="model")
    log.info("Training complete: train_accuracy=%.3f", metrics["train_accuracy"])


if __name__ == "__main__":
    run_stage(main)
