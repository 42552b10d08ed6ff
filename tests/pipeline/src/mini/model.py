"""The tests' model as MLflow serves it: a pyfunc model from code, its weights the DVC output models/model.json.

MLflow logs this file itself with the model and runs it when the model is loaded (`mlflow.pyfunc.load_model`), so
it imports only what the model's pip requirements install: no `src.` package of the project.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import pandas as pd

# The name of the weights file among the logged model's artifacts.
WEIGHTS = "weights"


def probability(weights: list[float], x: float, y: float) -> float:
    """The probability of label 1 at point (x, y)."""
    return 1 / (1 + math.exp(-(weights[0] + weights[1] * x + weights[2] * y)))


class LineModel(mlflow.pyfunc.PythonModel):
    """Predicts, for each row (x, y), the probability of label 1."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.weights = json.loads(Path(context.artifacts[WEIGHTS]).read_text())["weights"]

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> list[float]:
        return [probability(self.weights, x, y) for x, y in zip(model_input["x"], model_input["y"], strict=True)]


mlflow.models.set_model(LineModel())
