"""The fault matrix, repro's side: each row against the real services, with one line, no traceback, no secret.

Rows 6 (S3), 7 (MLflow), 8 (missing settings), 14 (malformed files and params), 16 (Python drift), and repro's
part of 4 (outputs that cannot be shared; stages DVC skipped) and 9 (SIGINT/SIGTERM during a stage); then 17 (a
stage's own bug), 18 (the cache's disk full), 19 (an alias bomb), 20 (a .env no command can take) and 22 (the dev
packages after the Quickstart's first line).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_fixtures import (
    INVOKE,
    TINY_DVC_YAML,
    TINY_PARAMS,
    AuthS3,
    group_running,
    lines,
    moto_with_auth,
    pip_install_into,
    process_running,
    run_invoke,
    wheel,
    write_tiny,
)
from gitrepos import git

from src.runloop import checks, dvc_locks, environment, packages, stage
from src.runloop import mlflow_server as tracking_server
from src.runloop.refusal import Refused

# Values no tool knows: if one shows up in an output, the code under test printed it.
PASSWORD = "pw-Zq81-never-print"  # noqa: S105
AWS_SECRET = "aws-secret-Kx52-never-print"  # noqa: S105
TOKEN = "tok-Hy73-never-print"  # noqa: S105


@pytest.fixture
def tiny(project: Path) -> Path:
    """The project copy as a one-stage pipeline of its own (faults_fixtures.SLEEPER)."""
    return write_tiny(project)


@pytest.fixture(scope="module")
def s3_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthS3]:
    with moto_with_auth(tmp_path_factory.mktemp("moto-auth")) as server:
        yield server


def clean(out: str, *secrets: str) -> None:
    """No traceback, and none of the secrets."""
    assert "Traceback" not in out, out
    for secret in (PASSWORD, AWS_SECRET, TOKEN, *secrets):
        assert secret not in out, out


def nothing_ran(project: Path, out: str) -> None:
    assert "$ dvc repro" not in out and "Running stage" not in out, out
    assert not (project / "dvc.lock").exists()


# --- row 7 / hole 1: MLflow down, not MLflow, credentials in the URL ----------------------------------------


def test_repro_stops_before_any_stage_when_mlflow_is_down(tiny):
    code, out = run_invoke(tiny, "repro", env={"MLFLOW_URL": f"http://ci:{PASSWORD}@127.0.0.1:9"})

    assert code == 1
    assert lines(out) == [
        "mlflow: MLflow at http://127.0.0.1:9 is unreachable ([Errno 111] Connection refused) — check MLFLOW_URL "
        "and that the tracking server is up"
    ]
    clean(out)
    nothing_ran(tiny, out)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "shown"),
    [("/not-mlflow", "/not-mlflow"), (f"/not-mlflow?token={TOKEN}&x=1", "/not-mlflow?token=***&x=1")],
)
def test_repro_names_a_url_that_answers_404(tiny, mlflow_server, suffix, shown):
    url = mlflow_server.url.replace("http://", f"http://ci:{PASSWORD}@") + suffix

    code, out = run_invoke(tiny, "repro", env={"MLFLOW_URL": url})

    assert code == 1
    assert lines(out) == [
        f"mlflow: {mlflow_server.url}{shown} answered HTTP 404 to MLflow's REST API: no MLflow tracking server at "
        "that URL — check MLFLOW_URL: the address the MLflow UI is served at"
    ]
    clean(out)
    nothing_ran(tiny, out)


@pytest.mark.slow
def test_mlflow_check_creates_the_experiment_and_refuses_a_deleted_one(mlflow_server):
    client = mlflow_server.client()
    url = mlflow_server.url.replace("http://", f"http://ci:{PASSWORD}@")
    name = f"faults-{time.time_ns()}"

    said = mlflow_server_check(url, [name], create=False)
    assert said == f"{mlflow_server.url} answers; experiment {name!r} not there yet (the first run creates it)"
    assert client.get_experiment_by_name(name) is None

    said = mlflow_server_check(url, [name], create=True)
    assert said == f"{mlflow_server.url} answers; experiment {name!r} created"
    created = client.get_experiment_by_name(name)
    assert created is not None and created.lifecycle_stage == "active"
    assert mlflow_server_check(url, [name], create=True).endswith(f"experiment {name!r} found")

    client.delete_experiment(created.experiment_id)
    with pytest.raises(tracking_server.Unusable) as refused:
        mlflow_server_check(url, [name], create=True)
    assert str(refused.value) == (
        f"MLflow experiment {name!r} is deleted at {mlflow_server.url} — restore it in MLflow, or name another "
        "experiment in params.yaml"
    )


def mlflow_server_check(url: str, names: list[str], create: bool) -> str:
    return tracking_server.check(url, names, {"MLFLOW_URL": url}, create)


def test_a_stages_own_mlflow_failure_is_one_line_without_the_password(tiny):
    # The server went away after repro's check: the stage's own MLflow call fails (no retries, to be quick).
    env = {
        **os.environ,
        "MLFLOW_URL": f"http://ci:{PASSWORD}@127.0.0.1:9",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    done = subprocess.run(
        [sys.executable, "-m", "src.sleeper"], cwd=tiny, env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 1
    assert done.stdout == ""
    [line] = lines(done.stderr)
    assert line.startswith("ERROR __main__: MLflow at http://127.0.0.1:9 failed: API request to http://127.0.0.1:9/")
    assert line.endswith(" — check MLFLOW_URL and that the server is up (invoke doctor)")
    clean(done.stderr)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"https://mlflow.example.com/?token={TOKEN}", "https://mlflow.example.com/?token=***"),
        (f"https://u:{PASSWORD}@h:8443/p?a=1&password={PASSWORD}#f", "https://h:8443/p?a=1&password=***#f"),
        (f"https://h/p?api_key={TOKEN}&Access_Token={TOKEN}&page=2", "https://h/p?api_key=***&Access_Token=***&page=2"),
        ("https://h/p?key=&x=1", "https://h/p?key=&x=1"),  # nothing to hide
        ("https://h/p?x=1", "https://h/p?x=1"),
    ],
)
def test_redact_hides_credentials_in_query_strings(uri, expected):
    assert environment.redact(uri) == expected


def test_scrub_cuts_credentials_out_of_a_tools_message():
    said = (
        f"API request to http://ci:{PASSWORD}@127.0.0.1:9/api?password={PASSWORD}&x=1 failed; "
        f"secret {AWS_SECRET} and X-Amz-Signature={TOKEN}"
    )
    scrubbed = environment.scrub(said, {"AWS_SECRET_ACCESS_KEY": AWS_SECRET})
    assert (
        scrubbed == "API request to http://127.0.0.1:9/api?password=***&x=1 failed; secret *** and X-Amz-Signature=***"
    )


# --- row 6: the DVC remote (S3) ----------------------------------------------------------------------------


def s3_env(endpoint: str, bucket: str, key: str = "AKIAFAULTS", secret: str = AWS_SECRET) -> dict[str, str]:
    return {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "DVC_REMOTE_URL": f"s3://{bucket}/faults",
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
    }


def test_repro_stops_before_the_pipeline_when_s3_is_unreachable(tiny):
    code, out = run_invoke(tiny, "repro", env=s3_env("http://127.0.0.1:9", "dvc-store"))

    assert code == 1
    assert lines(out) == [
        "dvc remote: the DVC remote's S3 endpoint http://127.0.0.1:9 is unreachable (EndpointConnectionError) — "
        "check MLFLOW_S3_ENDPOINT_URL and that the S3 service is up"
    ]
    clean(out)
    nothing_ran(tiny, out)


@pytest.mark.slow
def test_repro_names_a_missing_bucket(tiny, s3):
    env = s3_env(s3.server.endpoint_url, "no-such-bucket", s3.server.access_key)

    code, out = run_invoke(tiny, "repro", env=env)

    assert code == 1
    assert lines(out) == [
        f"dvc remote: bucket 'no-such-bucket' of the DVC remote s3://no-such-bucket/faults does not exist at "
        f"{s3.server.endpoint_url} — create it, or point DVC_REMOTE_URL at a bucket that exists"
    ]
    clean(out)
    nothing_ran(tiny, out)


@pytest.mark.slow
def test_repro_names_refused_credentials_and_shows_no_secret(tiny, s3_with_auth):
    env = s3_env(s3_with_auth.endpoint_url, s3_with_auth.bucket, s3_with_auth.access_key, AWS_SECRET)

    code, out = run_invoke(tiny, "repro", env=env)

    assert code == 1
    assert lines(out) == [
        f"dvc remote: {s3_with_auth.endpoint_url} refused the S3 credentials for s3://dvc-auth/faults "
        "(SignatureDoesNotMatch) — check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on the runner: secrets "
        "MINIO_ACCESS_KEY_ID and MINIO_SECRET_ACCESS_KEY)"
    ]
    clean(out, s3_with_auth.secret_key)
    nothing_ran(tiny, out)


@pytest.mark.slow
def test_repro_with_a_reachable_writable_remote_leaves_no_probe_behind(tiny, s3_with_auth):
    env = {
        **s3_env(s3_with_auth.endpoint_url, s3_with_auth.bucket, s3_with_auth.access_key, s3_with_auth.secret_key),
        "SLEEPER_MARKER": str(tiny / "marker.json"),
    }

    code, out = run_invoke(tiny, "repro", env=env)

    assert code == 0, out
    assert "$ dvc repro --pull" in out and "Running stage 'sleeper'" in out
    clean(out, s3_with_auth.secret_key)
    # The write probe is gone again: only what DVC itself put there (nothing, before `dvc push`).
    listing = s3_with_auth.client().list_objects_v2(Bucket=s3_with_auth.bucket)
    assert [o["Key"] for o in listing.get("Contents", [])] == []


# --- row 8: missing settings on the runner -----------------------------------------------------------------


def test_repro_on_actions_lists_every_missing_setting_in_one_message(tiny):
    env = {"GITHUB_ACTIONS": "true", "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "MLFLOW_URL": f"http://u:{PASSWORD}@h"}

    code, out = run_invoke(tiny, "repro", env=env)

    assert code == 1
    assert lines(out) == [
        "settings: Missing on this runner: MLFLOW_S3_ENDPOINT_URL (from repository variable MLFLOW_S3_ENDPOINT_URL), "
        "AWS_ACCESS_KEY_ID (from secret MINIO_ACCESS_KEY_ID), ACCESS_TOKEN (from secret ACCESS_TOKEN, or a GitHub App: "
        "repository variable PUSH_APP_CLIENT_ID and secret PUSH_APP_PRIVATE_KEY) — set them in the repository's "
        "Settings → Secrets and variables → Actions (docs/environment.md lists them)."
    ]
    clean(out)
    nothing_ran(tiny, out)


# --- row 14: malformed files and wrong-typed params --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "params.yaml",
            "sleeper:\n  experiment: faults\n   seconds: 0\n",
            "files: params.yaml line 3, column 11 is not valid YAML (mapping values are not allowed in this context) "
            "— fix it",
        ),
        (
            "dvc.yaml",
            TINY_DVC_YAML.replace("    outs:\n", "    outs:\n  - [\n"),
            "files: dvc.yaml line 10, column 3 is not valid YAML (did not find expected key) — fix it",
        ),
        (
            "dvc.yaml",
            TINY_DVC_YAML.replace("sleeper.seconds", "sleeper.secs"),
            "files: params.yaml has no sleeper.secs, which dvc.yaml's stage 'sleeper' reads — add it, or drop it "
            "from the stage's params",
        ),
        (
            "dvc.yaml",
            TINY_DVC_YAML.replace("    cmd: python -m src.sleeper\n", ""),
            "files: dvc.yaml: stage 'sleeper' has no 'cmd:' — give it the command to run",
        ),
    ],
)
def test_repro_names_the_file_and_line_of_a_malformed_file(tiny, name, text, expected):
    (tiny / name).write_text(text)

    code, out = run_invoke(tiny, "repro")

    assert code == 1
    assert lines(out) == [expected]
    clean(out)
    nothing_ran(tiny, out)


def test_repro_stops_on_a_dotenv_line_it_cannot_parse(tiny):
    (tiny / ".env").write_text(f'MLFLOW_URL=\nAWS_SECRET_ACCESS_KEY="{AWS_SECRET}\nDVC_REMOTE_URL=\n')

    code, out = run_invoke(tiny, "repro")

    assert code == 1
    assert lines(out) == [
        f"{tiny}/.env line 2 cannot be parsed — write each setting as NAME=value (quote a value holding spaces "
        "or #, close every quote)"
    ]
    clean(out)
    nothing_ran(tiny, out)
    # A stage run by `dvc repro` directly stops the same way.
    done = subprocess.run([sys.executable, "-m", "src.sleeper"], cwd=tiny, capture_output=True, text=True)
    assert done.returncode == 1
    assert lines(done.stderr) == [f"ERROR __main__: {lines(out)[0]}"]


@pytest.mark.slow
def test_a_wrong_typed_param_is_one_line_with_file_key_and_line(tiny):
    (tiny / "params.yaml").write_text(TINY_PARAMS.replace("seconds: 0", "seconds: [0.2]"))

    code, out = run_invoke(tiny, "repro")

    assert code == 1
    assert "ERROR __main__: params.yaml line 4: sleeper.seconds is [0.2], it must be a number — fix it" in out
    assert out.rstrip().endswith("The pipeline failed (DVC's message is above) — fix the failing stage and run again.")
    clean(out)
    assert not (tiny / "out" / "sleeper.txt").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s:\n  n: 3\n  x: 0.5\n  name: a\n", None),
        ("s:\n  n: 3.5\n  x: 0.5\n  name: a\n", "params.yaml line 2: s.n is 3.5, it must be a whole number — fix it"),
        ("s:\n  n: true\n  x: 1\n  name: a\n", "params.yaml line 2: s.n is True, it must be a whole number — fix it"),
        ("s:\n  n: 3\n  x: '0.5'\n  name: a\n", "params.yaml line 3: s.x is '0.5', it must be a number — fix it"),
        ("s:\n  n: 3\n  name: a\n", "params.yaml misses s.x — add it (a number)"),
        ("s: {n: 3, x: 1, name: [a]}\n", "params.yaml line 1: s.name is ['a'], it must be a string — fix it"),
    ],
)
def test_load_params_checks_types(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    types = {"n": int, "x": float, "name": str}
    if message is None:
        assert stage.load_params("s", path, types=types)["n"] == 3
    else:
        with pytest.raises(stage.ParamsError) as refused:
            stage.load_params("s", path, types=types)
        assert str(refused.value) == message


# --- row 16: the runner's Python environment drifted from Pipfile.lock -------------------------------------


def locked_default() -> tuple[str, str]:
    """A package the lock pins for every platform, and its version."""
    lock = json.loads((Path(__file__).resolve().parents[1] / "Pipfile.lock").read_text())["default"]
    name, spec = next((n, s) for n, s in sorted(lock.items()) if "markers" not in s or "python_version" in s["markers"])
    return name, spec["version"].removeprefix("==")


def test_repro_on_the_runner_fails_on_a_version_the_lock_does_not_pin(tiny, tmp_path):
    name, version = locked_default()
    left = pip_install_into(tmp_path / "left", wheel(tmp_path, name, "0.0.1"))
    env = {
        "PYTHONPATH": str(left),
        "GITHUB_ACTIONS": "true",
        "MLFLOW_URL": "http://127.0.0.1:9",
        "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAFAULTS",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "ACCESS_TOKEN": TOKEN,
    }

    code, out = run_invoke(tiny, "repro", env=env)

    assert code == 1
    failures = [line for line in lines(out) if not line.startswith("warning: ")]
    normalized = name.replace("_", "-").replace(".", "-").lower()
    assert failures == [
        f"packages: differ from Pipfile.lock: {normalized}: installed 0.0.1, locked {version} — run `pipenv sync "
        "--system` (it never removes packages: on a long-lived runner, uninstall the rest)"
    ]
    clean(out)
    nothing_ran(tiny, out)


@pytest.mark.slow
def test_repro_lists_extra_packages_and_records_them_with_the_run(tiny, tmp_path, mlflow_server):
    left = pip_install_into(tmp_path / "left", wheel(tmp_path, "leftover-tool", "1.2.3"))
    env = {"PYTHONPATH": str(left), "MLFLOW_URL": mlflow_server.url}

    code, out = run_invoke(tiny, "repro", env=env)

    assert code == 0, out
    assert lines(out)[0] == (
        "warning: packages: installed beyond Pipfile.lock (recorded with the run as MLflow tag python_extras): "
        "leftover-tool==1.2.3 — uninstall them for a clean runner (`pipenv sync` never removes packages)"
    )
    record = json.loads((tiny / "runs" / "sleeper.json").read_text())
    run = mlflow_server.client().get_run(record["run_id"])
    assert run.data.tags["python_extras"] == "leftover-tool==1.2.3"
    assert run.info.status == "FINISHED"


# --- hole 4, repro's side: outputs that cannot be shared; stages DVC skipped -------------------------------

TWO_STAGES = """stages:
  first:
    cmd: python -c "open('first.txt', 'w').write('first')"
    outs:
      - first.txt
