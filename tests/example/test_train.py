"""Stage `train`: every candidate fitted, the best on validation kept."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from src.example import config
from src.example.prepare import Splits, prepare
from src.example.query import query
from src.example.train import train
from src.runloop.stage import BadInput

CANDIDATES = {
    "naive_bayes": None,  # `naive_bayes:` with nothing after it in params.yaml
    "logistic_regression": {"C": 0.5, "max_iter": 500},
    "random_forest": {"n_estimators": 10, "max_depth": 3},
}


@pytest.fixture(scope="module")
def splits() -> Splits:
    return prepare(query("breast_cancer"), 0.2, 0.2, seed=42)


def test_train_keeps_the_best_on_validation(splits):
    result = train(splits.train, splits.val, CANDIDATES, seed=42)

    assert list(result.val_accuracy) == list(CANDIDATES)
    assert all(0 <= v <= 1 for v in result.val_accuracy.values())
    assert result.val_accuracy[result.best] == max(result.val_accuracy.values())
    assert result.val_accuracy == {"naive_bayes": 0.929825, "logistic_regression": 0.982456, "random_forest": 0.95614}
    assert result.best == "logistic_regression"
    assert isinstance(result.model, LogisticRegression)
    assert (result.model.C, result.model.max_iter) == (0.5, 500)
    x_val, y_val = splits.val.drop(columns=config.TARGET), splits.val[config.TARGET]
    assert result.val_accuracy["logistic_regression"] == round(accuracy_score(y_val, result.model.predict(x_val)), 6)


def test_train_is_deterministic_and_seeds_the_models(splits):
    forest = {"random_forest": {"n_estimators": 10}}
    first = train(splits.train, splits.val, forest, seed=42)
    assert isinstance(first.model, RandomForestClassifier)
    assert first.model.random_state == 42
    same = train(splits.train, splits.val, forest, seed=42)
    assert pickle.dumps(first.model, protocol=5) == pickle.dumps(same.model, protocol=5)
    other = train(splits.train, splits.val, forest, seed=43)
    assert pickle.dumps(first.model, protocol=5) != pickle.dumps(other.model, protocol=5)
    # An explicit random_state in params.yaml wins over the stage seed.
    pinned = train(splits.train, splits.val, {"random_forest": {"n_estimators": 10, "random_state": 7}}, seed=42)
    assert pinned.model.random_state == 7


def test_train_breaks_ties_by_the_order_listed():
    # One feature separates the classes perfectly: every candidate scores 1.0 on validation.
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 20)
    frame = pd.DataFrame({"x": y * 10 + rng.normal(0, 0.1, len(y)), config.TARGET: y})
    data_train, data_val = frame.iloc[:30], frame.iloc[30:]

    first = train(data_train, data_val, {"naive_bayes": {}, "logistic_regression": {}}, seed=0)
    assert first.val_accuracy == {"naive_bayes": 1.0, "logistic_regression": 1.0}
    assert first.best == "naive_bayes"
    second = train(data_train, data_val, {"logistic_regression": {}, "naive_bayes": {}}, seed=0)
    assert second.best == "logistic_regression"
    assert isinstance(second.model, LogisticRegression)


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        (
            {"svm": {}, "logistic_regression": {}, "knn": {}},
            "train.candidates names unknown model\\(s\\): knn, svm — use: logistic_regression, random_forest, "
            "gradient_boosting, naive_bayes$",
        ),
        ({}, "train.candidates is empty — list at least one of: logistic_regression, random_forest"),
        (
            {"logistic_regression": {"bogus": 1}},
            "^train.candidates.logistic_regression: .*'bogus'.* — fix its arguments in params.yaml$",
        ),
        (
            {"random_forest": {"n_estimators": -1}},
            "^train.candidates.random_forest: .*n_estimators.* — fix its arguments in params.yaml$",
        ),
    ],
)
def test_train_rejects_bad_candidates(splits, candidates, message):
    with pytest.raises(BadInput, match=message):
        train(splits.train, splits.val, candidates, seed=42)


def test_train_requires_the_target_column(splits):
    with pytest.raises(BadInput, match="the prepared data has no 'target' column — re-run the prepare stage"):
        train(splits.train, splits.val.drop(columns=config.TARGET), {"naive_bayes": {}}, seed=42)
