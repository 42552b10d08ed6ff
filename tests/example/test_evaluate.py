"""Stage `evaluate`: test metrics, confusion pairs, ROC curve and the figure."""

from __future__ import annotations

import io
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from src.example import config
from src.example.evaluate import Evaluation, evaluate, figure
from src.example.prepare import Splits, prepare
from src.example.query import query
from src.example.train import train
from src.runloop.stage import BadInput


@pytest.fixture(scope="module")
def splits() -> Splits:
    return prepare(query("breast_cancer"), 0.2, 0.2, seed=42)


@pytest.fixture(scope="module")
def model(splits) -> Any:
    return train(splits.train, splits.val, {"logistic_regression": {"max_iter": 1000}}, seed=42).model


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _counts(confusion: pd.DataFrame) -> tuple[int, int, int, int]:
    actual, predicted = confusion["actual"], confusion["predicted"]
    return tuple(int(((actual == a) & (predicted == p)).sum()) for a, p in ((1, 1), (0, 1), (1, 0), (0, 0)))


def test_evaluate_metrics_match_the_confusion_pairs(model, splits):
    test = splits.test
    result = evaluate(model, test, threshold=0.5)

    assert list(result.confusion.columns) == ["actual", "predicted"]
    assert result.confusion["actual"].tolist() == test[config.TARGET].tolist()
    proba = model.predict_proba(test.drop(columns=config.TARGET))[:, 1]
    assert result.confusion["predicted"].tolist() == (proba >= 0.5).astype(int).tolist()

    tp, fp, fn, tn = _counts(result.confusion)
    assert tp + fp + fn + tn == len(test) == 114
    assert set(result.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert all(0 <= v <= 1 for v in result.metrics.values())
    assert result.metrics["accuracy"] == round((tp + tn) / len(test), 6)
    assert result.metrics["precision"] == round(tp / (tp + fp), 6)
    assert result.metrics["recall"] == round(tp / (tp + fn), 6)
    assert result.metrics["f1"] == round(2 * tp / (2 * tp + fp + fn), 6)
    assert result.metrics["accuracy"] > 0.9  # a sane model, not an inverted label

    roc = result.roc
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[0], roc["fpr"].iloc[-1], roc["tpr"].iloc[-1]) == (0, 0, 1, 1)
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    area = float(np.sum(np.diff(roc["fpr"]) * (roc["tpr"].iloc[1:].to_numpy() + roc["tpr"].iloc[:-1].to_numpy()) / 2))
    assert result.metrics["roc_auc"] == pytest.approx(area, abs=1e-5)


def test_evaluate_threshold_moves_predictions_not_the_curve(model, splits):
    low, high = evaluate(model, splits.test, 0.5), evaluate(model, splits.test, 0.99)
    assert high.confusion["predicted"].sum() < low.confusion["predicted"].sum()
    assert high.metrics["recall"] < low.metrics["recall"]
    assert high.metrics["roc_auc"] == low.metrics["roc_auc"]
    pd.testing.assert_frame_equal(high.roc, low.roc)


def test_evaluate_is_deterministic(model, splits):
    first, second = evaluate(model, splits.test, 0.5), evaluate(model, splits.test, 0.5)
    assert first.metrics == second.metrics
    pd.testing.assert_frame_equal(first.confusion, second.confusion)
    pd.testing.assert_frame_equal(first.roc, second.roc)


def _png(result: Evaluation) -> bytes:
    buffer = io.BytesIO()
    figure(result).savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def test_figure_shows_the_confusion_counts_and_roc(model, splits):
    result = evaluate(model, splits.test, 0.5)
    fig = figure(result)

    left, right = fig.axes
    tp, fp, fn, tn = _counts(result.confusion)
    assert left.get_title() == "Confusion matrix"
    assert left.images[0].get_array().tolist() == [[tn, fp], [fn, tp]]
    assert sorted(t.get_text() for t in left.texts) == sorted(str(n) for n in (tn, fp, fn, tp))
    assert right.get_title() == f"ROC (AUC {result.metrics['roc_auc']:.3f})"
    assert right.lines[0].get_xydata().tolist() == result.roc[["fpr", "tpr"]].to_numpy().tolist()

    png = _png(result)
    assert png.startswith(b"\x89PNG") and png == _png(result)


def test_figure_keeps_a_two_by_two_matrix_when_one_class_is_never_predicted(model, splits):
    result = evaluate(model, splits.test, 0.5)
    every_one_benign = result.confusion.assign(predicted=1)
    left = figure(result._replace(confusion=every_one_benign)).axes[0]
    assert left.images[0].get_array().tolist() == [[0, 42], [0, 72]]


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.1])
def test_evaluate_rejects_a_threshold_outside_0_1(model, splits, threshold):
    with pytest.raises(BadInput, match=f"^evaluate.threshold is {threshold}: it must lie between 0 and 1 — fix"):
        evaluate(model, splits.test, threshold)


def test_evaluate_requires_the_target_column(model, splits):
    with pytest.raises(BadInput, match="the test data has no 'target' column — re-run the prepare stage"):
        evaluate(model, splits.test.drop(columns=config.TARGET), 0.5)