"""
UNCACHED = """  second:
    cmd: python -c "open('second.txt', 'w').write('second')"
    outs:
      - second.txt:
          cache: false
"""
UNPUSHED = """  third:
    cmd: python -c "open('third.txt', 'w').write('third')"
    outs:
      - third.txt:
          push: false
"""


@pytest.mark.slow
def test_repro_warns_of_outputs_that_cannot_be_shared(project):
    write_tiny(project, TWO_STAGES + UNCACHED + UNPUSHED, "{}\n")

    code, out = run_invoke(project, "repro")

    assert code == 0, out
    assert lines(out)[0] == (
        "warning: outputs: not shared through the DVC remote: second.txt (second, cache: false), third.txt (third, "
        "push: false) — drop `cache: false` / `push: false` in dvc.yaml for outputs the results need"
    )
    assert (project / "second.txt").read_text() == "second"


@pytest.mark.slow
def test_repro_fails_naming_a_stage_dvc_skipped(project, tmp_path):
    # DVC 3.67's `dvc repro --pull` says "up to date" and never runs a new stage whose outputs are all
    # `cache: false`; repro must not pass that off as a finished pipeline.
    write_tiny(project, TWO_STAGES, "{}\n")
    remote = {"DVC_REMOTE_URL": str(tmp_path / "dvc-remote")}
    code, out = run_invoke(project, "repro", env=remote)
    assert code == 0, out
    git("add", "dvc.lock", cwd=project)
    git("commit", "--quiet", "-m", "first's results", cwd=project)
    (project / "dvc.yaml").write_text(TWO_STAGES + UNCACHED)

    code, out = run_invoke(project, "repro", env=remote)

    assert code == 1
    assert "Data and pipelines are up to date." in out  # what DVC said
    assert lines(out)[-1] == (
        "The pipeline is not up to date after `dvc repro` (stage 'second': dvc.lock has no entry for it: it never "
        "ran) — run `invoke repro --no-pull` (DVC skips a new stage whose outputs are all `cache: false` when it "
        "pulls) or `invoke repro --force`."
    )
    clean(out)

    code, out = run_invoke(project, "repro", "--no-pull", env=remote)

    assert code == 0, out
    assert (project / "second.txt").read_text() == "second"


@pytest.mark.slow
def test_repro_fails_when_dvc_reports_a_stage_changed_after_it_ran(project):
    # A later stage rewrites an earlier stage's output (same size, other bytes): DVC's status says so.
    write_tiny(
        project,
        """stages:
  first:
    cmd: python -c "open('first.txt', 'w').write('aaaa')"
    outs:
      - first.txt
  meddler:
    cmd: python -c "open('meddler.txt', 'w').write('m'); open('first.txt', 'w').write('bbbb')"
    deps:
      - first.txt
    outs:
      - meddler.txt
