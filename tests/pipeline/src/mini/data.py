"""Stage `data`: points in the unit square, labelled by the side of a line they fall on, some labels flipped."""

from __future__ import annotations

import logging
import random

from src.mini import paths
from src.runloop.stage import BadInput, load_params, run_stage

log = logging.getLogger(__name__)


def make(rows: int, seed: int, noise: float) -> list[tuple[float, float, int]]:
    if not 0 <= noise < 0.5:
        raise BadInput(f"data.noise is {noise}: it must lie in [0, 0.5) — fix params.yaml")
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not cryptography
    points = []
    for _ in range(rows):
        x, y = round(rng.random(), 6), round(rng.random(), 6)
        label = int(y > 0.8 * x + 0.1)
        points.append((x, y, 1 - label if rng.random() < noise else label))
    return points


def main() -> None:
    params = load_params("data")
    points = make(int(params["rows"]), int(params["seed"]), float(params["noise"]))
    paths.write(paths.POINTS, "x,y,label\n" + "".join(f"{x},{y},{label}\n" for x, y, label in points))
    log.info("Data complete: rows=%d", len(points))


if __name__ == "__main__":
    run_stage(main)
