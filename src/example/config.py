"""Paths and settings shared by the stages and by tasks.py.

Cheap to import on purpose: tasks.py reads it on every `invoke` call, so nothing heavy (mlflow, dvc, sklearn)
is imported here.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
# Each stage that logs to MLflow records its run here, as an output of its own: when DVC restores the stage
# from its run cache, the stage does not execute, but this file comes back with the data and still names the
# MLflow run that produced it. Keeping it apart keeps the model and metrics byte-identical across re-runs.
RUNS_DIR = Path("runs")
TRAIN_RUN = RUNS_DIR / "train.json"
EVALUATE_RUN = RUNS_DIR / "evaluate.json"

TARGET = "target"

# Embedded MLflow store, used when no server is configured (both gitignored).
LOCAL_MLFLOW_DB = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"


def load_dotenv(root: Path = ROOT) -> None:
    """Read `<root>/.env` into os.environ; variables already set win."""
    from dotenv import load_dotenv as _load

    _load(root / ".env", override=False)


def env_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, with an empty string counted as unset (as `.env.example` leaves them)."""
    value = (os.environ if env is None else env).get(name, "").strip()
    return value or None


def embedded_tracking_uri(root: Path = ROOT) -> str:
    """The MLflow store inside the project, used when no server is configured."""
    return f"sqlite:///{root / LOCAL_MLFLOW_DB}"


def tracking_uri(env: Mapping[str, str] | None = None, root: Path = ROOT) -> str:
    """MLflow tracking URI: MLFLOW_URL (the runner's name), else MLFLOW_TRACKING_URI, else the embedded store."""
    return env_value("MLFLOW_URL", env) or env_value("MLFLOW_TRACKING_URI", env) or embedded_tracking_uri(root)


def is_local_store(uri: str) -> bool:
    """True for a store on this machine (sqlite or a folder), False for a tracking server."""
    # "databricks" alone (no scheme) is MLflow's name for the default Databricks workspace.
    return uri != "databricks" and urlsplit(uri).scheme not in ("http", "https", "databricks")


def redact(uri: str) -> str:
    """The URI without any user:password part, safe to print or store."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]  # keeps an IPv6 address's brackets and the port
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


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
    log = logging.getLogger(main.__module__)
    try:
        main()
    except KeyError as exc:
        log.error("params.yaml misses the key %s — add it (params.yaml's comments say what each key means)", exc)
        sys.exit(1)
    except ValueError as exc:
        log.error("%s", exc)
        sys.exit(1)
