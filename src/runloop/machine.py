"""The machine a run ran on: Python, OS, CPU, the numeric libraries' build and the GPUs, recorded with every run.

Two runs of the same code, data and params may still differ in their bytes when the BLAS kernels differ (a
LogisticRegression pickle changes with OPENBLAS_CORETYPE, its metrics do not), so a run records these and
`nox -s reproduce` prints them beside its own when the bytes differ. The GPUs (model and driver) come from
`nvidia-smi`, when the machine has one; a machine without says so instead.

Stdlib only (numpy and threadpoolctl are imported when asked), and runnable as a script: `python machine.py`
prints the description as JSON, which is how a reproduction asks the interpreter of the run's own environment, and
how `invoke share` has it described while it works (results.describe_meanwhile).
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess

KEYS = ("python", "os", "machine", "blas", "gpu")
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")


def describe() -> dict[str, str]:
    """This interpreter's Python, OS, CPU architecture and the BLAS numpy loaded (vendor, version, CPU kernels)."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "machine": platform.machine(),
        "blas": _blas(),
        "gpu": gpu(),
    }


def gpu() -> str:
    """The GPUs `nvidia-smi` lists, with their driver ("2 x NVIDIA A100-SXM4-80GB (driver 580.159.04)"), or why
    there are none to name: no nvidia-smi, or what it said (no driver loaded, no device)."""
    import shutil

    found = shutil.which(NVIDIA_SMI[0])
    if not found:
        return "none (no nvidia-smi on this machine)"
    try:
        done = subprocess.run([found, *NVIDIA_SMI[1:]], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown (nvidia-smi: {type(exc).__name__})"
    if done.returncode != 0:
        said = " ".join((done.stdout + done.stderr).split())[:200] or f"exit {done.returncode}"
        return f"none (nvidia-smi: {said})"
    return gpus(done.stdout)


def gpus(csv: str) -> str:
    """`nvidia-smi --query-gpu=name,driver_version --format=csv,noheader` in words: each model with its count and
    driver, in the order listed."""
    counts: dict[tuple[str, str], int] = {}
    for line in csv.splitlines():
        name, comma, driver = line.strip().rpartition(",")
        if comma and name.strip():
            key = (name.strip(), driver.strip())
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        said = " ".join(csv.split())[:200]
        return f"none (nvidia-smi: {said})" if said else "none (nvidia-smi listed no GPU)"
    return "; ".join(f"{f'{n} x ' if n > 1 else ''}{name} (driver {driver})" for (name, driver), n in counts.items())


def _blas() -> str:
    try:
        import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (numpy or threadpoolctl not installed)"
    # scipy ships a BLAS of its own: load it too, so that a stage (which imports it through scikit-learn) and
    # `invoke share` (which does not) describe the same machine.
    with contextlib.suppress(ImportError):
        import scipy.linalg  # noqa: F401
    found = [
        f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture') or 'no CPU kernel named'}, "
        f"{lib.get('num_threads')} threads)"
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    return "; ".join(sorted(found)) or "none loaded"


if __name__ == "__main__":
    print(json.dumps(describe()))
