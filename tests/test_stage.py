"""src/runloop/stage.py: params sections, and how a stage reports a bad input."""

from __future__ import annotations

import logging
import os

import pytest

from src.runloop import environment, stage


def test_load_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  seed: 3\nevaluate:\n")
    assert stage.load_params("prepare", params) == {"seed": 3}
    assert stage.load_params("evaluate", params) == {}
    with pytest.raises(ValueError, match="params.yaml has no 'train:' section — add it"):
        stage.load_params("train", params)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ValueError("prepare.test_size is 1.5: fix params.yaml"), "prepare.test_size is 1.5: fix params.yaml"),
        (KeyError("seed"), "params.yaml misses the key 'seed' — add it"),
    ],
)
def test_run_stage_reports_a_bad_input_in_one_line(caplog, error, message):
    def main() -> None:
        raise error

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        stage.run_stage(main)
    assert exit_info.value.code == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR][0].startswith(message)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback


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
