"""`invoke init NAME`: a fresh clone of the template becomes a green project of its own; the template's later
fixes merge into it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitrepos import BIN, copy_project, git, invoke, parents

import tasks
from src.runloop import project as names

ROOT = Path(__file__).resolve().parents[1]
# The name the tests give a clone: never the one it has already (a project made by `invoke init --keep-example`
# is "churn-model" and keeps the example, so these tests run there too).
CURRENT = names.name(ROOT)
NAME = "churn-model" if CURRENT != "churn-model" else "fraud-model"
PACKAGE = NAME.replace("-", "_")
WORKFLOW = ".github/workflows/github_actions_pipeline.yml"
# Replacing the example is what the template does once: a project made by `invoke init` has no example left to
# replace, so these run in the template (and its CI) and skip in the projects made from it.
needs_example = pytest.mark.skipif(
    not (ROOT / "src" / "example").is_dir(), reason="the template's example is gone: this project was made by init"
)


@pytest.fixture
def template(tmp_path: Path, isolated_env: Path) -> Path:
    """The template as its users find it: a copy of this project with the example, as a repository."""
    return copy_project(tmp_path / "template", example=True)


@pytest.fixture
def clone(template: Path, tmp_path: Path) -> Path:
    """A fresh clone of the template, as `git clone <template URL>` makes it."""
    git("clone", "--quiet", str(template), str(tmp_path / "clone"), cwd=tmp_path)
    return tmp_path / "clone"


def init(repo: Path, *args: str, code: int = 0) -> str:
    result = invoke(repo, "init", *args)
    assert result.returncode == code, result.stdout
    assert "Traceback" not in result.stdout
    return result.stdout


def check(repo: Path, *cmd: str) -> str:
    """Run a check (ruff, pytest) in `repo` the way the README's command does; it has to pass."""
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed in {repo}:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    )
    return result.stdout


def tree(repo: Path) -> dict[str, str]:
    """Every file git would track, and its hash (ignored pipeline outputs and caches aside)."""
    out = git("ls-files", "--cached", "--others", "--exclude-standard", cwd=repo).splitlines()
    return {f: hashlib.sha256((repo / f).read_bytes()).hexdigest() for f in out if (repo / f).is_file()}


def lint(repo: Path) -> None:
    """ruff, as `nox -s lint` runs it."""
    targets = ["tasks.py", "noxfile.py", "src", "tests"]
    check(repo, str(BIN / "ruff"), "check", *targets)
    check(repo, str(BIN / "ruff"), "format", "--check", *targets)


def pytest_in(repo: Path, *args: str) -> str:
    """pytest in `repo`; its summary line, which has to say everything passed."""
    summary = check(repo, sys.executable, "-m", "pytest", "-q", *args).strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    return summary


# A fast, representative part of the machinery's tests: the name everywhere, the README's tables against the
# tasks, the workflow against TAG_PREFIX, the stage helpers. (The whole suite is the README's test command.)
FAST = [
    "-m",
    "not slow",
    "tests/test_project.py",
    "tests/test_readme.py",
    "tests/test_workflow.py",
    "tests/test_stage.py",
]


@needs_example
@pytest.mark.slow
def test_init_makes_a_fresh_clone_a_green_project(clone):
    before = git("rev-parse", "HEAD", cwd=clone)

    out = init(clone, NAME)

    # One commit on top of the template, and a clean tree.
    head = git("rev-parse", "HEAD", cwd=clone)
    assert parents(clone, head) == [before]
    assert git("status", "--porcelain", cwd=clone) == ""
    assert git("log", "-1", "--format=%s", cwd=clone) == f"Start project {NAME} from the template (invoke init)"
    # The name everywhere, and tasks.py untouched.
    assert names.disagreements(clone) == []
    assert names.name(clone) == NAME
    assert git("diff", "--name-only", before, head, "--", "tasks.py", "src/runloop", "noxfile.py", cwd=clone) == ""
    prefix = subprocess.run(
        [sys.executable, "-c", "import tasks; print(tasks.TAG_PREFIX)"], cwd=clone, capture_output=True, text=True
    )
    assert prefix.stdout.strip() == f"run-{NAME}"
    workflow = yaml.safe_load((clone / WORKFLOW).read_text())
    assert (workflow["name"], workflow[True]["push"]["tags"]) == (f"Run {NAME} pipeline", [f"run-{NAME}*"])
    assert f"url = s3://dvc-store/{NAME}" in (clone / ".dvc/config").read_text()
    # The example gone, the skeleton in its place.
    assert not (clone / "src/example").exists() and not (clone / "tests/example").exists()
    stages = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["train"] and stages["train"]["cmd"] == f"python -m src.{PACKAGE}.train"
    assert yaml.safe_load((clone / "params.yaml").read_text())["train"]["experiment"] == NAME
    # What to do next.
    assert f"Made {head[:12]}: project {NAME}; run tags are run-{NAME}-<branch>-<time>." in out
    assert "git remote rename origin template && git remote add origin <your repository's URL>" in out
    assert "secrets MINIO_ACCESS_KEY_ID, MINIO_SECRET_ACCESS_KEY, ACCESS_TOKEN" in out
    assert "`invoke tag-run`" in out

    # Green: lint, the skeleton's own tests (its end-to-end `invoke repro` too), the machinery's fast ones.
    lint(clone)
    assert pytest_in(clone, f"tests/{PACKAGE}").startswith("4 passed")
    pytest_in(clone, *FAST)
    assert git("status", "--porcelain", cwd=clone) == ""


