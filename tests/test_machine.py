"""src/runloop/machine.py: what a run records of its machine; here, the GPUs `nvidia-smi` names, or why none.

nvidia-smi is not on the machines the suite runs on: the parsing is checked on output as nvidia-smi prints it for
`--query-gpu=name,driver_version --format=csv,noheader` (one line per GPU, the fields joined by ", "), and the probe
on a stand-in `nvidia-smi` on PATH that prints such output, or fails as nvidia-smi does without a driver.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from src.runloop import machine

# A DGX A100 box: eight A100s and the display GPU, one driver (nvidia-smi lists them in index order).
DGX = "\n".join(["NVIDIA A100-SXM4-80GB, 580.159.04"] * 4 + ["NVIDIA DGX Display, 580.159.04"]) + "\n"
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA "
    "driver is installed and running.\n"
)


@pytest.mark.parametrize(
    ("csv", "said"),
    [
        ("NVIDIA GeForce RTX 4090, 550.54.14\n", "NVIDIA GeForce RTX 4090 (driver 550.54.14)"),
        ("Tesla T4, 535.104.05\nTesla T4, 535.104.05\n", "2 x Tesla T4 (driver 535.104.05)"),
        (DGX, "4 x NVIDIA A100-SXM4-80GB (driver 580.159.04); NVIDIA DGX Display (driver 580.159.04)"),
        ("No devices were found\n", "none (nvidia-smi: No devices were found)"),
        ("", "none (nvidia-smi listed no GPU)"),
    ],
)
def test_gpus_reads_nvidia_smis_csv(csv, said):
    assert machine.gpus(csv) == said


def fake_nvidia_smi(folder: Path, out: str, code: int) -> Path:
    """An `nvidia-smi` that prints `out` and exits `code`, whatever it is asked, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n/bin/cat <<'EOF'\n{out}EOF\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_the_probe_names_the_gpus_or_says_why_there_are_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert machine.gpu() == "none (no nvidia-smi on this machine)"

    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "gpu", DGX, 0)))
    assert machine.gpu() == "4 x NVIDIA A100-SXM4-80GB (driver 580.159.04); NVIDIA DGX Display (driver 580.159.04)"
    assert machine.describe()["gpu"] == machine.gpu()

    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "broken", NO_DRIVER, 9)))
    assert machine.gpu() == f"none (nvidia-smi: {NO_DRIVER.strip()})"
