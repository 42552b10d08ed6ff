"""Stage `query`: fetch the raw data set (here: one that ships inside scikit-learn, so no download)."""

from __future__ import annotations

import logging

import pandas as pd

from src.example import config
from src.runloop.stage import BadInput, load_params, run_stage

log = logging.getLogger(__name__)

DATASETS = ("breast_cancer",)


def query(dataset: str) -> pd.DataFrame:
    """The raw table: one row per sample, feature columns plus `target`."""
    if dataset not in DATASETS:
        raise BadInput(f"query.dataset is '{dataset}': unknown data set — use one of: {', '.join(DATASETS)}")
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    return frame.rename(columns={"target": config.TARGET})


def main() -> None:
    params = load_params("query", types={"dataset": str})
    log.info("Query start: dataset=%s", params["dataset"])
    raw = query(params["dataset"])
    out = config.ROOT / config.RAW_DATA
    out.parent.mkdir(parents=True, exist_ok=True)
    raw.to_csv(out, index=False)
    log.info("Query complete: rows=%d columns=%d -> %s", len(raw), raw.shape[1], config.RAW_DATA)


if __name__ == "__main__":
    run_stage(main)
