"""The README and docs/ are the contract: the Quickstart is what CI runs, the reference tables in docs/ match the
tasks, sessions, variables and tests, and every link between the pages leads somewhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from src.runloop import ci, project
from src.runloop.git import Git

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent


def _section(title: str, text: str = README, where: str = "README") -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"{where} has no '## {title}' section"
    return match.group(1)


def _page(name: str) -> str:
    """A reference page of docs/, which the README links to: the tables moved there from the README."""
    path = DOCS / f"{name}.md"
    assert f"](docs/{name}.md" in README, f"README does not link to docs/{name}.md"
    return path.read_text()


def _quickstart() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", _section("Quickstart"), flags=re.DOTALL)
    assert len(blocks) == 1, "the Quickstart holds exactly one code block"
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_quickstart_has_two_commands_and_ci_runs_the_second() -> None:
    main_job, test_command = _quickstart()
    assert main_job.endswith("invoke repro")
    assert "nox" in test_command and "lint tests" in test_command
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert test_command in ci_lines, ".ci/run must run the README's test command verbatim"


def test_init_says_to_run_the_check_the_readme_runs() -> None:
    # One command in the Quickstart, in "Start your project" and in what `invoke init` prints after its commit. A
    # project's own README (after `invoke init`) has no "Start your project": it is started.
    _main_job, test_command = _quickstart()
    assert test_command.endswith(f"&& {project.CHECK}")
    if (ROOT / project.EXAMPLE[0]).is_dir():
        assert f"\n{project.CHECK} " in _section("Start your project")
    said = project.next_steps(Git(ROOT), "churn-model", "0" * 40, kept_example=False)
    assert f"  1. Check it: {project.CHECK}\n" in said
    assert [line for line in said.splitlines() if "nox" in line] == [f"  1. Check it: {project.CHECK}"]


def test_quickstart_and_nox_install_the_locked_pipenv() -> None:
    locked = json.loads((ROOT / "Pipfile.lock").read_text())["default"]["pipenv"]["version"]
    for command in _quickstart():
        assert f"pipenv{locked}" in command, f"Quickstart must install pipenv{locked}, as Pipfile.lock pins it"
    assert f'"pipenv{locked}"' in (ROOT / "noxfile.py").read_text(), "noxfile.py must install the locked pipenv"


def _flags(task: str) -> list[str]:
    """The long options `invoke --help <task>` lists, `--[no-]pull` as `--no-pull`."""
    out = subprocess.run([str(BIN / "invoke"), "--help", task], cwd=ROOT, capture_output=True, text=True, check=True)
    return [
        flag.replace("[no-]", "no-") for flag in re.findall(r"--(?:\[no-\])?[a-z-]+", out.stdout.split("Options:")[1])
    ]


def test_task_table_matches_invoke_list() -> None:
    listed = subprocess.run(
        [str(BIN / "invoke"), "--list", "--list-format", "json"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    names = {t["name"]: t["help"] for t in json.loads(listed.stdout)["tasks"]}
    assert names.keys() == {
        "compare",
        "doctor",
        "gc",
        "init",
        "promote",
        "repro",
        "runs",
        "share",
        "tag-run",
        "watch",
    }
    table = _page("tasks")
    for name, help_text in names.items():
        assert f"`invoke {name}" in table, f"docs/tasks.md's table misses `invoke {name}`"
        assert help_text.split(".")[0] in table, f"docs/tasks.md's row for {name} must say what `invoke --list` says"
        row = next(line for line in table.splitlines() if line.startswith(f"| `invoke {name}"))
        assert [f for f in _flags(name) if f not in row] == [], f"docs/tasks.md's row for {name} misses flags"


def test_session_table_matches_nox_list() -> None:
    # `nox -l --json` leaves out the sessions that are not run by default: read the full listing instead.
    listed = subprocess.run([str(BIN / "nox"), "-l"], cwd=ROOT, capture_output=True, text=True, check=True)
    sessions = dict(re.findall(r"^[*-] (\S+) -> (.+)$", listed.stdout, flags=re.MULTILINE))
    assert {"lint", "tests", "repro", "bench"} <= sessions.keys()
    table = _page("tasks")
    for name, description in sessions.items():
        assert f"`nox -s {name}" in table and description in table, f"docs/tasks.md's table misses nox session {name}"


def test_every_variable_the_template_reads_is_documented() -> None:
    table = _page("environment")
    example = re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE)
    assert set(ci.SETTINGS) <= set(example), ".env.example must list every variable a CI run needs"
    # The stand-ins act runs in place of GitHub's actions read their own inputs, not the template's settings.
    sources = [p for p in sorted((ROOT / "src").rglob("*.py")) if "stand_ins" not in p.parts]
    code = "".join(p.read_text() for p in [ROOT / "tasks.py", *sources])
    read = set(re.findall(r"""(?:env_value\(|_value\(|env\.get\(|environ\.get\()["']([A-Z][A-Z0-9_]+)["']""", code))
    assert {"MLFLOW_URL", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"} <= read  # the scan finds what the code reads
    for name in {*example, *ci.SETTINGS, *read, "RUN_TAG"} - {"PATH"}:  # PATH is only extended
        assert f"`{name}`" in table, f"docs/environment.md's table misses {name}"


def test_env_example_holds_no_values() -> None:
    values = re.findall(r"^[A-Z][A-Z0-9_]+=(.+)$", (ROOT / ".env.example").read_text(), flags=re.MULTILINE)
    assert values == [], ".env.example documents names only: a value there would end up in every clone"


def test_every_row_of_the_fault_matrix_names_tests_that_exist() -> None:
    table = _page("faults")
    rows = re.findall(r"^\| (\d+) \| (.+?) \| (.+?) \| (.+) \|$", table, flags=re.MULTILINE)
    numbers = [int(number) for number, *_ in rows]
    assert numbers == list(range(1, len(rows) + 1)), "the matrix's rows are numbered 1 to N, in order"
    assert len(rows) >= 26, "a row of the matrix went missing"
    for number, fault, happens, proof in rows:
        assert "—" not in (happens.strip(), proof.strip()), f"row {number} ({fault}) says what happens and names a test"
        named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", proof)
        assert named, f"row {number} names no test"
        for path, test in named:
            source = (ROOT / path).read_text()
            assert not test or re.search(rf"^(?:async )?def {test}\(", source, flags=re.MULTILINE), (
                f"row {number} names {path}::{test}, which does not exist"
            )


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)  # a `# comment` in a block is no heading
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_every_link_between_the_readme_and_docs_leads_somewhere():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    checked = 0
    for page in pages:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # https://…: not ours to check
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)} links to {target}"
            assert path.is_file(), f"{where}: no such file"
            assert not anchor or anchor in _anchors(path.read_text()), f"{where}: no such heading there"
            checked += 1
    assert checked > 20  # the scan finds the links
    # Every page of the manual is reachable from the front door.
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", README))
    assert linked == {p.name for p in DOCS.glob("*.md")}, "README must link every page of docs/"


def test_the_readme_stays_a_front_door():
    assert len(README.splitlines()) < 250, "README.md is the front door: put reference text in a page of docs/"
    titles = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert titles[:1] == ["Quickstart"] and "Write a stage" in titles
