"""src/runloop/stage.py: params sections, and how a stage reports a bad input or a bug of its own."""

from __future__ import annotations

import inspect
import logging
import os

import pytest

from src.runloop import environment, stage

SECRET = "aws-secret-St9q-never-print"  # noqa: S105 - a value no tool knows: printed means leaked


def test_load_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  seed: 3\nevaluate:\n")
    assert stage.load_params("prepare", params) == {"seed": 3}
    assert stage.load_params("evaluate", params) == {}
    with pytest.raises(stage.ParamsError, match="params.yaml has no 'train:' section — add it"):
        stage.load_params("train", params)


def test_a_key_the_section_lacks_names_the_file_the_key_and_the_line_that_read_it(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  seed: 3\n  candidates:\n    forest: {depth: 6}\n")
    values = stage.load_params("train", params)
    line = inspect.currentframe().f_lineno

    with pytest.raises(stage.ParamsError) as missing:
        values["epochs"]  # noqa: B018 - the lookup is the test
    with pytest.raises(KeyError) as nested:  # a KeyError too: `except KeyError` around an optional key still works
        values["candidates"]["forest"]["trees"]  # noqa: B018

    here, fix = "tests/test_stage.py", "add it to params.yaml"
    assert str(missing.value) == f"params.yaml misses train.epochs, which {here} line {line + 3} reads — {fix}"
    assert (
        str(nested.value)
        == f"params.yaml misses train.candidates.forest.trees, which {here} line {line + 5} reads — {fix}"
    )
    assert values == {"seed": 3, "candidates": {"forest": {"depth": 6}}} and values.get("epochs", 10) == 10


def bad_params(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  seed: 3\n")
    return stage.load_params("train", tmp_path / "params.yaml")["epochs"]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (stage.BadInput("prepare.test_size is 1.5 — fix params.yaml"), "prepare.test_size is 1.5 — fix params.yaml"),
        (None, "params.yaml misses train.epochs, which tests/test_stage.py line "),
        (environment.SettingsError(f".env line 2 cannot be parsed {SECRET}"), ".env line 2 cannot be parsed ***"),
    ],
)
def test_run_stage_reports_a_bad_input_in_one_line(caplog, monkeypatch, tmp_path, error, message):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    def main() -> None:
        if error is None:
            bad_params(tmp_path)
        raise error

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        stage.run_stage(main)
    assert exit_info.value.code == 1
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert said.startswith(message) and "\n" not in said and SECRET not in said
    assert all(r.exc_info is None for r in caplog.records)  # no traceback


def frame_without_label() -> object:
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    return frame["label"]  # the stage's own bug: no such column


def shapes_that_do_not_broadcast() -> object:
    import numpy as np

    return np.ones(449) * np.ones(450)  # the stage's own bug: a shape off by one


def lookup_that_quotes_a_credential() -> object:
    urls = {"tracking": f"http://ci:{SECRET}@mlflow.example"}
    return urls[urls["tracking"]]  # the stage's own bug: the value used as a key


@pytest.mark.parametrize(
    ("bug", "raised"),
    [
        (frame_without_label, "KeyError: 'label'"),
        (
            shapes_that_do_not_broadcast,
            "ValueError: operands could not be broadcast together with shapes (449,) (450,)",
        ),
        (lookup_that_quotes_a_credential, "KeyError: 'http://mlflow.example'"),
    ],
)
def test_a_bug_in_the_stage_keeps_its_traceback_with_its_file_and_line(caplog, monkeypatch, bug, raised):
    # A KeyError or ValueError from the stage's own code is no params.yaml problem: its traceback says where it is.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    source, first = inspect.getsourcelines(bug)
    line = first + next(i for i, text in enumerate(source) if "the stage's own bug" in text)

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        stage.run_stage(bug)

    assert exit_info.value.code == 1
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert said.startswith("Traceback (most recent call last):")
    assert f'tests/test_stage.py", line {line}, in {bug.__name__}' in said
    assert said.splitlines()[-1].startswith(raised)
    assert "params.yaml" not in said
    assert SECRET not in said  # a credential it quotes is cut out


def test_run_stage_turns_telemetry_off_before_the_stage_runs(monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("DVC_NO_ANALYTICS", raising=False)
    seen = {}
    stage.run_stage(
        lambda: seen.update({k: os.environ.get(k) for k in ("MLFLOW_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS")})
    )
    assert seen == {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}


def test_run_stage_reads_dotenv_so_a_plain_dvc_repro_gets_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / ".env").write_text("MLFLOW_TRACKING_URI=http://from-dotenv:5000\n")
    monkeypatch.setattr(environment, "ROOT", tmp_path)
    seen = []
    stage.run_stage(lambda: seen.append(environment.tracking_uri()))
    assert seen == ["http://from-dotenv:5000"]
