"""Runner classes: invoke.yaml's table read with the standard library, and the route job that maps a run to it.

The route job's step (src/runloop/route.py) runs here as the workflow runs it, as `python3 -m src.runloop.route` in
a runner's clone of a bare origin, with GitHub's variables: the tag it reads and the outputs file it writes. The
whole workflow under act, with two label sets, is in test_workflow.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gitrepos import ROOT, clone, git, tag_run

from src.runloop import invoke_yaml, runner_classes
from src.runloop.refusal import Refused

TABLE = """\
# a comment
runloop:
  name: example   # trailing comment
  runners:
    default: cpu
    classes:
      cpu: [self-hosted, igz, cpu]
      gpu:
        - self-hosted
        - "gpu"
      a100: 'arc-a100'
  runner_cache: ""
other:
  anything: {a: [1, 2], b: &anchor x}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "invoke.yaml").write_text(text)
    return tmp_path


# -- invoke.yaml, read before anything is installed --------------------------------------------------------------


def test_the_projects_invoke_yaml_reads_as_pyyaml_reads_it():
    assert invoke_yaml.section(ROOT) == yaml.safe_load((ROOT / "invoke.yaml").read_text())["runloop"]
    assert invoke_yaml.section(ROOT)["runners"]["default"] in invoke_yaml.section(ROOT)["runners"]["classes"]


def test_the_reader_takes_lists_quotes_and_comments_and_leaves_other_sections_alone(tmp_path):
    root = write(tmp_path, TABLE)

    assert invoke_yaml.section(root) == yaml.safe_load(TABLE)["runloop"]
    table = runner_classes.read(root)
    assert table.classes == {
        "cpu": ("self-hosted", "igz", "cpu"),
        "gpu": ("self-hosted", "gpu"),
        "a100": ("arc-a100",),
    }
    assert (table.default, table.scale_sets) == ("cpu", frozenset({"a100"}))


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("runloop:\n  name: &a x\n", "invoke.yaml line 2: '&a x' is not a plain word"),
        ("runloop:\n  runners: {default: cpu}\n", "invoke.yaml line 2: '{default: cpu}' is not a plain word"),
        ("runloop:\n  classes: [a,\n    b]\n", "invoke.yaml line 2: a list written [a, b] must end on the same line"),
        ("runloop:\n\tname: x\n", "invoke.yaml line 2: it is indented with a tab"),
        ("runloop:\n  name: x\n  name: y\n", "invoke.yaml line 3: 'name' is given twice"),
        ("runloop:\n  a:\n    b: 1\n   c: 2\n", "invoke.yaml line 4: this line is indented"),
    ],
)
def test_the_reader_refuses_what_it_does_not_take_naming_the_line(tmp_path, text, said):
    with pytest.raises(invoke_yaml.SettingsError) as refused:
        invoke_yaml.section(write(tmp_path, text))

    assert str(refused.value).startswith(said)
    assert "only mappings, words, quoted strings and lists of them (docs/runners.md)" in str(refused.value)


# -- the table ------------------------------------------------------------------------------------------------------


def test_an_unknown_class_is_refused_naming_the_classes(tmp_path):
    table = runner_classes.read(write(tmp_path, TABLE))

    assert table.check("") == "cpu" and table.check("gpu") == "gpu"
    with pytest.raises(Refused) as refused:
        table.check("gpux")
    assert str(refused.value) == (
        "Runner class 'gpux' is not in invoke.yaml's runloop.runners (cpu, gpu, a100) — use one of those, or add it "
        "to the table (docs/runners.md)."
    )


