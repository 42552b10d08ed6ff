"""The test session's own rules: what is slow and stays out of `nox -s fast`, and that a signal stops the session
and every server it started (issue 17, row 13). Each test runs a real pytest session in a copy of the project."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faults_fixtures import group_running, until

from src.runloop import processes

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def session(tmp_path: Path, *args: str) -> list[str]:
    """The command of a pytest session in the project's copy, its temp dirs under this test's."""
    return [*PYTEST, "--basetemp", str(tmp_path / "basetemp"), *args]


# -- what is slow ----------------------------------------------------------------------------------------------------

SNEAKS = """# Tests that are end to end, marked or not (written by test_session.py).

import subprocess
import sys

import pytest

DVC_YAML = "stages:\\n  copy:\\n    cmd: cp in.txt out.txt\\n    deps: [in.txt]\\n    outs: [out.txt]\\n"


def run_a_stage(where):
    (where / "in.txt").write_text("data\\n")
    (where / "dvc.yaml").write_text(DVC_YAML)
    for args in (["init", "--no-scm", "-q"], ["repro", "-q"]):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=where, check=True)
    assert (where / "out.txt").read_text() == "data\\n"


def test_runs_a_stage_unmarked(tmp_path):
    run_a_stage(tmp_path)


@pytest.mark.slow
def test_runs_a_stage_marked(tmp_path):
    run_a_stage(tmp_path)


def test_asks_for_a_server(s3_server):
    pass
"""


@pytest.mark.slow
def test_the_fast_loop_leaves_end_to_end_tests_out_and_fails_one_that_is_not_marked(project, tmp_path):
    (project / "tests" / "test_sneaks.py").write_text(SNEAKS)

    fast = subprocess.run(
        session(tmp_path, "-m", "not slow", "-rA", "tests/test_sneaks.py"),
        cwd=project,
        capture_output=True,
        text=True,
    )

    out = fast.stdout
    assert fast.returncode == pytest.ExitCode.TESTS_FAILED, out
    # The marked test and the one asking for a server are left out; the unmarked one runs, and fails at teardown.
    assert out.splitlines()[-1].startswith("1 passed, 2 deselected, 1 error"), out
    assert "ERROR at teardown of test_runs_a_stage_unmarked" in out
    assert (
        "\nthis test ran the pipeline (.dvc/cache/runs) — mark it @pytest.mark.slow: `nox -s fast` leaves end-to-end "
        "tests to the full suite\n"
    ) in out

    marked = subprocess.run(
        session(tmp_path, "tests/test_sneaks.py::test_runs_a_stage_marked"), cwd=project, capture_output=True, text=True
    )

    assert marked.returncode == 0, marked.stdout  # the full suite runs it, and the mark is all it needs
    assert marked.stdout.splitlines()[-1].startswith("1 passed in"), marked.stdout


# -- a signal to the test session stops every server it started ------------------------------------------------------

HOLDS = """# Holds a session's servers until a signal stops the session (written by test_session.py).

import time
from pathlib import Path

import pytest

SIGNS = Path({signs!r})


@pytest.fixture(autouse=True)
def says_when_it_stops():
    yield
    (SIGNS / "stopping").touch()


@pytest.mark.parametrize("n", range({tests}))
def test_holds_the_servers(n, mlflow_server):
    (SIGNS / f"holding-{{n}}").touch()
    time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "signals", "workers"),
    [
        ("Ctrl-C twice in a terminal", ["SIGINT to the group", "SIGINT to the group while stopping"], 0),
        ("SIGINT to a session started ignoring it, as a script's background job is", ["SIGINT"], 0),
        ("SIGTERM", ["SIGTERM"], 0),
        ("SIGINT to the controller of two xdist workers", ["SIGINT"], 2),
    ],
    ids=["ctrl-c-twice", "sigint-to-a-background-job", "sigterm", "sigint-xdist"],
)
def test_a_signal_stops_the_test_session_and_every_server_it_started(project, tmp_path, how, signals, workers):
    signs = tmp_path / "signs"
    signs.mkdir()
    tests = max(workers, 1)  # one test holding servers per worker
    (project / "tests" / "test_holds.py").write_text(HOLDS.format(signs=str(signs), tests=tests))
    cmd = session(tmp_path, "tests/test_holds.py", *(["-n", str(workers)] if workers else []))
    if "background" in how:  # what `cmd &` in a script does: the job ignores SIGINT, and so would Python
        cmd = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    log = tmp_path / "session.log"
    with open(log, "wb") as out:
        inner = subprocess.Popen(cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    servers: dict[int, str] = {}
    try:
        said = log.read_text  # what the session printed, when it matters
        until(lambda: len(list(signs.glob("holding-*"))) == tests, 300, lambda: f"no servers came up:\n{said()}")
        servers = server_groups(inner.pid)
        assert sorted(servers.values()) == sorted(["mlflow", "moto_server"] * tests), servers

        for sig in signals:
            if sig.endswith("while stopping"):
                until(lambda: (signs / "stopping").exists(), 120, lambda: f"the session did not stop:\n{said()}")
            signum = signal.Signals[sig.split()[0]]
            if "to the group" in sig:  # a terminal's Ctrl-C reaches the session's whole process group
                processes.signal_group(inner.pid, signum)
            else:
                os.kill(inner.pid, signum)

        try:
            code = inner.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the session went on after {how}:\n{said()}")
        assert code == pytest.ExitCode.INTERRUPTED, said()
        until(lambda: not left(servers), 30, lambda: f"{how} left servers running: {left(servers)}\n{said()}")
    finally:
        for group in [inner.pid, *servers]:
            processes.signal_group(group, signal.SIGKILL)


def server_groups(session: int) -> dict[int, str]:
    """The process groups the session's servers run in (each its own), by what they run."""
    groups = {}
    for pid in processes.descendants(session):
        try:
            group, cmdline = os.getpgid(pid), Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        names = {Path(arg.decode()).name for arg in cmdline[:3]}
        if group != session and names & {"moto_server", "mlflow"}:
            groups[group] = (names & {"moto_server", "mlflow"}).pop()
    return groups


def left(servers: dict[int, str]) -> dict[str, list[int]]:
    """The servers of `servers` whose group still has a process running, and those processes."""
    return {name: pids for group, name in servers.items() if (pids := group_running(group))}
