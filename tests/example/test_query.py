"""Stage `query`: the raw table."""

from __future__ import annotations

import pandas as pd
import pytest

from src.example import config
from src.example.query import query
from src.runloop.stage import BadInput


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return query("breast_cancer")


def test_query_returns_the_breast_cancer_table(raw):
    assert raw.shape == (569, 31)
    assert raw.columns[-1] == config.TARGET
    assert raw[config.TARGET].value_counts().to_dict() == {1: 357, 0: 212}
    assert not raw.isna().any().any()
    assert all(pd.api.types.is_float_dtype(raw[c]) for c in raw.columns if c != config.TARGET)
    pd.testing.assert_frame_equal(query("breast_cancer"), raw)


def test_query_rejects_an_unknown_dataset():
    with pytest.raises(BadInput, match="query.dataset is 'iris': unknown data set — use one of: breast_cancer$"):
        query("iris")