@needs_example
@pytest.mark.slow
def test_init_keep_example_only_renames(clone):
    before = tree(clone)

    init(clone, NAME, "--keep-example")

    after = tree(clone)
    assert sorted(f for f in after if after[f] != before.get(f)) == sorted(
        ["invoke.yaml", "params.yaml", ".dvc/config", WORKFLOW, "README.md"]
    )
    assert before.keys() == after.keys()
    assert names.disagreements(clone) == []
    assert yaml.safe_load((clone / "params.yaml").read_text())["train"]["experiment"] == NAME
    lint(clone)
    pytest_in(clone, *FAST, "tests/example")
    # Again: nothing left to change.
    assert f"This clone is project {NAME} already: nothing to change." in init(clone, NAME, "--keep-example")


@needs_example
def test_init_dry_run_changes_nothing(clone):
    head, before = git("rev-parse", "HEAD", cwd=clone), tree(clone)

    out = init(clone, NAME, "--dry-run")

    assert (git("rev-parse", "HEAD", cwd=clone), tree(clone)) == (head, before)
    assert git("status", "--porcelain", cwd=clone) == ""
    assert "Would commit on main:" in out and "Nothing was changed (--dry-run)." in out
    for line in [
        f"Start project {NAME} from the template (invoke init)",
        f"write invoke.yaml: runloop.name: {CURRENT} → {NAME}",
        "write params.yaml: the skeleton's, in place of the example's",
        f"write src/{PACKAGE}/train.py: new: the skeleton",
        "remove src/example: the example pipeline and its tests",
        "remove tests/example: the example pipeline and its tests",
    ]:
        assert line in out


@pytest.mark.parametrize("bad", ["Churn Model", "on", "x"])
def test_init_refuses_a_bad_name(clone, bad):
    head, before = git("rev-parse", "HEAD", cwd=clone), tree(clone)

    out = init(clone, bad, code=1)

    assert out.strip().splitlines()[-1].startswith(f"{bad!r} is not a usable project name — ")
    assert (git("rev-parse", "HEAD", cwd=clone), tree(clone)) == (head, before)


def test_init_refuses_a_dirty_tree_and_names_the_files(clone):
    (clone / "params.yaml").write_text((clone / "params.yaml").read_text() + "# mine\n")
    (clone / "notes.txt").write_text("scratch\n")
    head = git("rev-parse", "HEAD", cwd=clone)

    out = init(clone, NAME, code=1)

    assert "The working tree has uncommitted or untracked changes (params.yaml, notes.txt) — commit or stash" in out
    assert git("rev-parse", "HEAD", cwd=clone) == head
    assert names.name(clone) == names.name(ROOT)


