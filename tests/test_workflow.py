"""The tag-triggered workflow: static checks of the file, and the whole loop run by `act` on this machine.

act runs the workflow in host mode: it skips actions/checkout and copies the runner's clone (with its origin
remote, tags and detached HEAD) into a temp dir under its HOME, then runs each `run:` step there.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from gitrepos import (
    clone,
    commit_file,
    commit_of,
    dvc_key,
    files_named,
    git,
    invoke,
    lock_outs,
    parents,
    refs,
    show,
    stages,
    subject,
    tag_run,
    trailers,
)
from gitrepos import experiment as experiment_of
from loop_fixtures import (
    ACTOR,
    APP_ACTION,
    CI_RUN,
    SECRETS,
    add_stage,
    ran,
)

import tasks
from src.runloop import ci, record, run_tag, runner_classes
from src.runloop.services import BIN

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / tasks.WORKFLOW
# Made up at run time, so that no file of the project holds them: a test that searches every byte a run left
# behind for them (act prints `***` for the secrets it knows, so its log alone proves nothing) finds only leaks.


# What share and the failure records push with: the App's token when the App is set up, else the secret.
PUSH_TOKEN = "${{ steps.app-token.outputs.token || secrets.ACCESS_TOKEN }}"  # noqa: S105 - an expression


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def job(workflow: dict) -> dict:
    """The run job: reproduce and share."""
    assert list(workflow["jobs"]) == ["route", "run"]
    return workflow["jobs"]["run"]


@pytest.fixture(scope="module")
def route_job(workflow: dict) -> dict:
    """The first job: the runner class of the tag, mapped to the run job's labels."""
    return workflow["jobs"]["route"]


# -- the file ---------------------------------------------------------------------------------------------------


def test_workflow_runs_for_the_tags_tag_run_makes(workflow):
    # YAML 1.1 reads the key `on` as True.
    assert workflow[True] == {"push": {"tags": [f"{tasks.TAG_PREFIX}*"]}}
    (pattern,) = workflow[True]["push"]["tags"]
    # GitHub's `*` matches anything but "/"; tag-run's names never hold one (the branch is slugged).
    made = "-".join([tasks.TAG_PREFIX, run_tag.slug("feature/New_Idea"), "20260102-030405", "nightly"])
    assert "/" not in made and fnmatch(made, pattern)
    assert not fnmatch("example-run-main-20260102-030405", pattern)


def test_workflow_grants_least_privilege(workflow, job, route_job):
    assert workflow["permissions"] == {}
    # share pushes with the push token, not the job's; the job's token comments on the run's pull request.
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert route_job["permissions"] == {"contents": "read"}  # the tag's annotation; the failure record as share
    assert 0 < job["timeout-minutes"] <= 120
    assert 0 < route_job["timeout-minutes"] <= 5  # it installs nothing: an unknown class fails in seconds
    assert workflow["concurrency"]["cancel-in-progress"] is False  # never kill a run halfway through a push


def test_workflow_pins_actions_by_sha():
    uses = [line.strip() for line in WORKFLOW.read_text().splitlines() if line.strip().startswith(("uses:", "- uses:"))]
    assert uses
    for line in uses:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


