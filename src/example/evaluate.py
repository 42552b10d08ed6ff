"""Stage `evaluate`: score the chosen model on the held-out test split; metrics and plots for DVC and MLflow."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any, NamedTuple

import pandas as pd

from src.example import config
from src.runloop.stage import BadInput, load_params, run_stage

log = logging.getLogger(__name__)


class Evaluation(NamedTuple):
    metrics: dict[str, float]
    confusion: pd.DataFrame  # one row per test sample: actual, predicted (DVC's confusion template)
    roc: pd.DataFrame  # fpr, tpr, threshold


def evaluate(model: Any, test_data: pd.DataFrame, threshold: float) -> Evaluation:
    """Test metrics, the confusion pairs and the ROC curve of `model` at `threshold`."""
    from sklearn import metrics as m

    if not 0 < threshold < 1:
        raise BadInput(f"evaluate.threshold is {threshold}: it must lie between 0 and 1 — fix params.yaml")
    if config.TARGET not in test_data.columns:
        raise BadInput(f"the test data has no '{config.TARGET}' column — re-run the prepare stage")
    x, y = test_data.drop(columns=config.TARGET), test_data[config.TARGET].to_numpy()
    proba = model.predict_proba(x)[:, 1]
    pred = (proba >= threshold).astype(int)
    scores = {
        "accuracy": m.accuracy_score(y, pred),
        "precision": m.precision_score(y, pred, zero_division=0),
        "recall": m.recall_score(y, pred, zero_division=0),
        "f1": m.f1_score(y, pred, zero_division=0),
        "roc_auc": m.roc_auc_score(y, proba),
    }
    fpr, tpr, thresholds = m.roc_curve(y, proba)
    return Evaluation(
        metrics={k: round(float(v), 6) for k, v in scores.items()},
        confusion=pd.DataFrame({"actual": y, "predicted": pred}),
        roc=pd.DataFrame({"fpr": fpr.round(6), "tpr": tpr.round(6), "threshold": thresholds.round(6)}),
    )


def figure(evaluation: Evaluation) -> Any:
    """Confusion matrix and ROC curve side by side, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = pd.crosstab(evaluation.confusion["actual"], evaluation.confusion["predicted"]).reindex(
        index=[0, 1], columns=[0, 1], fill_value=0
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    left.imshow(counts.to_numpy(), cmap="Blues")
    for (i, j), n in pd.DataFrame(counts.to_numpy()).stack().items():
        left.text(j, i, str(n), ha="center", va="center")
    left.set(title="Confusion matrix", xlabel="predicted", ylabel="actual", xticks=[0, 1], yticks=[0, 1])
    right.plot(evaluation.roc["fpr"], evaluation.roc["tpr"])
    right.plot([0, 1], [0, 1], linestyle="--", color="grey")
    right.set(
        title=f"ROC (AUC {evaluation.metrics['roc_auc']:.3f})",
        xlabel="false positive rate",
        ylabel="true positive rate",
    )
    fig.tight_layout()
    return fig


def main() -> None:
    import mlflow

    from src.runloop import tracking

    params = load_params("evaluate", types={"threshold": float})
    experiment = load_params("train", types={"experiment": str})["experiment"]
    root = config.ROOT
    with open(root / config.MODEL, "rb") as f:
        model = pickle.load(f)  # noqa: S301 - our own stage output, tracked by DVC
    test_data = pd.read_csv(root / config.TEST_DATA)
    log.info("Evaluation start: threshold=%s rows=%d", params["threshold"], len(test_data))
    with tracking.stage_run("evaluate", experiment, after="train", params=params):
        result = evaluate(model, test_data, float(params["threshold"]))
        for path in (config.EVALUATE_METRICS, config.CONFUSION_PLOT, config.EVALUATION_PNG):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / config.EVALUATE_METRICS).write_text(json.dumps(result.metrics, indent=2) + "\n")
        result.confusion.to_csv(root / config.CONFUSION_PLOT, index=False)
        result.roc.to_csv(root / config.ROC_PLOT, index=False)
        # No "Software" entry: the PNG stays byte-identical across matplotlib patch releases.
        figure(result).savefig(root / config.EVALUATION_PNG, metadata={"Software": None})

        mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items()})
        mlflow.log_artifact(str(root / config.EVALUATION_PNG), artifact_path="plots")
    log.info(
        "Evaluation complete: test_accuracy=%.3f roc_auc=%.3f", result.metrics["accuracy"], result.metrics["roc_auc"]
    )


if __name__ == "__main__":
    run_stage(main)
