"""Stage `prepare`: stratified splits, scaled with the training split's statistics only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.example import config
from src.example.prepare import prepare
from src.example.query import query
from src.runloop.stage import BadInput


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return query("breast_cancer")


def test_prepare_splits_stratifies_and_scales_with_train_statistics(raw):
    splits = prepare(raw, test_size=0.2, val_size=0.2, seed=42)
    features = [c for c in raw.columns if c != config.TARGET]

    assert [len(s) for s in splits] == [341, 114, 114]
    for part in splits:
        assert list(part.columns) == list(raw.columns)
        # Stratified: each split's share of class 1 is the raw share, up to one row.
        assert abs(part[config.TARGET].mean() - raw[config.TARGET].mean()) <= 1 / len(part)
    assert np.allclose(splits.train[features].mean(), 0, atol=1e-9)
    assert np.allclose(splits.train[features].std(ddof=0), 1, atol=1e-9)
    # Fitted on train alone: the held-out splits are not centred themselves.
    assert not np.allclose(splits.test[features].mean(), 0, atol=1e-3)

    # Each column is one increasing affine map of the raw column, and undoing it gives back exactly the raw
    # rows (targets included): the three splits partition the data, nothing lost, duplicated or leaked.
    together = pd.concat(splits, ignore_index=True)
    unscaled = together.copy()
    for col in features:
        slope, offset = np.polyfit(np.sort(raw[col]), np.sort(together[col]), 1)
        assert slope > 0
        unscaled[col] = (together[col] - offset) / slope

    # Raw values have at most five decimals, so rounding to six undoes float noise without merging rows.
    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype(float).round(6).sort_values(list(frame.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(unscaled), ordered(raw))


def test_prepare_is_deterministic_for_a_seed(raw):
    first = prepare(raw, 0.2, 0.2, seed=7)
    for a, b in zip(first, prepare(raw, 0.2, 0.2, seed=7), strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert not first.test.equals(prepare(raw, 0.2, 0.2, seed=8).test)


@pytest.mark.parametrize(
    ("test_size", "val_size", "message"),
    [
        (0.5, 0.5, r"prepare.test_size \+ prepare.val_size is 1: nothing is left to train on — make their sum less"),
        (0.6, 0.7, r"prepare.test_size \+ prepare.val_size is 1.3: nothing is left to train on"),
        (1.5, 0.2, r"prepare.test_size is 1.5: it must be a share between 0 and 1 — fix params.yaml"),
        (0.2, 0.0, r"prepare.val_size is 0.0: it must be a share between 0 and 1 — fix params.yaml"),
    ],
)
def test_prepare_rejects_bad_sizes(raw, test_size, val_size, message):
    with pytest.raises(BadInput, match=message):
        prepare(raw, test_size, val_size, seed=42)


def test_prepare_requires_the_target_column(raw):
    with pytest.raises(BadInput, match="the raw data has no 'target' column — re-run the query stage"):
        prepare(raw.drop(columns=config.TARGET), 0.2, 0.2, seed=42)
