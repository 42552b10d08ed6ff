"""The machine a run ran on: Python, OS, CPU and the numeric libraries' build, recorded with every run.

Two runs of the same code, data and params may still differ in their bytes when the BLAS kernels differ (a
LogisticRegression pickle changes with OPENBLAS_CORETYPE, its metrics do not), so a run records these and
`nox -s reproduce` prints them beside its own when the bytes differ.

Stdlib only (numpy and threadpoolctl are imported when asked), and runnable as a script: `python machine.py`
prints the description as JSON, which is how a reproduction asks the interpreter of the run's own environment.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

KEYS = ("python", "os", "machine", "blas")


def describe() -> dict[str, str]:
    """This interpreter's Python, OS, CPU architecture and the BLAS numpy loaded (vendor, version, CPU kernels)."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "machine": platform.machine(),
        "blas": _blas(),
    }


def describe_meanwhile() -> Callable[[], dict[str, str]]:
    """Start describing this machine in a process of its own (loading numpy and scipy takes a good part of a
    second) and return what waits for the description: `invoke share` does its git and DVC work meanwhile."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )

    def described() -> dict[str, str]:
        out, _ = proc.communicate()
        try:
            found = json.loads(out)
        except ValueError:
            found = None
        return found if isinstance(found, dict) and set(KEYS) <= found.keys() else describe()

    return described


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
