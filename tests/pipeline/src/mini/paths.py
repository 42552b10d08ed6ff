"""Every path the tests' pipeline reads and writes, relative to the project root (dvc.yaml names the same)."""

from pathlib import Path

from src.runloop.environment import ROOT

POINTS = Path("data/points.csv")
MODEL = Path("models/model.json")
MODEL_CODE = Path("src/mini/model.py")  # the model as MLflow loads it, logged with the weights
TRAIN_METRICS = Path("metrics/train.json")
EVALUATE_METRICS = Path("metrics/evaluate.json")
ROC = Path("plots/roc.csv")


def write(path: Path, text: str) -> None:
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / path).write_text(text)


def read_points() -> list[tuple[float, float, int]]:
    rows = (ROOT / POINTS).read_text().splitlines()[1:]
    return [(float(x), float(y), int(label)) for x, y, label in (row.split(",") for row in rows)]


def split(points: list) -> tuple[list, list]:
    """Every fifth point is held out for evaluation."""
    return [p for i, p in enumerate(points) if i % 5], [p for i, p in enumerate(points) if not i % 5]
