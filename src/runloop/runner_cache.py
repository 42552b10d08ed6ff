"""What a self-hosted runner keeps between jobs, in one folder outside any workspace: a venv per Pipfile.lock and
DVC's cache. A second run on the runner installs nothing and pulls only the data the runner lacks.

    root(env)           the folder: RUNLOOP_CACHE; on CI, invoke.yaml's runloop.runner_cache, else
                        <the runner's tool cache>/runloop; off CI, none (a laptop keeps .dvc/cache)
    venvs(env)          where the venvs are: RUNLOOP_VENVS, else <root>/venvs, else (off CI) the user's cache
                        ($XDG_CACHE_HOME/runloop/venvs, what `nox -s reproduce` uses)
    dvc_cache(env)      <root>/dvc, or None
    configure_dvc(env)  DVC's cache there (.dvc/config.local), linked into the workspace as cheaply as the file
                        system allows (reflink, else hardlink, else symlink, else a copy)

Two jobs of one host may share the folder: DVC's cache is content-addressed and DVC writes each object to a temp
file it then renames, and each venv is built under a file lock (lock_venv.py). What it costs in disk and how it
is pruned: docs/runners.md. Standard library only (configure_dvc excepted): the environment step reads it before
anything is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from src.runloop import ci, environment, invoke_yaml

CACHE_ENV = "RUNLOOP_CACHE"  # the folder, for a runner's service environment (or a test)
VENVS_ENV = "RUNLOOP_VENVS"  # the venvs alone elsewhere (a rehearsal shares them with `nox -s reproduce`)
SETTING = "runner_cache"  # invoke.yaml: runloop.runner_cache
FOLDER = "runloop"  # under the runner's tool cache
# DVC takes the first link type the file system allows, file by file: a reflink (copy-on-write: XFS, btrfs, APFS)
# costs nothing and is safe; a hardlink or symlink costs nothing and DVC makes the workspace file read-only; a copy
# costs the bytes. All of them are made from the cache, so a second run pulls only what the runner lacks.
LINK_TYPES = "reflink,hardlink,symlink,copy"


def root(env: Mapping[str, str], project: Path = environment.ROOT) -> Path | None:
    """The folder the runner keeps between jobs; None off CI unless RUNLOOP_CACHE names one."""
    if named := environment.env_value(CACHE_ENV, env):
        return Path(named).expanduser()
    if not ci.on_ci(env):
        return None
    setting = invoke_yaml.section(project).get(SETTING) or ""
    if isinstance(setting, str) and setting.strip():
        return Path(_expanded(setting.strip(), env)).expanduser()
    base = ci.tool_cache(env) or Path.home() / ".cache"
    return base / FOLDER


def _expanded(text: str, env: Mapping[str, str]) -> str:
    """`$NAME` and `${NAME}` in a setting replaced by the variable's value in `env` (left as written when unset)."""
    return re.sub(r"\$(?:(\w+)|\{(\w+)\})", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def venvs(env: Mapping[str, str], project: Path = environment.ROOT) -> Path:
    """Where the venvs of Pipfile.locks are kept, one folder per lock."""
    if named := environment.env_value(VENVS_ENV, env):
        return Path(named).expanduser()
    if kept := root(env, project):
        return kept / "venvs"
    base = environment.env_value("XDG_CACHE_HOME", env) or str(Path.home() / ".cache")
    return Path(base) / FOLDER / "venvs"


def dvc_cache(env: Mapping[str, str], project: Path = environment.ROOT) -> Path | None:
    kept = root(env, project)
    return kept / "dvc" if kept else None


def configure_dvc(env: Mapping[str, str], project: Path = environment.ROOT) -> Path | None:
    """Point the workspace's DVC at the runner's cache (.dvc/config.local: untracked, machine-specific), when there
    is one; the cache folder, or None."""
    cache = dvc_cache(env, project)
    if cache is None:
        return None
    from src.runloop import dvc_remote

    cache.mkdir(parents=True, exist_ok=True)
    dvc_remote.write_local(project, {"cache": {"dir": str(cache), "type": LINK_TYPES, "shared": "group"}})
    return cache