def test_workflow_steps_are_single_task_calls(workflow, job, route_job):
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == [
        "python3 -m src.runloop.lock_venv",
        "invoke repro",
        "invoke share",
        "python3 -m src.runloop.failure",
    ]
    assert [step["run"] for step in route_job["steps"] if "run" in step] == [
        "python3 -m src.runloop.route",
        "python3 -m src.runloop.failure",
    ]
    # The failure record runs only when a step failed or the job was cancelled, and needs nothing installed.
    assert job["steps"][-1]["if"] == route_job["steps"][-1]["if"] == "failure() || cancelled()"
    # Every step's output is kept for it, through the shell that runs the steps.
    assert workflow["defaults"] == {"run": {"shell": "python3 -m src.runloop.step_log {0}"}}
    for script in runs + [step["run"] for step in route_job["steps"] if "run" in step]:
        assert "${{" not in script
        if script.startswith("invoke "):
            assert callable(getattr(tasks, script.split()[1].replace("-", "_")))
    (checkout,) = [step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@")]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0  # share needs the tags and the remote branches


def _step(job: dict, run: str) -> dict:
    (step,) = [step for step in job["steps"] if step.get("run") == run]
    return step


def test_workflow_env_gives_the_tasks_their_settings(job):
    # The push token goes to share's step alone; every other setting to the whole job.
    env = {**job["env"], **_step(job, "invoke share")["env"]}
    sources = {"secret": "secrets", "repository variable": "vars"}
    for name, where in ci.SETTINGS.items():
        kind, _, setting = where.rpartition(" ")
        given = f"{sources[kind]}.{setting}"
        # The push token: the App's when it is set up (ci.ALTERNATIVES), else the secret.
        assert env[name] == (PUSH_TOKEN if name in ci.ALTERNATIVES else f"${{{{ {given} }}}}"), name
    # And the names the runner's settings have, spelled out.
    expected = {
        "ACCESS_TOKEN": "steps.app-token.outputs.token || secrets.ACCESS_TOKEN",
        "AWS_ACCESS_KEY_ID": "secrets.MINIO_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "secrets.MINIO_SECRET_ACCESS_KEY",
        "MLFLOW_URL": "vars.MLFLOW_URL",
        "MLFLOW_S3_ENDPOINT_URL": "vars.MLFLOW_S3_ENDPOINT_URL",
    }
    assert {name: env[name] for name in expected} == {k: f"${{{{ {v} }}}}" for k, v in expected.items()}


def test_workflow_gives_the_push_token_to_share_alone(job):
    """act skips actions/checkout, so what the checkout keeps on disk is checked here, in the file."""
    (checkout,) = [step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False  # no credential in .git/config for a stage to read
    assert "ACCESS_TOKEN" not in job["env"]  # not job-wide: neither pipenv nor the stages see it
    # The App's token when the App is set up, else the secret; and the job's token, for the pull request's comment.
    assert _step(job, "invoke share")["env"] == {
        "ACCESS_TOKEN": PUSH_TOKEN,
        "GITHUB_TOKEN": "${{ github.token }}",
    }
    # repro learns only whether a credential is set, to name a missing one.
    assert _step(job, "invoke repro")["env"] == {
        "ACCESS_TOKEN_SET": "${{ secrets.ACCESS_TOKEN != '' }}",
        "PUSH_APP_SET": "${{ vars.PUSH_APP_CLIENT_ID != '' && secrets.PUSH_APP_PRIVATE_KEY != '' }}",
    }
    assert "env" not in _step(job, "python3 -m src.runloop.lock_venv")
    # The failure record pushes with it too; it runs no code of the pipeline's.
    failure = _step(job, "python3 -m src.runloop.failure")
    assert failure["env"] == {"ACCESS_TOKEN": PUSH_TOKEN, "JOB_STATUS": "${{ job.status }}"}
    # The route job's own failure record too; its route step gets the job's read-only token, for the tag alone.
    (route_job,) = [j for name, j in yaml.safe_load(WORKFLOW.read_text())["jobs"].items() if name == "route"]
    assert _step(route_job, "python3 -m src.runloop.failure")["env"] == failure["env"]
    assert _step(route_job, "python3 -m src.runloop.route")["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}
    # Nowhere else: the route job's failure record, the checkout's token (the fetch), repro's flag, share's and the
    # failure record's steps; the App's key to the token action alone, which runs in both jobs.
    text = WORKFLOW.read_text()
    uses = re.findall(r"^.*secrets\.ACCESS_TOKEN.*$", text, flags=re.MULTILINE)
    assert [line.split(":")[0].strip() for line in uses] == [
        "ACCESS_TOKEN",
        "token",
        "ACCESS_TOKEN_SET",
        "ACCESS_TOKEN",
        "ACCESS_TOKEN",
    ]
    keys = re.findall(r"^.*secrets\.PUSH_APP_PRIVATE_KEY.*$", text, flags=re.MULTILINE)
    assert [line.split(":")[0].strip() for line in keys] == ["private-key", "PUSH_APP_SET", "private-key"]
    assert "secrets.GITHUB_TOKEN" not in text  # the job's token is github.token, given by name where it is used


def test_the_apps_token_is_made_after_the_pipeline_for_share_and_the_failure_record(job, route_job):
    """actions/create-github-app-token, SHA-pinned, with the variable and the key: contents write, nothing more."""
    for each, when in (
        (job, "${{ !cancelled() && vars.PUSH_APP_CLIENT_ID != '' }}"),
        (route_job, "(failure() || cancelled()) && vars.PUSH_APP_CLIENT_ID != ''"),
    ):
        (token,) = [step for step in each["steps"] if step.get("id") == "app-token"]
        assert token["uses"] == APP_ACTION
        assert token["if"] == when
        assert token["with"] == {
            "client-id": "${{ vars.PUSH_APP_CLIENT_ID }}",
            "private-key": "${{ secrets.PUSH_APP_PRIVATE_KEY }}",
            "permission-contents": "write",
        }
        names = [step.get("run") or step.get("id") for step in each["steps"]]
        # Before the steps that push (share, the failure record); in the run job after the pipeline, so that a long
        # run does not outlive a token that expires within the hour.
        assert names.index("app-token") == names.index("python3 -m src.runloop.failure") - 1 - (each is job)
    names = [step.get("run") or step.get("id") for step in job["steps"]]
    assert names.index("invoke repro") < names.index("app-token") < names.index("invoke share")


def test_the_run_job_runs_where_the_route_job_sends_it(job, route_job):
    table = runner_classes.read(ROOT)
    # The route job runs on the default class's runners; the run job on the labels the route job chose.
    assert route_job["runs-on"] == list(table.labels(table.default))
    assert job["needs"] == "route"
    assert job["runs-on"] == "${{ fromJSON(needs.route.outputs.labels) }}"
    assert route_job["outputs"] == {
        "class": "${{ steps.route.outputs.class }}",
        "labels": "${{ steps.route.outputs.labels }}",
    }
    # What the route chose is recorded with the run (ci.runner reads these).
    assert {k: job["env"][k] for k in (ci.RUNNER_CLASS, ci.RUNNER_LABELS)} == {
        ci.RUNNER_CLASS: "${{ needs.route.outputs.class }}",
        ci.RUNNER_LABELS: "${{ needs.route.outputs.labels }}",
    }
    # actionlint knows every label a class names (GitHub's own aside).
    known = yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"]["labels"]
    named = {label for labels in table.classes.values() for label in labels} - {"self-hosted"}
    assert named <= set(known)


def test_workflow_passes_actionlint_which_checks_the_routing(tmp_path):
    """actionlint reads what zizmor and the schema do not: a needs output that does not exist, expression types."""
    lint = [str(BIN / "actionlint"), "-color=false"]
    good = subprocess.run([*lint, str(WORKFLOW)], cwd=ROOT, capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr

    broken = tmp_path / ".github" / "workflows" / WORKFLOW.name
    broken.parent.mkdir(parents=True)
    broken.write_text(
        WORKFLOW.read_text().replace("fromJSON(needs.route.outputs.labels)", "fromJSON(needs.route.outputs.label)")
    )
    (tmp_path / ".github" / "actionlint.yaml").write_text((ROOT / ".github" / "actionlint.yaml").read_text())
    found = subprocess.run([*lint, str(broken)], cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 1
    assert 'property "label" is not defined in object type {class: string; labels: string}' in found.stdout


def test_workflow_and_dependabot_pass_zizmor_pedantic():
    result = subprocess.run(
        [
            str(BIN / "zizmor"),
            "--offline",
            "--strict-collection",
            "--persona",
            "pedantic",
            "--format",
            "json",
            str(ROOT / ".github"),
        ],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, json.loads(result.stdout)) == (0, []), result.stdout + result.stderr
    assert "zizmor: ignore" not in WORKFLOW.read_text()  # nothing silenced, either


def test_dependabot_keeps_pinned_actions_and_the_lock_current():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert updates.keys() == {"github-actions", "pip"}  # pip is Dependabot's name for Pipfile/Pipfile.lock too
    for update in updates.values():
        assert (update["directory"], update["schedule"]["interval"]) == ("/", "weekly")


# -- the loop, run by act ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_workflow_runs_the_loop_end_to_end(dev, origin, act, s3, remote, mlflow_server, tmp_path, isolated_env):
    before = refs(origin)
    tag = tag_run(dev, "--message", "Baseline on the runner")
    tagged = commit_of(origin, tag)
    assert set(refs(origin)) - set(before) == {f"refs/tags/{tag}"}
    assert {k: refs(origin)[k] for k in before} == before

    # 1. The tag's first run: the pipeline executes, logs to MLflow, and the results land on main.
    first = act.run(clone(origin, tmp_path / "runner-1", f"refs/tags/{tag}"), tag)

    log = ran(first)
    assert "$ dvc repro --pull" in log and "Running stage 'train'" in log
    results = refs(origin)["refs/heads/main"]
    assert subject(origin, results) == "Initial commit-results"
    assert parents(origin, results) == [tagged]
    found = trailers(origin, results)
    mlflow_runs = found.pop("MLflow-Run")
    assert found == {
        "Run-Tag": [tag],
        "Run-Commit": [tagged],
        "Run-Outcome": ["results"],
        "CI-Run": [CI_RUN],
        "Run-Attempt": ["1"],
        "Runner-Class": ["cpu"],  # tag-run's default class, which the route job sent the run to
        "Run-Record": ["2"],
    }
    bot = f"{ACTOR} <{ACTOR}@users.noreply.github.com>"
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>", results, cwd=origin) == f"{bot}|{bot}"
    # The data is in the DVC remote: every output dvc.lock names, and a run-cache entry per stage.
    keys = remote.keys(s3)
    assert {dvc_key(md5) for md5 in lock_outs(show(origin, results, "dvc.lock")).values()} <= keys
    assert len({key.rsplit("/", 1)[0] for key in keys if key.startswith("runs/")}) == len(stages(dev))
    # MLflow has the run, tied to the tag, the commit and the CI run, with its model in S3.
    client = mlflow_server.client()
    experiment = client.get_experiment_by_name(experiment_of(dev))
    runs = {r.data.tags["stage"]: r for r in client.search_runs([experiment.experiment_id], f"tags.run_tag = '{tag}'")}
    run = runs["train"]
    run_id = run.info.run_id
    assert sorted(mlflow_runs) == sorted(r.info.run_id for r in runs.values())
    for stage_run in runs.values():
        assert (stage_run.data.tags["git_commit"], stage_run.data.tags["ci_run_url"]) == (tagged, CI_RUN)
    assert "train_accuracy" in run.data.metrics and "test_accuracy" in runs["evaluate"].data.metrics
    assert runs["evaluate"].data.tags["mlflow.parentRunId"] == run_id
    (version,) = client.search_model_versions(f"run_id='{run_id}'")  # the model MLflow loads, registered
    model = client.get_logged_model(version.source.removeprefix("models:/")).artifact_location
    prefix = model.removeprefix(f"s3://{s3.mlflow_bucket}/")
    assert f"{prefix}/artifacts/model.json" in s3.server.keys(s3.mlflow_bucket, prefix)
    recorded = json.dumps([run.data.tags, run.data.params]) + git("log", "-1", "--format=%B", results, cwd=origin)
    assert not any(secret in recorded for secret in SECRETS.values())
    # The job summary tells the tag, the metrics and where the results went.
    assert f"## Run `{tag}`" in first.summary
    assert re.search(r"^\| metrics/evaluate\.json +\| 0\.\d+ ", first.summary, re.MULTILINE)
    assert f"Results committed as {results[:12]} on origin/main" in first.summary
    assert f"/#/experiments/{experiment.experiment_id}/runs/{run_id}" in first.summary

    # 2. The same tag again (a re-run of the job): nothing to recompute, nothing new to commit.
    state = refs(origin)
    log = ran(act.run(clone(origin, tmp_path / "runner-2", f"refs/tags/{tag}"), tag))

    assert "Running stage" not in log
    assert f"Results of {tag} are already on origin as {results[:12]}" in log
    assert refs(origin) == state

    # 3. A second tag of the same commit: restored from the run cache, the same dvc.lock as on main; a record of
    #    its own goes to the side branch named after it (tests/test_outcomes.py follows such runs further).
    second = tag_run(dev, "--name", "second")
    state = refs(origin)
    log = ran(act.run(clone(origin, tmp_path / "runner-3", f"refs/tags/{second}"), second))

    assert "Running stage" not in log
    same = refs(origin)[f"refs/heads/results/{second}"]
    assert refs(origin) == {**state, f"refs/heads/results/{second}": same}
    assert trailers(origin, same)["Same-As"] == [results]

    # 4. main moves on while a run is going: its results go to a branch of their own, main is left alone.
    git("pull", "--quiet", "--ff-only", cwd=dev)
    evaluate = dev / "src" / "mini" / "evaluate.py"
    tuned = commit_file(dev, "src/mini/evaluate.py", evaluate.read_text() + "# tuned\n", "Tune the evaluation")
    git("push", "--quiet", "origin", "main", cwd=dev)
    third = tag_run(dev)
    runner = clone(origin, tmp_path / "runner-4", f"refs/tags/{third}")
    moved = commit_file(dev, "NOTES.md", "Next idea\n", "Add notes")
    git("push", "--quiet", "origin", "main", cwd=dev)
    state = refs(origin)

    log = ran(act.run(runner, third))

    assert re.findall(r"Running stage '(\w+)'", log) == ["evaluate"]
    side = f"refs/heads/results/{third}"
    after = refs(origin)
    assert after.pop(side) and after == state
    assert state["refs/heads/main"] == moved
    assert parents(origin, side) == [tuned]
    assert subject(origin, side) == "Tune the evaluation-results"
    assert f"origin/main moved on since {third}" in log
    # Only evaluate ran: its run carries this tag and commit, nested under the first tag's model run.
    (evaluation,) = client.search_runs([experiment.experiment_id], f"tags.run_tag = '{third}'")
    assert (evaluation.data.tags["stage"], evaluation.data.tags["git_commit"]) == ("evaluate", tuned)
    assert evaluation.data.tags["mlflow.parentRunId"] == run_id
    assert trailers(origin, side)["MLflow-Run"] == [evaluation.info.run_id, run_id]

    # 5. A tag whose name is shell syntax flows through as a plain name.
    odd = tasks.TAG_PREFIX + "-x$(touch${IFS}pwned);`touch${IFS}pwned`"
    git("check-ref-format", f"refs/tags/{odd}", cwd=dev)
    git("tag", "-m", "odd", odd, cwd=dev)
    git("push", "--quiet", "origin", f"refs/tags/{odd}", cwd=dev)

    log = ran(act.run(clone(origin, tmp_path / "runner-5", f"refs/tags/{odd}"), odd))

    main = refs(origin)["refs/heads/main"]
    assert parents(origin, main) == [moved]
    assert trailers(origin, main)["Run-Tag"] == [odd]
    assert files_named("pwned*", tmp_path, isolated_env) + list(Path.cwd().glob("pwned*")) == []


@pytest.mark.slow
def test_a_run_goes_to_the_runners_of_its_class(dev, origin, act, s3, remote, mlflow_server, tmp_path):
    """Two label sets: a run tagged for class gpu gets gpu's labels, one tagged without --runner the default's; each
    records the class, the runner's labels and its GPU, in its outcome record and in MLflow."""
    gpu = tag_run(dev, "--runner", "gpu", "--name", "gpu")

    first = act.run(clone(origin, tmp_path / "runner-gpu", f"refs/tags/{gpu}"), gpu)

    log = ran(first)
    assert first.jobs == {"route": "success", "run": "success"}
    assert first.outputs["route"] == {"class": "gpu", "labels": json.dumps(["self-hosted", "igz", "gpu"])}
    assert "Runner class gpu: the run job runs on [self-hosted, igz, gpu]." in log
    # The run job's environment step: the venv of Pipfile.lock, built once (this session) or reused, first on PATH.
    assert re.search(r"(Installing|Reusing) the environment for lock [0-9a-f]{16}", log)
    results = refs(origin)["refs/heads/main"]
    outcome = record.parse_outcome(git("log", "-1", "--format=%B", results, cwd=origin))
    assert outcome.runner == "gpu"
    assert outcome.machine["labels"] == "self-hosted, igz, gpu"
    assert outcome.machine["gpu"] == "none (no nvidia-smi on this machine)"
    client = mlflow_server.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    for stage_run in client.search_runs(experiments, f"tags.run_tag = '{gpu}'"):
        tags = stage_run.data.tags
        assert (tags["runner.class"], tags["runner.labels"]) == ("gpu", "self-hosted, igz, gpu")
        assert tags["env.gpu"] == outcome.machine["gpu"]

    cpu = tag_run(dev, "--name", "cpu")  # no --runner: the default class
    # The runner kept DVC's cache (and run cache) outside the workspace: the next job needs nothing from the remote.
    pushed = remote.keys(s3)
    client_s3 = s3.server.client()
    for key in pushed:
        client_s3.delete_object(Bucket=remote.bucket, Key=f"{remote.prefix}/{key}")

    second = act.run(clone(origin, tmp_path / "runner-cpu", f"refs/tags/{cpu}"), cpu)

    log = ran(second)
    assert second.outputs["route"] == {"class": "cpu", "labels": json.dumps(["self-hosted", "igz", "cpu"])}
    assert re.search(r"Reusing the environment for lock [0-9a-f]{16}", log)  # the same lock: nothing installed
    assert "Running stage" not in log  # restored from the runner's own cache, with the remote emptied
    assert remote.keys(s3) == pushed  # and share pushed it all back
    same = refs(origin)[f"refs/heads/results/{cpu}"]
    recorded = record.parse_outcome(git("log", "-1", "--format=%B", same, cwd=origin))
    assert (recorded.runner, recorded.machine["labels"]) == ("cpu", "self-hosted, igz, cpu")
    # `invoke runs` shows each run's class.
    listed = {line.split()[2]: line.split()[4] for line in invoke(dev, "runs").stdout.splitlines()[1:]}
    assert (listed[gpu], listed[cpu]) == ("gpu", "cpu")


@pytest.mark.slow
def test_an_unknown_runner_class_fails_the_route_job_in_one_line_and_is_recorded(dev, origin, act, s3, remote):
    head = git("rev-parse", "HEAD", cwd=dev)
    tag = f"{tasks.TAG_PREFIX}-main-20260101-000000-byhand"  # pushed by hand, naming a class the table lacks
    git("tag", "--annotate", "--cleanup=verbatim", "-m", "By hand\n\nBranch: main\nRunner-Class: gpux\n", tag, head,
        cwd=dev)  # fmt: skip
    git("push", "--quiet", "origin", f"refs/tags/{tag}", cwd=dev)
    state = refs(origin)

    result = act.run(clone(origin, act.base / "runner", f"refs/tags/{tag}"), tag)

    said = (
        f"Run {tag} asks for runner class 'gpux', which invoke.yaml's runloop.runners does not have (cpu, gpu) — tag "
        "the commit again with `invoke tag-run --runner CLASS`, naming one of those, or add the class to the table."
    )
    assert (result.returncode, result.jobs) == (1, {"route": "failure"})  # the run job never started
    assert result.steps["Read the runner class"] == "failure"
    assert said in result.log and "Traceback" not in result.log
    assert "Installing the environment" not in result.log and remote.keys(s3) == set()
    # Its record on origin: failed at the route step, the class it asked for, the line that says why.
    failed = refs(origin)[f"refs/heads/failed/{tag}"]
    assert refs(origin) == {**state, f"refs/heads/failed/{tag}": failed}
    found = trailers(origin, failed)
    assert (found["Failed-Step"], found["Runner-Class"]) == (["python3 -m src.runloop.route"], ["gpux"])
    assert said in git("log", "-1", "--format=%B", failed, cwd=origin)


@pytest.mark.slow
def test_workflow_names_a_missing_variable_before_running(dev, origin, act, s3, remote):
    tag = tag_run(dev)
    state = refs(origin)

    result = act.run(clone(origin, act.base / "runner", f"refs/tags/{tag}"), tag, {"MLFLOW_S3_ENDPOINT_URL": "x"})

    assert (result.returncode, result.job_result) == (1, "failure")
    assert result.steps["Reproduce the pipeline"] == "failure", result.steps
    assert "Share the results" not in result.steps
    assert "MLFLOW_URL (from repository variable MLFLOW_URL)" in result.log
    assert "Settings → Secrets and variables → Actions" in result.log
    assert "dvc repro" not in result.log
    assert remote.keys(s3) == set()
    # The run's record on origin says so: the failure, its step and what the step said.
    failed = refs(origin)[f"refs/heads/failed/{tag}"]
    assert refs(origin) == {**state, f"refs/heads/failed/{tag}": failed}
    assert trailers(origin, failed)["Failed-Step"] == ["invoke repro"]
    assert "MLFLOW_URL (from repository variable MLFLOW_URL)" in git("log", "-1", "--format=%B", failed, cwd=origin)


@pytest.mark.slow
def test_workflow_names_a_missing_push_token_without_showing_it_to_repro(dev, origin, act, s3, remote):
    tag = tag_run(dev)
    state = refs(origin)
    secrets = {k: v for k, v in SECRETS.items() if k != "ACCESS_TOKEN"}

    result = act.run(clone(origin, act.base / "runner", f"refs/tags/{tag}"), tag, secrets=secrets)

    assert (result.returncode, result.job_result) == (1, "failure")
    assert result.steps["Reproduce the pipeline"] == "failure", result.steps
    assert "Missing on this runner: ACCESS_TOKEN (from secret ACCESS_TOKEN, or a GitHub App: " in result.log
    assert "dvc repro" not in result.log
    assert remote.keys(s3) == set()
    failed = refs(origin)[f"refs/heads/failed/{tag}"]  # recorded without the token: this origin takes any push
    assert refs(origin) == {**state, f"refs/heads/failed/{tag}": failed}
    assert "Missing on this runner: ACCESS_TOKEN" in git("log", "-1", "--format=%B", failed, cwd=origin)


SNOOP = """\
import json, os, subprocess
from pathlib import Path

def run(*cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.stdout + done.stderr

found = {
    "env": {k: v for k, v in os.environ.items() if not k.startswith("AWS_")},  # S3's keys are the stages' to use
    "git_config": run("git", "config", "--list", "--show-origin", "--includes"),
    "dot_git_config": Path(".git/config").read_text(),
    "dvc_config": {p.name: p.read_text() for p in Path(".dvc").glob("config*")},
}
Path("snoop").mkdir(exist_ok=True)
Path("snoop/found.json").write_text(json.dumps(found, indent=1, sort_keys=True))
"""


def holding(secret: str, blobs: dict[str, bytes]) -> list[str]:
    """The names of the blobs that hold `secret`, as is or inside the basic-auth header git would send."""
    forms = [secret.encode(), base64.b64encode(f"x-access-token:{secret}".encode())]
    return [name for name, data in blobs.items() if any(form in data for form in forms)]


@pytest.mark.slow
def test_workflow_keeps_the_push_token_from_the_pipeline(
    dev, origin, act, s3, remote, mlflow_server, tmp_path, isolated_env
):
    """A stage reads what it can of the push token (environment, git config) into a DVC output that share pushes."""
    add_stage(dev, "snoop", SNOOP, {"snoop/found.json": {}})
    tag = tag_run(dev)
    tagged = commit_of(origin, tag)
    clone_dir = clone(origin, tmp_path / "runner", f"refs/tags/{tag}")

    run = act.run(clone_dir, tag)

    log = ran(run)
    assert "Running stage 'snoop'" in log
    results = refs(origin)["refs/heads/main"]
    assert parents(origin, results) == [tagged]
    assert git("diff", "--name-only", tagged, results, cwd=origin).splitlines() == ["dvc.lock", "snoop/.gitignore"]
    # What the stage found, as it reached S3: no token, no credential in git's config; only the flag.
    md5 = lock_outs(show(origin, results, "dvc.lock"))["snoop/found.json"]
    key = f"{remote.prefix}/{dvc_key(md5)}"
    raw = s3.server.client().get_object(Bucket=remote.bucket, Key=key)["Body"].read()
    found = json.loads(raw)
    assert found["env"]["RUN_TAG"] == tag  # the stage did run on the runner and read its environment
    assert "ACCESS_TOKEN" not in found["env"]
    assert found["env"]["ACCESS_TOKEN_SET"] == "true"  # noqa: S105 - a flag, not a secret
    assert "extraheader" not in (found["git_config"] + found["dot_git_config"]).lower()
    assert s3.server.endpoint_url in found["dvc_config"]["config.local"]  # what repro wrote there: no credential
    assert holding(SECRETS["ACCESS_TOKEN"], {key: raw}) == []

    # No secret in any byte the run left: the buckets, origin's objects, MLflow's records, the summary, the log
    # (act masks the values it knows, not their encodings). act deletes its copy of the workspace after the job:
    # the stage above read what a credential on disk would be in (.git/config, .dvc/config*) into S3 instead.
    blobs = {f"s3://{b}/{k}": s3.server.client().get_object(Bucket=b, Key=k)["Body"].read()
             for b in (remote.bucket, s3.mlflow_bucket) for k in s3.server.keys(b)}  # fmt: skip
    everything = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=origin, capture_output=True, check=True
    ).stdout
    blobs["origin's objects"] = everything
    client = mlflow_server.client()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    mlflow_runs = client.search_runs(experiment_ids, f"tags.run_tag = '{tag}'")
    assert mlflow_runs
    blobs["MLflow"] = json.dumps([[r.data.params, r.data.tags, r.info.artifact_uri] for r in mlflow_runs]).encode()
    blobs["summary"] = run.summary.encode()
    blobs["log"] = log.encode()
    blobs.update({str(p): p.read_bytes() for p in act.home.rglob("*") if p.is_file()})
    assert {name: holding(value, blobs) for name, value in SECRETS.items()} == {name: [] for name in SECRETS}