""",
        "{}\n",
    )

    code, out = run_invoke(project, "repro")

    assert code == 1
    assert "Running stage 'meddler'" in out
    assert lines(out)[-1] == (
        "The pipeline is not up to date after `dvc repro` (stage 'first': "
        '[{"changed outs": {"first.txt": "modified"}}]) — a stage changed files that are not its outputs: fix its '
        "command, then run `invoke repro` again."
    )
    clean(out)


# --- row 9 / hole 6, repro's side: SIGINT and SIGTERM during a stage ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_stage_stops_everything_and_marks_the_run_killed(tiny, tmp_path, mlflow_server, signum):
    (tiny / "params.yaml").write_text(TINY_PARAMS.replace("seconds: 0", "seconds: 300"))
    git("commit", "--quiet", "-am", "Sleep long", cwd=tiny)
    marker = tmp_path / "marker.json"
    env = {
        **os.environ,
        "MLFLOW_URL": mlflow_server.url.replace("http://", f"http://ci:{PASSWORD}@"),
        "SLEEPER_MARKER": str(marker),
    }
    proc = subprocess.Popen(
        [str(INVOKE), "repro"],
        cwd=tiny,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: the signal goes to every process in it, as a terminal's would
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        inside = json.loads(marker.read_text())

        os.killpg(proc.pid, signum)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    assert proc.returncode == 128 + signum, out
    assert lines(out)[-1] == (
        f"Stopped by {signal.Signals(signum).name}: the pipeline and its stages were stopped (a running stage "
        "marks its MLflow run KILLED) — run `invoke repro` again to finish it."
    )
    assert "ERROR __main__: Stopped by SIGINT — run the pipeline again to finish this stage" in out
    clean(out)
    assert not process_running(inside["pid"])
    assert group_running(inside["pgid"]) == []
    assert mlflow_server.client().get_run(inside["run_id"]).info.status == "KILLED"

    # The interrupted run leaves nothing behind that stops the next one (no DVC lock, no half-made lock entry).
    (tiny / "params.yaml").write_text(TINY_PARAMS)
    marker.unlink()
    code, out = run_invoke(tiny, "repro", env={"MLFLOW_URL": mlflow_server.url, "SLEEPER_MARKER": str(marker)})
    assert code == 0, out
    again = json.loads(marker.read_text())["run_id"]
    assert mlflow_server.client().get_run(again).info.status == "FINISHED"
    assert (tiny / "out" / "sleeper.txt").read_text() == "slept 0\n"


def start_sleeping_repro(tiny: Path, marker: Path, mlflow_url: str) -> tuple[subprocess.Popen, dict]:
    """`invoke repro` of the tiny pipeline, its stage sleeping in its MLflow run; the process and what the stage
    wrote once it was inside (its pid, its group: DVC's, and its MLflow run)."""
    (tiny / "params.yaml").write_text(TINY_PARAMS.replace("seconds: 0", "seconds: 300"))
    git("commit", "--quiet", "-am", "Sleep long", cwd=tiny)
    env = {**os.environ, "MLFLOW_URL": mlflow_url, "SLEEPER_MARKER": str(marker)}
    proc = subprocess.Popen(
        [str(INVOKE), "repro"], cwd=tiny, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    return proc, json.loads(marker.read_text())


def gone(pgid: int, deadline: float = 60) -> list[int]:
    """The processes of group `pgid` still running once they stopped, or when `deadline` seconds passed."""
    end = time.monotonic() + deadline
    while (left := group_running(pgid)) and time.monotonic() < end:
        time.sleep(0.1)
    return left


@pytest.mark.slow
def test_kill_9_of_repro_leaves_nothing_running_and_the_next_repro_runs(tiny, tmp_path, mlflow_server):
    marker = tmp_path / "marker.json"
    proc, inside = start_sleeping_repro(tiny, marker, mlflow_server.url)

    proc.kill()  # SIGKILL to `invoke repro` alone: it can stop nothing itself
    proc.communicate(timeout=60)

    # DVC's process dies with its parent (PR_SET_PDEATHSIG) and stops its group, the stage with it.
    assert gone(inside["pgid"]) == [] and not process_running(inside["pid"])
    assert mlflow_server.client().get_run(inside["run_id"]).info.status == "KILLED"
    (tiny / "params.yaml").write_text(TINY_PARAMS)
    marker.unlink()
    code, out = run_invoke(tiny, "repro", env={"MLFLOW_URL": mlflow_server.url, "SLEEPER_MARKER": str(marker)})
    assert code == 0, out
    assert "Unable to acquire lock" not in out and "is busy" not in out
    assert (tiny / "out" / "sleeper.txt").read_text() == "slept 0\n"


@pytest.mark.slow
def test_a_dvc_lock_left_by_a_process_killed_outright_is_cleared_saying_so(tiny, tmp_path, mlflow_server):
    marker = tmp_path / "marker.json"
    proc, inside = start_sleeping_repro(tiny, marker, mlflow_server.url)
    dvc = inside["pgid"]  # DVC's process leads the pipeline's group

    # What a runner giving up on a cancelled job does, or the OOM killer: SIGKILL to everything at once.
    os.killpg(dvc, signal.SIGKILL)
    proc.kill()
    proc.communicate(timeout=60)
    assert gone(dvc) == []
    held = json.loads((tiny / ".dvc" / "tmp" / "rwlock").read_text())  # left behind: nobody released it
    infos = [*held["write"].values(), *(info for infos in held["read"].values() for info in infos)]
    (command,) = {info["cmd"] for info in infos}
    assert {info["pid"] for info in infos} == {dvc}
    locked = {str(Path(path).relative_to(tiny)) for path in [*held["write"], *held["read"]]}
    assert {"out/sleeper.txt", "src/sleeper.py"} <= locked  # what the stage writes, and reads

    (tiny / "params.yaml").write_text(TINY_PARAMS)
    code, out = run_invoke(tiny, "repro", env={"MLFLOW_URL": mlflow_server.url})

    assert code == 0, out
    cleared = [line for line in lines(out) if line.startswith("Cleared DVC's lock on ")]
    assert len(cleared) == 1, out
    assert cleared[0].endswith(
        f"left by process {dvc} ({command}), which is no longer running (killed before it could release it)."
    )
    assert set(cleared[0].split(" on ", 1)[1].split(" left by ")[0].split(", ")) == locked
    assert "failed" not in out.lower() and "is busy" not in out and "had been killed" not in out
    assert not any(json.loads((tiny / ".dvc" / "tmp" / "rwlock").read_text()).values())  # no entry left


def test_a_lock_entry_whose_pid_another_process_took_since_is_stale(tmp_path):
    """After a runner's container restarts, pids start over: a live process with the dead holder's pid started
    after the entry was written cannot be its holder (DVC itself would report it as "busy")."""
    tmp = tmp_path / ".dvc" / "tmp"
    tmp.mkdir(parents=True)
    rwlock = tmp / "rwlock"
    rwlock.write_text(json.dumps({"write": {"out/x": {"pid": os.getpid(), "cmd": "dvc repro"}}}))
    os.utime(rwlock, (time.time() - 864000, time.time() - 864000))  # ten days ago: before this process started
    said: list[str] = []

    dvc_locks.clear_stale(tmp_path, said.append, wait=0)

    assert said == [
        f"Cleared DVC's lock on out/x left by process {os.getpid()} (dvc repro), which is no longer running (killed "
        "before it could release it)."
    ]
    assert json.loads(rwlock.read_text()) == {}


def test_a_lock_a_live_process_holds_is_named_not_blamed_on_a_stage(tmp_path):
    tmp = tmp_path / ".dvc" / "tmp"
    tmp.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp / "lock")], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        said: list[str] = []

        with pytest.raises(Refused) as refused:
            dvc_locks.clear_stale(tmp_path, said.append, wait=0.3)

        assert said == [
            f"Waiting up to 0 s for process {holder.pid} ({sys.executable} -c {HOLD_LOCK} {tmp / 'lock'}), which "
            "holds DVC's lock in this workspace."
        ]
        assert str(refused.value) == (
            f"DVC's lock in this workspace is held by process {holder.pid} ({sys.executable} -c {HOLD_LOCK} "
            f"{tmp / 'lock'}), which is still running — let it finish, or stop it (kill {holder.pid}), then run again."
        )
    finally:
        holder.communicate("")  # it lets go and exits
    dvc_locks.clear_stale(tmp_path, said.append, wait=0)  # released: nothing to say, nothing to wait for