@pytest.mark.parametrize(
    ("tracked", "fix"), [(False, "delete it: rm dvc.lock"), (True, "restore it: git checkout HEAD -- dvc.lock")]
)
def test_init_after_a_local_repro_says_how_to_drop_its_dvc_lock(clone, tracked, fix):
    # The Quickstart's `invoke repro` leaves dvc.lock untracked: `git stash` leaves it, and committing it is wrong.
    if tracked:
        (clone / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
        git("add", "dvc.lock", cwd=clone)
        git("commit", "--quiet", "-m", "A results commit's dvc.lock", cwd=clone)
    (clone / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train:\n    cmd: python -m src.example.train\n")
    head, before = git("rev-parse", "HEAD", cwd=clone), tree(clone)

    out = init(clone, NAME, code=1)

    assert out.strip().splitlines() == [
        "dvc.lock was left by a local `invoke repro` (the results of the pipeline init replaces or renames; the "
        f"runner makes its own) — {fix}, then run `invoke init` again."
    ]
    assert (git("rev-parse", "HEAD", cwd=clone), tree(clone)) == (head, before)
    # With other changes, the list names it, and how to drop it.
    (clone / "notes.txt").write_text("scratch\n")
    out = init(clone, NAME, code=1)
    assert f"(dvc.lock, notes.txt) — commit or stash them first (dvc.lock, a local `invoke repro`'s: {fix})" in out


@needs_example
def test_init_refuses_to_replace_a_pipeline_that_is_not_the_example(clone):
    dvc_yaml = clone / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text() + "\n  mine:\n    cmd: python -m src.mine.run\n")
    git("commit", "--quiet", "-am", "Add my stage", cwd=clone)

    out = init(clone, NAME, code=1)

    assert "dvc.yaml has stages that are not the example's (mine) — pass --keep-example" in out
    assert (clone / "src/example").is_dir() and git("status", "--porcelain", cwd=clone) == ""


@needs_example
def test_template_fixes_merge_into_a_project_made_by_init(template, clone):
    init(clone, NAME)
    git("remote", "rename", "origin", "template", cwd=clone)  # as init's next steps say
    # The template fixes tasks.py, the workflow (a line the project did not change) and .gitignore.
    fixed = (
        (template / "tasks.py").read_text().replace('print(f"Watch the run: {url}"', 'print(f"Follow the run: {url}"')
    )
    assert fixed != (template / "tasks.py").read_text()
    (template / "tasks.py").write_text(fixed)
    workflow = (template / WORKFLOW).read_text()
    (template / WORKFLOW).write_text(workflow.replace("timeout-minutes: 60", "timeout-minutes: 90"))
    (template / ".gitignore").write_text((template / ".gitignore").read_text() + "/scratch/\n")
    git("commit", "--quiet", "-am", "Fix tasks.py, the workflow's timeout and .gitignore", cwd=template)

    git("fetch", "--quiet", "template", cwd=clone)
    merged = subprocess.run(["git", "merge", "--no-edit", "template/main"], cwd=clone, capture_output=True, text=True)

    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "CONFLICT" not in merged.stdout
    for path in ("tasks.py", ".gitignore"):
        assert (clone / path).read_bytes() == (template / path).read_bytes()
    project_workflow = yaml.safe_load((clone / WORKFLOW).read_text())
    assert project_workflow["jobs"]["run"]["timeout-minutes"] == 90  # the fix arrived
    assert project_workflow["name"] == f"Run {NAME} pipeline"  # and the project's name stayed
    assert names.disagreements(clone) == []

    # A fix to the example the project removed: a conflict there only, resolved as the README says.
    example = template / "src/example/train.py"
    example.write_text(example.read_text().replace("keep the best on the validation split", "keep the best one"))
    (template / "tasks.py").write_text(fixed.replace("Follow the run:", "Watch it run:"))
    git("commit", "--quiet", "-am", "Fix the example and tasks.py", cwd=template)
    git("fetch", "--quiet", "template", cwd=clone)
    merged = subprocess.run(["git", "merge", "--no-edit", "template/main"], cwd=clone, capture_output=True, text=True)

    assert merged.returncode == 1
    conflicted = git("diff", "--name-only", "--diff-filter=U", cwd=clone).splitlines()
    assert conflicted == ["src/example/train.py"]
    git("rm", "-r", "--quiet", "--ignore-unmatch", "--", "src/example", "tests/example", cwd=clone)  # as the README
    git("commit", "--quiet", "--no-edit", cwd=clone)
    assert (clone / "tasks.py").read_bytes() == (template / "tasks.py").read_bytes()
    assert not (clone / "src/example").exists() and git("status", "--porcelain", cwd=clone) == ""
    assert names.disagreements(clone) == []


def test_init_says_which_copy_it_cannot_set(clone):
    workflow = clone / WORKFLOW
    workflow.write_text(
        workflow.read_text().replace(f'    tags: ["{tasks.TAG_PREFIX}*"]', '    tags:\n      - "release-*"')
    )
    git("commit", "--quiet", "-am", "Run on release tags", cwd=clone)
    head = git("rev-parse", "HEAD", cwd=clone)

    out = init(clone, NAME, code=1)

    assert (
        f"init cannot set the name everywhere ({WORKFLOW} on.push.tags: says ['release-*'], "
        f"should say ['run-{NAME}*']) — set these by hand" in out
    )
    assert git("rev-parse", "HEAD", cwd=clone) == head and git("status", "--porcelain", cwd=clone) == ""
