"""Paths and settings of the example pipeline: one place for every path its stages read and write."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from src import tracking

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / "params.yaml"

# Stage outputs, relative to ROOT (dvc.yaml names the same paths).
RAW_DATA = Path("data/raw/breast_cancer.csv")
PREPARED_DIR = Path("data/prepared")
TRAIN_DATA = PREPARED_DIR / "train.csv"
VAL_DATA = PREPARED_DIR / "val.csv"
TEST_DATA = PREPARED_DIR / "test.csv"
MODEL = Path("models/model.pkl")
TRAIN_METRICS = Path("metrics/train.json")
EVALUATE_METRICS = Path("metrics/evaluate.json")
CONFUSION_PLOT = Path("plots/confusion.csv")
ROC_PLOT = Path("plots/roc.csv")
EVALUATION_PNG = Path("plots/evaluation.png")
TARGET = "target"


def load_params(section: str, path: Path = PARAMS_FILE) -> dict:
    """One stage's section of params.yaml."""
    import yaml

    params = yaml.safe_load(path.read_text()) or {}
    if section not in params:
        raise ValueError(f"params.yaml has no '{section}:' section — add it (see the README's pipeline table)")
    return params[section] or {}


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main() as a command: log lines on stderr, and a bad input as one clear line, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tracking.load_dotenv()  # `dvc repro` run by hand sees the same settings as `invoke repro`
    tracking.quiet()  # before main() imports mlflow, which reads its telemetry switch at import
    log = logging.getLogger(main.__module__)
    try:
        main()
    except KeyError as exc:
        log.error("params.yaml misses the key %s — add it (params.yaml's comments say what each key means)", exc)
        sys.exit(1)
    except ValueError as exc:
        log.error("%s", exc)
        sys.exit(1)