# zc.lockfile's way, as DVC takes its repository lock: an flock, the holder's pid in the file.
HOLD_LOCK = (
    "import fcntl, os, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); "
    "f.write(' %d\\n' % os.getpid()); f.flush(); print('held', flush=True); sys.stdin.read()"
)


@pytest.mark.slow
def test_a_stage_sent_sigterm_directly_marks_its_run_killed(tiny, tmp_path, mlflow_server):
    # GitHub's runner may signal the stage's process itself: it closes its MLflow run on its way out too.
    (tiny / "params.yaml").write_text(TINY_PARAMS.replace("seconds: 0", "seconds: 300"))
    marker = tmp_path / "marker.json"
    env = {**os.environ, "MLFLOW_URL": mlflow_server.url, "SLEEPER_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "src.sleeper"], cwd=tiny, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 128 + signal.SIGTERM
    assert lines(err)[-1] == "ERROR __main__: Stopped by SIGTERM — run the pipeline again to finish this stage"
    clean(err)
    run_id = json.loads(marker.read_text())["run_id"]
    assert mlflow_server.client().get_run(run_id).info.status == "KILLED"


# --- row 17: a stage's own bug keeps its traceback; a params.yaml key it lacks is one line ---------------------

BUGGY = """import numpy as np
import pandas as pd

from src.runloop.stage import load_params, run_stage


def main() -> None:
    params = load_params("sleeper")
    {line}


if __name__ == "__main__":
    run_stage(main)
"""
BUG_LINE = 9


@pytest.mark.parametrize(
    ("line", "raised"),
    [
        ('pd.DataFrame({"x": [1.0, 2.0]})["label"]', "KeyError: 'label'"),
        (
            "np.ones(449) * np.ones(450)",
            "ValueError: operands could not be broadcast together with shapes (449,) (450,)",
        ),
    ],
)
def test_a_bug_in_a_stage_keeps_its_traceback_with_the_stages_file_and_line(tiny, line, raised):
    (tiny / "src" / "sleeper.py").write_text(BUGGY.format(line=line))

    code, out = run_invoke(tiny, "repro", env={"AWS_SECRET_ACCESS_KEY": AWS_SECRET})

    assert code == 1
    assert "Traceback (most recent call last):" in out
    assert f'File "{tiny}/src/sleeper.py", line {BUG_LINE}, in main\n    {line}\n' in out
    assert [text for text in lines(out) if text.startswith(raised)], out
    assert "misses" not in out and AWS_SECRET not in out  # no params.yaml to blame, no secret
    assert lines(out)[-1] == "The pipeline failed (DVC's message is above) — fix the failing stage and run again."


def test_a_key_params_yaml_lacks_is_one_line_naming_the_line_that_reads_it(tiny):
    (tiny / "src" / "sleeper.py").write_text(BUGGY.format(line='print(params["epochs"])'))

    code, out = run_invoke(tiny, "repro")

    assert code == 1
    assert (
        f"ERROR __main__: params.yaml misses sleeper.epochs, which src/sleeper.py line {BUG_LINE} reads — add it to "
        "params.yaml"
    ) in lines(out)
    clean(out)


# --- row 18: the disk holding DVC's cache fills during the pipeline --------------------------------------------

BIG = """from pathlib import Path
import resource

from src.runloop.stage import run_stage


def main() -> None:
    # The stage's own writes are not what is tested: only DVC's copy into its cache meets the limits.
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    Path("out").mkdir(exist_ok=True)
    Path("out/big.bin").write_bytes(bytes(range(256)) * 8 * 1024)  # 2 MiB


if __name__ == "__main__":
    run_stage(main)
"""
BIG_DVC_YAML = """stages:
  big:
    cmd: python -m src.big
    deps:
      - src/big.py
    outs:
      - out/big.bin
"""


def small_disk(cache: Path, size: str) -> list[str] | None:
    """A command prefix that runs a command with a tmpfs of `size` mounted on `cache`, in a mount namespace of its
    own (as root, or as anyone where user namespaces are allowed); None where neither is possible."""
    cache.mkdir(parents=True, exist_ok=True)
    mount = ["sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"', str(cache)]
    for unshare in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        try:
            tried = subprocess.run([*unshare, *mount, "true"], capture_output=True, timeout=30)
        except OSError:
            return None
        if tried.returncode == 0:
            return [*unshare, *mount]
    return None


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["disk", "file size"])
def test_a_full_disk_under_the_dvc_cache_says_so_where_and_how_much_it_holds(project, limit):
    write_tiny(project, BIG_DVC_YAML, "{}\n")
    (project / "src" / "big.py").write_text(BIG)
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "A stage with a big output", cwd=project)
    cache = project / ".dvc" / "cache"
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    if limit == "disk":  # a real ENOSPC: the cache on a 1 MiB file system
        prefix = small_disk(cache, "1m")
        if prefix is None:
            pytest.skip("no tmpfs can be mounted here (neither root nor user namespaces): the file-size case runs")
        done = subprocess.run([*prefix, str(INVOKE), "repro"], **_captured(project, env))
    else:  # a real EFBIG: the process may write no file beyond 1 MB (ulimit -f), which DVC's copy meets
        done = subprocess.run(
            [str(INVOKE), "repro"],
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.RLIM_INFINITY)),
            **_captured(project, env),
        )
    out = done.stdout

    assert done.returncode == 1, out
    if limit == "disk":
        assert "No space left on device" in out  # DVC's own line stays
        assert re.fullmatch(
            rf"The disk is full: DVC could not write to its cache {re.escape(str(cache))} \(No space left on device\); "
            rf"the file system at {re.escape(str(cache))} has [\d.]+ \w+ free of 1\.0 MiB, and the cache holds "
            r"[\d.]+ \w+ — free space there, or move the cache to a larger disk \(`dvc cache dir PATH`\), then run "
            r"`invoke repro` again\.",
            lines(out)[-1],
        ), out
    else:
        assert "File too large" in out
        assert re.fullmatch(
            rf"A file-size limit stopped DVC writing to its cache {re.escape(str(cache))} \(File too large: this "
            r"process may write at most 976\.6 KiB per file, `ulimit -f`\); the cache holds [\d.]+ \w+ — raise the "
            r"limit \(`ulimit -f unlimited`\), then run `invoke repro` again\.",
            lines(out)[-1],
        ), out
    assert "not up to date" not in out and "changed files that are not its outputs" not in out
    clean(out)
    assert not (project / "dvc.lock").exists()  # nothing recorded as done


