"""Stage `prepare`: split into train/validation/test (stratified) and standardise the features."""

from __future__ import annotations

import logging
from typing import NamedTuple

import pandas as pd

from src.example import config
from src.runloop.stage import BadInput, load_params, run_stage

log = logging.getLogger(__name__)


class Splits(NamedTuple):
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def prepare(raw: pd.DataFrame, test_size: float, val_size: float, seed: int) -> Splits:
    """Stratified split, then scale every split with the statistics of the training split only."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if config.TARGET not in raw.columns:
        raise BadInput(f"the raw data has no '{config.TARGET}' column — re-run the query stage")
    for name, value in (("test_size", test_size), ("val_size", val_size)):
        if not 0 < value < 1:
            raise BadInput(f"prepare.{name} is {value}: it must be a share between 0 and 1 — fix params.yaml")
    if test_size + val_size >= 1:
        raise BadInput(
            f"prepare.test_size + prepare.val_size is {test_size + val_size:g}: nothing is left to train on "
            "— make their sum less than 1 in params.yaml"
        )
    rest, test = train_test_split(raw, test_size=test_size, stratify=raw[config.TARGET], random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_size / (1 - test_size), stratify=rest[config.TARGET], random_state=seed
    )
    features = [c for c in raw.columns if c != config.TARGET]
    scaler = StandardScaler().fit(train[features])

    def scaled(part: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(scaler.transform(part[features]), columns=features)
        out[config.TARGET] = part[config.TARGET].to_numpy()
        return out

    return Splits(scaled(train), scaled(val), scaled(test))


def main() -> None:
    params = load_params("prepare", types={"test_size": float, "val_size": float, "seed": int})
    log.info("Prepare start: %s", params)
    raw = pd.read_csv(config.ROOT / config.RAW_DATA)
    splits = prepare(raw, float(params["test_size"]), float(params["val_size"]), int(params["seed"]))
    (config.ROOT / config.PREPARED_DIR).mkdir(parents=True, exist_ok=True)
    for part, path in zip(splits, (config.TRAIN_DATA, config.VAL_DATA, config.TEST_DATA), strict=True):
        part.to_csv(config.ROOT / path, index=False)
    log.info("Prepare complete: train=%d val=%d test=%d", *(len(p) for p in splits))


if __name__ == "__main__":
    run_stage(main)