@pytest.mark.parametrize(
    ("runners", "said"),
    [
        ("", "invoke.yaml has no runloop.runners table — add one"),
        ("  runners:\n    default: cpu\n", "invoke.yaml's runloop.runners names no classes"),
        ("  runners:\n    default: gpu\n    classes:\n      cpu: [self-hosted]\n", "default 'gpu' is not one of"),
        ("  runners:\n    default: cpu\n    classes:\n      cpu: []\n", "Runner class 'cpu' in invoke.yaml's"),
        ("  runners:\n    default: cpu\n    classes:\n      cpu: [self-hosted, 'a;b']\n", "has label 'a;b', which"),
        ("  runners:\n    default: Cpu\n    classes:\n      Cpu: [self-hosted]\n", "Runner class name 'Cpu' in"),
    ],
)
def test_a_broken_table_is_refused_saying_what_to_fix(tmp_path, runners, said):
    with pytest.raises(Refused, match=said.replace("(", r"\(")):
        runner_classes.read(write(tmp_path, f"runloop:\n  name: x\n{runners}"))


# -- the route job ----------------------------------------------------------------------------------------------------


def route(runner: Path, tag: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The route job's step in `runner` for a push of `tag`: its process, and the outputs it wrote."""
    outputs = tmp_path / f"outputs-{tag}"
    outputs.write_text("")
    env = {
        **os.environ,
        "GITHUB_ACTIONS": "true",
        "GITHUB_REF": f"refs/tags/{tag}",
        "GITHUB_REF_NAME": tag,
        "GITHUB_OUTPUT": str(outputs),
    }
    done = subprocess.run(
        [sys.executable, "-S", "-m", "src.runloop.route"], cwd=runner, env=env, capture_output=True, text=True
    )
    return done, dict(line.split("=", 1) for line in outputs.read_text().splitlines())


def test_the_route_job_maps_the_tags_class_to_its_labels(dev, origin, tmp_path):
    gpu = tag_run(dev, "--runner", "gpu")
    default = tag_run(dev, "--name", "plain")
    runner = clone(origin, tmp_path / "runner", f"refs/tags/{gpu}")
    # What actions/checkout leaves: the tag as a lightweight one (actions/checkout#290); the route fetches it again.
    git("tag", "--force", gpu, "HEAD", cwd=runner)
    assert git("cat-file", "-t", gpu, cwd=runner) == "commit"

    done, outputs = route(runner, gpu, tmp_path)

    assert done.returncode == 0, done.stderr
    assert outputs == {"class": "gpu", "labels": json.dumps(["self-hosted", "igz", "gpu"])}
    assert done.stdout == "Runner class gpu: the run job runs on [self-hosted, igz, gpu].\n"
    assert git("cat-file", "-t", gpu, cwd=runner) == "tag"
    # A run tagged without --runner records the default class, and goes there.
    assert route(runner, default, tmp_path)[1] == {"class": "cpu", "labels": json.dumps(["self-hosted", "igz", "cpu"])}


def test_the_route_job_fails_in_one_line_for_a_class_the_table_does_not_have(dev, origin, tmp_path):
    head = git("rev-parse", "HEAD", cwd=dev)
    tag = "run-example-main-20260101-000000-byhand"  # pushed by hand: the table never saw its class
    git("tag", "--annotate", "--cleanup=verbatim", "-m", "By hand\n\nBranch: main\nRunner-Class: gpux\n", tag, head,
        cwd=dev)  # fmt: skip
    git("push", "--quiet", "origin", f"refs/tags/{tag}", cwd=dev)
    runner = clone(origin, tmp_path / "runner", f"refs/tags/{tag}")

    done, outputs = route(runner, tag, tmp_path)

    assert (done.returncode, outputs, done.stdout) == (1, {}, "")
    assert done.stderr == (
        f"Run {tag} asks for runner class 'gpux', which invoke.yaml's runloop.runners does not have (cpu, gpu) — tag "
        "the commit again with `invoke tag-run --runner CLASS`, naming one of those, or add the class to the table.\n"
    )


def test_tag_run_refuses_an_unknown_class_before_anything_is_pushed(dev, origin):
    before = git("ls-remote", str(origin), cwd=dev)

    result = subprocess.run(
        [str(Path(sys.executable).parent / "invoke"), "tag-run", "--runner", "gpux"],
        cwd=dev,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Runner class 'gpux' is not in invoke.yaml's runloop.runners (cpu, gpu) — use one of those, or add it to the "
        "table (docs/runners.md)."
    )
    assert git("ls-remote", str(origin), cwd=dev) == before and git("tag", cwd=dev) == ""
