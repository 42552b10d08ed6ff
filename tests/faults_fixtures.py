"""Fixtures and helpers for the fault tests (test_faults_repro.py, test_doctor.py, test_session.py, test_services.py).

`write_tiny` turns the project copy into a one-stage pipeline of its own (a stage that logs an MLflow run, writes
its output and sleeps in the run as long as params.yaml says), so the tests do not depend on the example pipeline.
`moto_with_auth` starts a moto S3 server that checks credentials (the shared one takes any), with one IAM user.
`group_running` and `until` watch processes go (or not) without sleeping a fixed time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from gitrepos import git

from src.runloop import processes, services

BIN = Path(sys.executable).parent
INVOKE = BIN / "invoke"

SLEEPER = '''"""A stage for the fault tests: an MLflow run that writes its output, then sleeps inside the run."""

import json
import os
import time
from pathlib import Path

from src.runloop import tracking
from src.runloop.stage import load_params, run_stage


def main() -> None:
    params = load_params("sleeper", types={"seconds": float, "experiment": str})
    with tracking.stage_run("sleeper", params["experiment"], params=params) as run:
        Path("out").mkdir(exist_ok=True)
        Path("out/sleeper.txt").write_text(f"slept {params['seconds']}\\n")
        if marker := os.environ.get("SLEEPER_MARKER"):
            info = {"run_id": run.info.run_id, "pid": os.getpid(), "pgid": os.getpgid(0)}
            Path(marker).write_text(json.dumps(info))
        time.sleep(params["seconds"])


if __name__ == "__main__":
    run_stage(main)
'''

TINY_DVC_YAML = """stages:
  sleeper:
    cmd: python -m src.sleeper
    deps:
      - src/sleeper.py
    params:
      - sleeper.seconds
      - sleeper.experiment
    outs:
      - out/sleeper.txt
      - runs/sleeper.json
"""

TINY_PARAMS = """# The fault tests' one stage.
sleeper:
  experiment: faults
  seconds: 0
"""


def write_tiny(project: Path, dvc_yaml: str = TINY_DVC_YAML, params: str = TINY_PARAMS) -> Path:
    """Make `project` a one-stage pipeline (committed), replacing the example's dvc.yaml and params.yaml."""
    (project / "src" / "sleeper.py").write_text(SLEEPER)
    (project / "dvc.yaml").write_text(dvc_yaml)
    (project / "params.yaml").write_text(params)
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "/out/\n")
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "A tiny pipeline for the fault tests", cwd=project)
    return project


def run_invoke(cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> tuple[int, str]:
    """`invoke ARGS` in `cwd` with this environment plus `env`: exit code and output (stdout and stderr merged)."""
    proc = subprocess.run(
        [str(INVOKE), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout


def lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def wheel(dest: Path, name: str, version: str) -> Path:
    """A minimal wheel of distribution `name` (one empty module), for pip to install as any package."""
    module = name.replace("-", "_").lower()
    dist = f"{module}-{version}"
    path = dest / f"{dist}-py3-none-any.whl"
    files = {
        f"{module}_probe_module.py": "",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in {**files, f"{dist}.dist-info/RECORD": record}.items():
            zf.writestr(n, text)
    return path


def pip_install_into(target: Path, *wheels: Path) -> Path:
    """Install wheels with pip into `target` (a folder to put on PYTHONPATH): what a previous job leaves behind."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--target",
            str(target),
            *map(str, wheels),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return target


def process_running(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def until(condition: Callable[[], bool], seconds: float, failure: Callable[[], str]) -> None:
    """Wait for `condition`; fail with `failure()` after `seconds` (a bound on a hang, not a measured time)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(failure(), pytrace=False)
        time.sleep(0.1)


def group_running(pgid: int) -> list[int]:
    """The pids of group `pgid` that still run."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            found.append(int(stat.parent.name))
    return found


@dataclass(frozen=True)
class AuthS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


@contextmanager
def moto_with_auth(base: Path) -> Iterator[AuthS3]:
    """A moto S3 server that checks credentials: one IAM user allowed s3:*, and one bucket; stopped on exit."""
    import boto3

    port = services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "DVC_"))}
    env.update(HOME=str(base), AWS_EC2_METADATA_DISABLED="true")
    log = base / "moto.log"
    # Started as the shared servers are: a group of its own, which goes with the session however it ends.
    proc = processes.start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env, log, base)
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(f"{url}/moto-api/", None, 30, proc, log)
        anyone = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": "us-east-1"}
        iam = boto3.client("iam", endpoint_url=url, **anyone)
        iam.create_user(UserName="runner")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="runner", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="runner")["AccessKey"]
        boto3.client("s3", endpoint_url=url, **anyone).create_bucket(Bucket="dvc-auth")
        # From now on every request must be signed with a key the IAM user holds.
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 - loopback
        yield AuthS3(url, key["AccessKeyId"], key["SecretAccessKey"], "dvc-auth")
    finally:
        processes.stop(proc)