def _captured(cwd: Path, env: dict[str, str]) -> dict:
    return {
        "cwd": cwd,
        "env": env,
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        "timeout": 300,
    }


# --- row 19: an alias bomb in params.yaml --------------------------------------------------------------------

ALIAS_BOMB = "".join(
    [TINY_PARAMS, "bomb:\n", '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n']
    + [f"  {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
)


def test_repro_refuses_an_alias_bomb_before_dvc_reads_it(tiny):
    (tiny / "params.yaml").write_text(ALIAS_BOMB)

    code, out = run_invoke(tiny, "repro")

    assert code == 1
    assert lines(out) == [
        "files: params.yaml line 11: its aliases (*e here) expand to more than 100000 values, which DVC would build "
        "in memory — write the values out, or nest fewer aliases"
    ]
    nothing_ran(tiny, out)
    # Shared values as params files use them (an anchor, a merge key) are no bomb.
    (tiny / "params.yaml").write_text(TINY_PARAMS + "base: &base {depth: 6}\nother:\n  <<: *base\n  rate: 0.1\n")
    assert environment.read_yaml(tiny / "params.yaml")["other"] == {"depth": 6, "rate": 0.1}


# --- row 20: a .env no command can take ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second_line", "problem"),
    [
        (
            f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}\0tail\n".encode(),
            "line 2 holds a NUL byte, which no variable can hold — delete the NUL byte",
        ),
        (
            b"BIG=" + AWS_SECRET.encode() * 40_000 + b"\n",
            "line 2 (BIG) sets a variable longer than the 128 KiB Linux passes to a command — shorten it, or put the "
            "value in a file and set the file's path",
        ),
        (
            f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}\xe9\n".encode("latin-1"),
            "line 2 is not UTF-8 text — save the file as UTF-8",
        ),
    ],
    ids=["nul-byte", "1-mb-value", "not-utf-8"],
)
def test_a_dotenv_no_command_can_take_is_one_line_naming_the_file_and_line(tiny, second_line, problem):
    (tiny / ".env").write_bytes(b"MLFLOW_URL=\n" + second_line + b"DVC_REMOTE_URL=\n")
    said = f"{tiny}/.env {problem}"

    code, out = run_invoke(tiny, "repro")

    assert (code, lines(out)) == (1, [said])
    clean(out)
    nothing_ran(tiny, out)
    # A stage run by `dvc repro` directly reads .env too, and stops the same way.
    done = subprocess.run([sys.executable, "-m", "src.sleeper"], cwd=tiny, capture_output=True, text=True)
    assert (done.returncode, lines(done.stderr)) == (1, [f"ERROR __main__: {said}"])
    clean(done.stderr)
    # invoke doctor shows it as its row and goes on.
    code, out = run_invoke(tiny, "doctor", "--dry-run")
    assert code == 1 and re.search(rf"^files +failed +{re.escape(said.partition(' — ')[0])}", out, re.MULTILINE)
    clean(out)


