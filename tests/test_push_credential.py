"""The push token: taken out of the environment before anything starts, given to one git command at a time.

test_faults_share.py proves share authenticates with it against a git smart-HTTP server and leaves it nowhere;
test_workflow.py proves a stage run by the workflow cannot read it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from src.runloop import environment, push_credential, runner
from src.runloop.refusal import Refused

ALL_BUT_THE_TOKEN = {
    "GITHUB_ACTIONS": "true",  # on CI: the check applies there alone
    "MLFLOW_URL": "http://127.0.0.1:9",
    "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "k",
    "AWS_SECRET_ACCESS_KEY": "s",
}


def test_withhold_leaves_no_token_for_children_and_says_it_was_set(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "ROOT", tmp_path)  # no .env of this checkout
    monkeypatch.setenv("ACCESS_TOKEN", "tok-123")

    assert push_credential.withhold() == "tok-123"

    child = subprocess.run([sys.executable, "-c", "import os; print(dict(os.environ))"], capture_output=True, text=True)
    assert "tok-123" not in child.stdout and "ACCESS_TOKEN_SET': 'true'" in child.stdout
    assert "ACCESS_TOKEN" not in os.environ
    assert push_credential.withhold() is None  # taken once; the flag stays
    assert os.environ["ACCESS_TOKEN_SET"] == "true"  # noqa: S105 - a flag, not a secret


def test_withhold_keeps_a_github_apps_private_key_from_children_too(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "ROOT", tmp_path)
    (tmp_path / ".env").write_text("PUSH_APP_CLIENT_ID=Iv23liApp\nPUSH_APP_PRIVATE_KEY='-----BEGIN KEY----- k3y'\n")

    assert push_credential.withhold() is None  # no token: the App makes one on the runner

    child = subprocess.run([sys.executable, "-c", "import os; print(dict(os.environ))"], capture_output=True, text=True)
    assert "k3y" not in child.stdout and "PUSH_APP_SET': 'true'" in child.stdout
    assert push_credential.uses_app(os.environ) and push_credential.is_set(os.environ)


def test_git_auth_keeps_the_token_off_the_command_line():
    auth = push_credential.git_auth("tok-123")

    assert auth.args == ["--config-env=http.extraHeader=RUNLOOP_GIT_AUTH_HEADER"]
    # base64("x-access-token:tok-123"), the header actions/checkout sends too
    assert auth.env["RUNLOOP_GIT_AUTH_HEADER"] == "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46dG9rLTEyMw=="
    assert auth.used == " with ACCESS_TOKEN"
    assert push_credential.git_auth(None) == push_credential.GitAuth() and push_credential.git_auth(None).used == ""


def test_the_settings_check_takes_the_workflows_flag_for_the_token():
    runner.require_ci_settings({**ALL_BUT_THE_TOKEN, "ACCESS_TOKEN_SET": "true"})  # repro's step: the flag only
    runner.require_ci_settings({**ALL_BUT_THE_TOKEN, "ACCESS_TOKEN": "tok-123"})  # share's step: the token

    with pytest.raises(Refused) as refused:
        runner.require_ci_settings({**ALL_BUT_THE_TOKEN, "ACCESS_TOKEN_SET": "false"})  # the secret is missing

    assert str(refused.value).startswith(
        "Missing on this runner: ACCESS_TOKEN (from secret ACCESS_TOKEN, or a GitHub App"
    )
