"""The project's name: one source (invoke.yaml) that tasks.py reads, and every copy of it in agreement."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitrepos import INVOKE

import tasks
from src.runloop import project as names
from src.runloop import skeleton
from src.runloop.refusal import Refused

ROOT = Path(__file__).resolve().parents[1]
# Every kind of copy the template holds; the agreement check must look at each of them.
KINDS = {
    ("invoke.yaml", "runloop.name"),
    (".dvc/config", "remote 'storage' url's last part"),
    (".github/workflows/github_actions_pipeline.yml", "name"),
    (".github/workflows/github_actions_pipeline.yml", "on.push.tags"),
    ("README.md", "title"),
}


def test_every_place_names_the_project():
    name = names.name()
    found = names.places(names.read(), name)

    assert {(p.file, p.what) for p in found} >= KINDS
    assert [p for p in found if p.file == "params.yaml" and p.what.endswith(".experiment")]  # MLflow's experiment
    assert names.disagreements() == []
    assert tasks.TAG_PREFIX == f"run-{name}"
    workflow = yaml.safe_load((ROOT / ".github/workflows/github_actions_pipeline.yml").read_text())
    assert workflow[True]["push"]["tags"] == [f"{tasks.TAG_PREFIX}*"]


def test_a_copy_that_disagrees_is_named():
    texts = names.read()
    workflow = ".github/workflows/github_actions_pipeline.yml"
    texts[workflow] = texts[workflow].replace(f'"{tasks.TAG_PREFIX}*"', '"run-other*"')
    texts["params.yaml"] = texts["params.yaml"].replace(f"experiment: {names.name()}", "experiment: other")

    wrong = names._wrong(names.places(texts, names.name()))

    assert wrong == [
        f"params.yaml train.experiment: says 'other', should say {names.name()!r}",
        f"{workflow} on.push.tags: says ['run-other*'], should say ['{tasks.TAG_PREFIX}*']",
    ]


def test_rename_changes_only_the_lines_that_hold_the_name():
    texts = names.read()
    new = f"not-{names.name()}"

    renamed = names.rename(texts, new)

    assert names._wrong(names.places(renamed, new)) == []
    changed = {
        path: [line for line in difflib.ndiff(texts[path].splitlines(), text.splitlines()) if line[:2] in ("- ", "+ ")]
        for path, text in renamed.items()
    }
    assert {path: len(lines) // 2 for path, lines in changed.items() if lines} == {
        "invoke.yaml": 1,
        "params.yaml": len([p for p in names.places(texts, new) if p.file == "params.yaml"]),
        ".dvc/config": 1,
        ".github/workflows/github_actions_pipeline.yml": 2,
        "README.md": 1,
    }
    assert f"    url = s3://dvc-store/{new}" in renamed[".dvc/config"].splitlines()
    assert renamed["README.md"].startswith(f"# {new}: ")
    assert names.rename(texts, names.name()) == texts  # the template names itself already


def test_rename_sets_a_registered_model_and_keeps_comments():
    texts = {
        "invoke.yaml": "runloop:\n  name: old\n",
        "params.yaml": "train:\n  experiment: 'old'   # MLflow's\n  registered_model: old\n  nested:\n"
        "    experiment: not-a-copy\nevaluate:\n  threshold: 0.5\n",
        ".dvc/config": "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://bucket/team/old\n",
    }

    renamed = names.rename(texts, "new-name")

    assert renamed["params.yaml"].splitlines()[1:5] == [
        "  experiment: new-name   # MLflow's",
        "  registered_model: new-name",
        "  nested:",
        "    experiment: not-a-copy",
    ]
    assert renamed[".dvc/config"].endswith("    url = s3://bucket/team/new-name\n")
    assert renamed["invoke.yaml"] == "runloop:\n  name: new-name\n"


@pytest.mark.parametrize("name", ["churn-model", "ab", "m2", "a" * 32, "fraud-v2-eu"])
def test_check_name_takes_a_usable_name(name):
    names.check_name(name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Churn", "use 2 to 32 lowercase letters, digits and single dashes, starting with a letter"),
        ("churn model", "use 2 to 32 lowercase letters"),
        ("a", "use 2 to 32 lowercase letters"),
        ("a" * 33, "use 2 to 32 lowercase letters"),
        ("-churn", "use 2 to 32 lowercase letters"),
        ("churn--model", "use 2 to 32 lowercase letters"),
        ("churn_model", "use 2 to 32 lowercase letters"),
        ("9lives", "use 2 to 32 lowercase letters"),
        ("$(id)", "use 2 to 32 lowercase letters"),
        ("on", "YAML reads it as True, not as a name"),
        ("null", "YAML reads it as None, not as a name"),
        ("import", "src/import/ cannot be the pipeline's package"),
        ("runloop", "src/runloop/ cannot be the pipeline's package"),
    ],
)
def test_check_name_refuses_what_would_break_somewhere(name, why):
    with pytest.raises(Refused) as refused:
        names.check_name(name)

    assert str(refused.value).startswith(f"{name!r} is not a usable project name — ")
    assert why in str(refused.value)


def test_tasks_read_the_name_from_invoke_yaml(project):
    settings = project / "invoke.yaml"
    settings.write_text(settings.read_text().replace(f"name: {names.name()}", "name: churn-model"))
    code = "import tasks; print(tasks.TAG_PREFIX)"

    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "run-churn-model"


def test_a_broken_settings_file_is_one_line(project):
    (project / "invoke.yaml").write_text("runloop:\n  nom: typo\n")

    listed = subprocess.run([str(INVOKE), "--list"], cwd=project, capture_output=True, text=True)

    assert listed.returncode == 1
    assert listed.stderr.strip().splitlines() == [
        "invoke.yaml gives no runloop.name (KeyError: 'name') — restore it from git (git checkout -- invoke.yaml) "
        "or run `invoke init NAME` on a clean checkout."
    ]


def test_skeleton_deps_follow_what_the_stage_imports(tmp_path):
    kept = ("environment", "git", "machine", "refusal", "stage", "tracking")
    assert skeleton.runloop_deps() == [f"src/runloop/{m}.py" for m in kept]
    # A module the machinery's stage side starts to import becomes a dependency too.
    machinery = tmp_path / "src" / "runloop"
    machinery.mkdir(parents=True)
    for module in kept:
        (machinery / f"{module}.py").write_text((ROOT / "src/runloop" / f"{module}.py").read_text())
    tracking_py = machinery / "tracking.py"
    tracking_py.write_text(
        tracking_py.read_text().replace(
            "from src.runloop import environment", "from src.runloop import clock, environment"
        )
    )
    (machinery / "clock.py").write_text("import time\nfrom src.runloop.environment import ROOT\n")

    assert "src/runloop/clock.py" in skeleton.runloop_deps(tmp_path)
