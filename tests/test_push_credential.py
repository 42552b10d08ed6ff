"""The push token: taken out of the environment before anything starts, given to one git command at a time.

test_faults_share.py proves share authenticates with it against a git smart-HTTP server and leaves it nowhere;
test_workflow.py proves a stage run by the workflow cannot read it. Here too: a GitHub App's installation token,
made by the workflow (a stand-in for actions/create-github-app-token under act), pushes the results instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest
from git_http import holds, serving
from gitrepos import clone, commit_of, dvc_key, git, lock_outs, parents, refs, show, tag_run
from loop_fixtures import APP_ACTION, SECRETS, add_stage, ran

from src.runloop import environment, push_credential, runner
from src.runloop.act import STAND_INS, stand_ins
from src.runloop.environment import ROOT
from src.runloop.project import WORKFLOW as WORKFLOW_PATH
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
    # No token: no header, and still no prompt (a job waiting for a terminal until its timeout, as a route step's
    # fetch did under act before).
    assert push_credential.git_auth(None) == push_credential.GitAuth(env={"GIT_TERMINAL_PROMPT": "0"})
    assert push_credential.git_auth(None).used == ""


def test_the_settings_check_takes_the_workflows_flag_for_the_token():
    runner.require_ci_settings({**ALL_BUT_THE_TOKEN, "ACCESS_TOKEN_SET": "true"})  # repro's step: the flag only
    runner.require_ci_settings({**ALL_BUT_THE_TOKEN, "ACCESS_TOKEN": "tok-123"})  # share's step: the token

    with pytest.raises(Refused) as refused:
        runner.require_ci_settings({**ALL_BUT_THE_TOKEN, "ACCESS_TOKEN_SET": "false"})  # the secret is missing

    assert str(refused.value).startswith(
        "Missing on this runner: ACCESS_TOKEN (from secret ACCESS_TOKEN, or a GitHub App"
    )


# -- the App's token through the real workflow, under act --------------------------------------------------------

SNOOP = """\
import json, os
from pathlib import Path

Path("snoop").mkdir(exist_ok=True)
Path("snoop/env.json").write_text(json.dumps({k: v for k, v in os.environ.items() if not k.startswith("AWS_")}))
"""


@pytest.mark.slow
def test_a_github_apps_token_pushes_the_results_with_no_access_token(dev, origin, act, s3, remote, tmp_path):
    """No ACCESS_TOKEN secret: the App's variable and key make a token for share, which an origin requiring that
    token alone takes; the key and the token reach no stage, no bucket and no commit."""
    key = f"-----BEGIN RSA PRIVATE KEY-----\nkey-{uuid.uuid4().hex}\n-----END RSA PRIVATE KEY-----\n"
    client = "Iv23liStandIn"
    token = "ghs_" + hashlib.sha256(f"{client}:{key}".encode()).hexdigest()  # what the stand-in makes of them
    add_stage(dev, "snoop", SNOOP, {"snoop/env.json": {}})
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    repo = clone(origin, tmp_path / "runner", f"refs/tags/{tag}")
    secrets = {k: v for k, v in SECRETS.items() if k != "ACCESS_TOKEN"} | {"PUSH_APP_PRIVATE_KEY": key}

    with serving(origin, token) as (url, server):
        git("remote", "set-url", "origin", url, cwd=repo)  # the forge: pushes with the App's token alone
        run = act.run(repo, tag, variables={**act.variables, "PUSH_APP_CLIENT_ID": client}, secrets=secrets)

    log = ran(run)
    assert run.steps["Make the App's push token"] == "success", run.steps
    assert stand_ins((ROOT / WORKFLOW_PATH).read_text()) == {APP_ACTION: STAND_INS / "create-github-app-token"}
    given = json.loads((act.home / "app-token-inputs.json").read_text())
    assert given == {
        "client-id": client,
        "private-key-sha256": hashlib.sha256(key.encode()).hexdigest(),
        "permission-contents": "write",
    }
    results = refs(origin)["refs/heads/main"]
    assert parents(origin, results) == [tagged]
    assert f"Results committed as {results[:12]} on origin/main." in log
    pushes = [r for r in server.requests if r[0] == "POST" and r[1].endswith("git-receive-pack?")]
    assert pushes and all(authorized for *_, authorized in pushes)
    assert server.leaked == []
    # The stage saw that a credential is set, never the key nor a token.
    md5 = lock_outs(show(origin, results, "dvc.lock"))["snoop/env.json"]
    raw = s3.server.client().get_object(Bucket=remote.bucket, Key=f"{remote.prefix}/{dvc_key(md5)}")["Body"].read()
    seen = json.loads(raw)
    assert seen["RUN_TAG"] == tag and seen["PUSH_APP_SET"] == "true"
    assert not {"ACCESS_TOKEN", "PUSH_APP_PRIVATE_KEY"} & seen.keys()
    everything = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=origin, capture_output=True, check=True
    ).stdout
    buckets = [s3.server.client().get_object(Bucket=b, Key=k)["Body"].read()
               for b in (remote.bucket, s3.mlflow_bucket) for k in s3.server.keys(b)]  # fmt: skip
    for data in (everything, *buckets, log.encode()):
        assert not holds(data, token) and key.encode() not in data
