"""Stage `train`: fit every candidate classifier, keep the best on the validation split."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from typing import Any, NamedTuple

import pandas as pd

from src.example import config
from src.runloop import tracking
from src.runloop.stage import BadInput, load_params, run_stage

log = logging.getLogger(__name__)


class TrainResult(NamedTuple):
    best: str
    model: Any
    val_accuracy: dict[str, float]  # per candidate, in params.yaml order


def _classifiers() -> dict[str, type]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    return {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gradient_boosting": GradientBoostingClassifier,
        "naive_bayes": GaussianNB,
    }


def _xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    if config.TARGET not in frame.columns:
        raise BadInput(f"the prepared data has no '{config.TARGET}' column — re-run the prepare stage")
    return frame.drop(columns=config.TARGET), frame[config.TARGET]


def train(
    train_data: pd.DataFrame, val_data: pd.DataFrame, candidates: Mapping[str, Mapping[str, Any]], seed: int
) -> TrainResult:
    """Fit each candidate on `train_data`; the best validation accuracy wins, ties go to the first listed."""
    from sklearn.metrics import accuracy_score

    known = _classifiers()
    if not candidates:
        raise BadInput(f"train.candidates is empty — list at least one of: {', '.join(known)}")
    unknown = sorted(set(candidates) - set(known))
    if unknown:
        raise BadInput(f"train.candidates names unknown model(s): {', '.join(unknown)} — use: {', '.join(known)}")
    x_train, y_train = _xy(train_data)
    x_val, y_val = _xy(val_data)
    models, scores = {}, {}
    for name, kwargs in candidates.items():
        cls = known[name]
        if "random_state" in cls().get_params():
            kwargs = {"random_state": seed, **(kwargs or {})}
        try:
            model = cls(**(kwargs or {})).fit(x_train, y_train)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"train.candidates.{name}: {exc} — fix its arguments in params.yaml") from exc
        models[name] = model
        scores[name] = round(float(accuracy_score(y_val, model.predict(x_val))), 6)
        log.info("Candidate %s: val_accuracy=%.4f", name, scores[name])
    best = max(scores, key=lambda n: scores[n])  # max keeps the first of equal scores
    return TrainResult(best, models[best], scores)


def _log_model(run: Any, model: Any, train_data: pd.DataFrame, registered_model: str) -> None:
    """Log the chosen model in MLflow's sklearn flavour and register it as a new version of `registered_model`."""
    import mlflow
    from mlflow.models import infer_signature

    features, _ = _xy(train_data)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(features, model.predict(features)),
        input_example=features.head(3),
        pip_requirements=tracking.locked_requirements("mlflow", "scikit-learn", "numpy", "scipy", "pandas"),
    )
    tracking.register_model(info.model_uri, registered_model, run)


def main() -> None:
    import mlflow

    params = load_params("train", types={"seed": int, "experiment": str, "registered_model": str, "candidates": dict})
    root = config.ROOT
    train_data = pd.read_csv(root / config.TRAIN_DATA)
    val_data = pd.read_csv(root / config.VAL_DATA)
    log.info("Training start: candidates=%s", ", ".join(params["candidates"]))
    with tracking.stage_run("train", params["experiment"]) as run:
        result = train(train_data, val_data, params["candidates"], int(params["seed"]))
        (root / config.MODEL).parent.mkdir(parents=True, exist_ok=True)
        with open(root / config.MODEL, "wb") as f:
            pickle.dump(result.model, f, protocol=5)
        metrics = {"best_val_accuracy": result.val_accuracy[result.best], "val_accuracy": result.val_accuracy}
        (root / config.TRAIN_METRICS).parent.mkdir(parents=True, exist_ok=True)
        (root / config.TRAIN_METRICS).write_text(json.dumps(metrics, indent=2) + "\n")

        mlflow.set_tag("best_model", result.best)
        mlflow.log_params(
            {"seed": params["seed"], "best_model": result.best}
            | {f"{n}.{k}": v for n, kw in params["candidates"].items() for k, v in (kw or {}).items()}
        )
        mlflow.log_metrics(
            {"best_val_accuracy": metrics["best_val_accuracy"]}
            | {f"val_accuracy.{n}": s for n, s in result.val_accuracy.items()}
        )
        _log_model(run, result.model, train_data, params["registered_model"])
    log.info("Training complete: best=%s val_acc=%.3f", result.best, result.val_accuracy[result.best])


if __name__ == "__main__":
    run_stage(main)
