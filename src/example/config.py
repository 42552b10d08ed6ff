"""Paths and settings of the example pipeline: one place for every path its stages read and write."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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