# --- row 22: after the Quickstart's first line (no dev packages) -------------------------------------------


def locked(section: str) -> set[str]:
    lock = json.loads((Path(__file__).resolve().parents[1] / "Pipfile.lock").read_text())
    return {packages.normalize(name) for name in lock[section]}


def site_without(tmp_path: Path, names: set[str]) -> Path:
    """This venv's site-packages, as links, without the named distributions' metadata: what an install of the rest
    looks like to a check that reads the installed distributions."""
    site = tmp_path / "site"
    site.mkdir()
    (real,) = {Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()}
    for entry in real.iterdir():
        dist = entry.name.removesuffix(".dist-info").partition("-")[0] if entry.name.endswith(".dist-info") else ""
        if not (dist and packages.normalize(dist) in names):
            (site / entry.name).symlink_to(entry)
    return site


def python_with(tmp_path: Path, site: Path) -> Path:
    """A venv whose only packages are those `site` holds."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (purelib / "site.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")  # its .pth files too
    return venv / "bin" / "python"


@pytest.mark.slow
def test_repro_after_the_quickstarts_first_line_says_nothing_of_dev_packages(tiny, tmp_path):
    python = python_with(tmp_path, site_without(tmp_path, locked("develop") - locked("default")))
    env = {**os.environ, "PATH": os.pathsep.join([str(python.parent), os.environ["PATH"]])}

    done = subprocess.run([str(python), "-m", "invoke", "repro"], **_captured(tiny, env))

    assert done.returncode == 0, done.stdout
    assert "Running stage 'sleeper'" in done.stdout
    assert [line for line in lines(done.stdout) if line.startswith("warning:")] == []


@pytest.mark.parametrize(
    ("dev", "activated", "fix"),
    [
        (False, True, "pipenv sync --system"),
        (True, True, "pipenv sync --system --dev"),
        (True, False, ". {bin}/activate && pipenv sync --system --dev"),
    ],
)
def test_a_missing_package_is_fixed_by_the_command_this_environment_was_installed_with(
    tmp_path, monkeypatch, dev, activated, fix
):
    # The Quickstart's first line installs the default packages, its second the dev ones too; the command that
    # brings one back is that one, in this environment (activated first when `python3` on PATH is another).
    name = sorted(locked("default"))[0]
    site = site_without(tmp_path, {name} | (set() if dev else locked("develop") - locked("default")))
    other = tmp_path / "other-bin"
    other.mkdir()
    (other / "python3").write_text("#!/bin/sh\n")
    (other / "python3").chmod(0o755)
    here = Path(sys.executable).parent
    monkeypatch.setenv("PATH", os.pathsep.join([str(here if activated else other), "/usr/bin", "/bin"]))

    found, _extras = checks.installed_packages(on_runner=False, path=[str(site)])

    assert found.status == checks.WARNING
    assert found.detail.startswith(f"differ from Pipfile.lock: {name}==")
    assert found.fix == (
        f"run `{fix.format(bin=here)}` (it never removes packages: on a long-lived runner, uninstall the rest)"
    )
