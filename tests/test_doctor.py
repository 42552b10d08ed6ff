"""`invoke doctor`: repro's checks and share's git checks as rows, against the real services; never a secret."""

from __future__ import annotations

import json
import re

import pytest
from faults_fixtures import lines, run_invoke
from gitrepos import experiment as experiment_of
from gitrepos import git, publish

# Values no tool knows: if one shows up in an output, doctor printed it.
PASSWORD = "pw-Dq44-never-print"  # noqa: S105
AWS_SECRET = "aws-secret-Lm19-never-print"  # noqa: S105
TOKEN = "tok-Rw07-never-print"  # noqa: S105
CHECKS = [
    "settings",
    "files",
    "python",
    "packages",
    "outputs",
    "dvc remote",
    "mlflow",
    "git identity",
    "push credential",
    "git push",
]


def rows(out: str) -> dict[str, dict[str, str]]:
    return {row["check"]: row for row in json.loads(out)}


def clean(out: str) -> None:
    assert "Traceback" not in out, out
    for secret in (PASSWORD, AWS_SECRET, TOKEN):
        assert secret not in out, out


@pytest.mark.slow
def test_doctor_on_a_configured_machine_says_ok_to_everything(project, origin, s3, mlflow_server):
    publish(project, origin)
    git("config", "user.name", "Runner", cwd=project)
    git("config", "user.email", "runner@example.com", cwd=project)
    env = {
        **s3.server.env(),
        "DVC_REMOTE_URL": f"s3://{s3.dvc_bucket}/store",
        "MLFLOW_URL": mlflow_server.url.replace("http://", f"http://ci:{PASSWORD}@"),
    }

    code, out = run_invoke(project, "doctor", env=env)

    assert code == 0, out
    shown = [line.split()[0:2] for line in lines(out)]
    assert [" ".join(s) for s in shown if s[0] not in ("git", "dvc", "push")] == [
        f"{c} ok" for c in CHECKS if not c.startswith(("git", "dvc", "push"))
    ]
    clean(out)

    code, out = run_invoke(project, "doctor", "--json", env=env)

    assert code == 0, out
    found = rows(out)
    assert list(found) == CHECKS
    assert {c: r["status"] for c, r in found.items()} == dict.fromkeys(CHECKS, "ok")
    assert found["dvc remote"]["detail"] == (
        f"s3://{s3.dvc_bucket}/store at {s3.server.endpoint_url} answers and takes writes"
    )
    experiment = experiment_of(project)  # what the project's params.yaml names
    assert found["mlflow"]["detail"] in (
        f"{mlflow_server.url} answers; experiment {experiment!r} found",
        f"{mlflow_server.url} answers; experiment {experiment!r} not there yet (the first run creates it)",
    )
    assert found["git push"]["detail"] == f"origin ({origin}) accepts a push (dry run)"
    assert found["git identity"]["detail"] == "Runner <runner@example.com>"
    clean(out)
    # Nothing was left behind: no probe object in the bucket, no branch on origin.
    assert s3.server.keys(s3.dvc_bucket) == []
    assert git("for-each-ref", "--format=%(refname)", cwd=origin) == "refs/heads/main"


def test_doctor_names_each_failure_with_its_fix_and_no_secret(project):
    git("remote", "add", "origin", f"http://x-access-token:{TOKEN}@127.0.0.1:9/acme/project.git", cwd=project)
    env = {
        "MLFLOW_URL": f"http://ci:{PASSWORD}@127.0.0.1:9",
        "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIADOCTOR",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "ACCESS_TOKEN": TOKEN,
    }

    code, out = run_invoke(project, "doctor", "--json", env=env)

    assert code == 1
    assert lines(out)[-1] == "3 check(s) failed: dvc remote, mlflow, git push — apply the fixes above."
    found = rows(out[: out.rindex("]") + 1])
    assert {c: r["status"] for c, r in found.items() if r["status"] != "ok"} == {
        "dvc remote": "failed",
        "mlflow": "failed",
        "git identity": "warning",
        "git push": "failed",
    }
    assert found["mlflow"] == {
        "check": "mlflow",
        "status": "failed",
        "detail": "MLflow at http://127.0.0.1:9 is unreachable ([Errno 111] Connection refused)",
        "fix": "check MLFLOW_URL and that the tracking server is up",
    }
    assert found["dvc remote"]["detail"] == (
        "the DVC remote's S3 endpoint http://127.0.0.1:9 is unreachable (EndpointConnectionError)"
    )
    assert found["dvc remote"]["fix"] == "check MLFLOW_S3_ENDPOINT_URL and that the S3 service is up"
    assert found["git push"]["detail"].startswith(
        "git may not push to origin (http://127.0.0.1:9/acme/project.git): fatal: unable to access"
    )
    clean(out)

    code, text = run_invoke(project, "doctor", env=env)

    assert code == 1
    assert (
        "mlflow           failed   MLflow at http://127.0.0.1:9 is unreachable ([Errno 111] Connection refused)" in text
    )
    assert "fix: check MLFLOW_URL and that the tracking server is up" in text
    clean(text)


