"""This interpreter's Python and installed packages against Pipfile and Pipfile.lock.

`pipenv sync` installs and upgrades but never removes, so a long-lived runner keeps what earlier jobs left
behind. Reading the installed distributions' folder names (`name-version.dist-info`) takes a millisecond, where
importlib.metadata takes a tenth of a second: this runs before every `invoke repro`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from src.runloop import environment

PIPFILE = environment.ROOT / "Pipfile"
LOCK = environment.ROOT / "Pipfile.lock"
# Installed with any virtualenv, whatever the lock says: not counted as extras.
BOOTSTRAP = frozenset({"pip", "setuptools", "wheel"})


class Drift(NamedTuple):
    differ: list[str]  # "name: installed 1.0, locked 2.0"
    missing: list[str]  # locked for this platform, not installed
    extras: list[str]  # "name==version": installed, not in the lock
    dev: bool = False  # a package only the lock's develop section names is installed: `pipenv sync --dev` was run


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_mismatch() -> str | None:
    """Why this Python is not the one Pipfile [requires], or None."""
    import tomllib

    pipfile = tomllib.loads(PIPFILE.read_text())
    wanted = pipfile.get("requires", {}).get("python_version")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and running != wanted:
        return (
            f"This runner's Python is {running}, but Pipfile.lock was made for {wanted} (Pipfile [requires]) — put "
            f"Python {wanted} first on the runner's PATH; results from another Python are not the locked ones."
        )
    return None


def installed(path: list[str] | None = None) -> dict[str, str]:
    """Name → version of every distribution importable from `path` (sys.path); the first one found wins."""
    found: dict[str, str] = {}
    for entry in sys.path if path is None else path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                stem = name.removesuffix(".dist-info")
            elif name.endswith(".egg-info"):
                stem = "-".join(name.removesuffix(".egg-info").split("-")[:2])
            else:
                continue
            dist, _, version = stem.partition("-")
            if not version:  # `name.egg-info` of a development install: ask its metadata
                version = _metadata_version(Path(entry or ".", name))
            found.setdefault(normalize(dist), version)
    return found


def _metadata_version(path: Path) -> str:
    from importlib.metadata import PathDistribution

    return PathDistribution(path).version or "?"


def drift(known: tuple[str, ...] = ("default",), path: list[str] | None = None) -> Drift:
    """How the installed packages differ from the lock: a package of its "default" section (what the pipeline runs
    with) missing or at another version; the extras, in none of the lock's `known` sections.

    The develop section (linters, test tools) is never a drift: the Quickstart's `pipenv sync --system` leaves it
    out, and nothing the pipeline computes depends on it.
    """
    lock = json.loads(LOCK.read_text())
    have = installed(path)
    default = {normalize(n): spec for n, spec in lock.get("default", {}).items()}
    dev_only = {normalize(n) for n in lock.get("develop", {})} - set(default)
    locked = {normalize(n) for section in {"default", *known} for n in lock.get(section, {})}
    differ, missing = [], []
    for name, spec in default.items():
        wanted = spec.get("version", "").removeprefix("==")
        if name not in have:
            if wanted and _applies(spec.get("markers")):
                missing.append(f"{name}=={wanted}")
        elif wanted and not _same_version(have[name], wanted):
            differ.append(f"{name}: installed {have[name]}, locked {wanted}")
    extras = sorted(f"{n}=={v}" for n, v in have.items() if n not in locked and n not in BOOTSTRAP)
    return Drift(sorted(differ), sorted(missing), extras, dev=bool(dev_only & have.keys()))


def sync_command(on_runner: bool, dev: bool) -> str:
    """The command that installs Pipfile.lock into this interpreter's environment, the way it was installed.

    The runner's is the workflow's `pipenv sync --system`. Here `--dev` too when the development packages are
    installed (the Quickstart's second line), and the environment activated first when the first `python3` on PATH
    is another interpreter (the venv was not activated): `--system` installs into that one.
    """
    command = ["pipenv", "sync", "--system", *(["--dev"] if dev and not on_runner else [])]
    here = Path(sys.executable).parent
    first = shutil.which("python3")
    if on_runner or (first is not None and Path(first).parent.resolve() == here.resolve()):
        return shlex.join(command)
    if (here / "activate").is_file():
        return f". {shlex.quote(str(here / 'activate'))} && {shlex.join(command)}"
    return shlex.join([*command, "--python", sys.executable])


def _same_version(a: str, b: str) -> bool:
    if a == b:
        return True
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def _applies(markers: str | None) -> bool:
    """Whether a locked package is meant for this interpreter (its environment markers hold here)."""
    if not markers:
        return True
    from packaging.markers import InvalidMarker, Marker

    try:
        return Marker(markers).evaluate()
    except InvalidMarker:
        return True
