"""Stage `evaluate`: accuracy on the held-out points, and a ROC curve."""

from __future__ import annotations

import json
import logging

from src.mini import paths
from src.mini.model import probability
from src.mini.train import accuracy
from src.runloop import tracking
from src.runloop.stage import BadInput, load_params, run_stage

log = logging.getLogger(__name__)


def roc(weights: list[float], points: list[tuple[float, float, int]]) -> list[tuple[float, float]]:
    positives = sum(label for _, _, label in points) or 1
    negatives = (len(points) - positives) or 1
    curve = []
    for step in range(11):
        cut = step / 10
        pred = [(probability(weights, x, y) >= cut, label) for x, y, label in points]
        tpr = sum(p and label for p, label in pred) / positives
        fpr = sum(p and not label for p, label in pred) / negatives
        curve.append((round(fpr, 6), round(tpr, 6)))
    return curve


def main() -> None:
    import mlflow

    params = load_params("evaluate")
    experiment = load_params("train")["experiment"]
    threshold = float(params["threshold"])
    if not 0 < threshold < 1:
        raise BadInput(f"evaluate.threshold is {threshold}: it must lie between 0 and 1 — fix params.yaml")
    weights = json.loads((paths.ROOT / paths.MODEL).read_text())["weights"]
    _train, held_out = paths.split(paths.read_points())
    with tracking.stage_run("evaluate", experiment, after="train", params=params):
        metrics = {"accuracy": accuracy(weights, held_out, threshold)}
        paths.write(paths.EVALUATE_METRICS, json.dumps(metrics, indent=2) + "\n")
        paths.write(paths.ROC, "fpr,tpr\n" + "".join(f"{f},{t}\n" for f, t in roc(weights, held_out)))
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    log.info("Evaluation complete: accuracy=%.3f", metrics["accuracy"])


if __name__ == "__main__":
    run_stage(main)