def test_doctor_as_the_runner_lists_every_missing_setting(project):
    code, out = run_invoke(project, "doctor", "--on-runner", "--dry-run", "--json")

    assert code == 1
    settings = rows(out[: out.rindex("]") + 1])["settings"]
    assert settings["status"] == "failed"
    assert settings["detail"].startswith("Missing on this runner: MLFLOW_URL (from repository variable MLFLOW_URL), ")
    assert settings["detail"].endswith(
        "ACCESS_TOKEN (from secret ACCESS_TOKEN, or a GitHub App: repository variable PUSH_APP_CLIENT_ID and secret "
        "PUSH_APP_PRIVATE_KEY)"
    )
    assert settings["fix"].startswith("set them in the repository's Settings → Secrets and variables → Actions")
    credential = rows(out[: out.rindex("]") + 1])["push credential"]
    assert (credential["status"], credential["detail"]) == ("failed", "the run has nothing to push its results with")


def test_doctor_as_the_runner_says_which_credential_the_run_pushes_with(project):
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEdoctor-app-key\n-----END RSA PRIVATE KEY-----"
    app = {"PUSH_APP_CLIENT_ID": "Iv23liDoctorApp", "PUSH_APP_PRIVATE_KEY": key}

    _, with_app = run_invoke(
        project, "doctor", "--on-runner", "--dry-run", "--json", env={**app, "ACCESS_TOKEN": TOKEN}
    )
    _, with_token = run_invoke(project, "doctor", "--on-runner", "--dry-run", "--json", env={"ACCESS_TOKEN": TOKEN})
    _, flagged = run_invoke(project, "doctor", "--on-runner", "--dry-run", "--json", env={"PUSH_APP_SET": "true"})

    def said(out: str) -> str:
        return rows(out[: out.rindex("]") + 1])["push credential"]["detail"]

    assert said(with_app) == (
        "the run pushes with the GitHub App Iv23liDoctorApp's installation token, made for each run by "
        "actions/create-github-app-token (it expires within the hour)"
    )  # the App wins over the long-lived token
    assert said(with_token) == (
        "the run pushes with ACCESS_TOKEN, a long-lived token (a GitHub App's expiring token is safer: "
        "docs/credentials.md)"
    )
    assert said(flagged).startswith("the run pushes with the GitHub App's installation token")
    for out in (with_app, with_token, flagged):
        assert "MIIEdoctor-app-key" not in out and TOKEN not in out


def test_doctor_dry_run_contacts_nothing(project):
    env = {"MLFLOW_URL": f"http://ci:{PASSWORD}@127.0.0.1:9", "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9"}

    code, out = run_invoke(project, "doctor", "--dry-run", "--json", env=env)

    assert code == 0, out
    found = rows(out)
    assert {c: found[c]["status"] for c in ("dvc remote", "mlflow", "git push")} == dict.fromkeys(
        ("dvc remote", "mlflow", "git push"), "skipped"
    )
    remote = re.search(r"url = (\S+)", (project / ".dvc" / "config").read_text()).group(1)
    assert found["settings"]["detail"] == f"MLflow at http://127.0.0.1:9; DVC remote {remote}"
    clean(out)


def test_doctor_shows_an_unreadable_dotenv_as_a_row_and_goes_on(project):
    (project / ".env").write_text(f"MLFLOW_URL=\nAWS_SECRET_ACCESS_KEY='{AWS_SECRET}\n")

    code, out = run_invoke(project, "doctor", "--dry-run", "--json")

    assert code == 1
    found = rows(out[: out.rindex("]") + 1])
    assert found["files"] == {
        "check": "files",
        "status": "failed",
        "detail": f"{project}/.env line 2 cannot be parsed",
        "fix": "write each setting as NAME=value (quote a value holding spaces or #, close every quote)",
    }
    assert found["python"]["status"] == "ok" and found["outputs"]["status"] == "ok"
    clean(out)
