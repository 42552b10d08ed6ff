"""docs/write-a-stage.md stays true: each code block matches the code it was copied from, the helpers it names keep
their names and arguments, its dvc.yaml blocks use what the real pipelines use."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml

from src.runloop import project, registry, skeleton, stage, tracking

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs/write-a-stage.md").read_text()
# Each block is announced by `<!-- from: SOURCE -->`: "skeleton <path>" (a file `invoke init` writes, with the
# placeholders the guide shows), "example <file>" (the template's example pipeline), or a path in the project.
BLOCK = re.compile(r"<!-- from: (.+?) -->\n```(\w+)\n(.*?)```", flags=re.DOTALL)
SKELETON = skeleton.files("<name>", "<package>")


def _blocks() -> list[tuple[str, str, str]]:
    return BLOCK.findall(GUIDE)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _source(where: str) -> str | None:
    kind, _, path = where.partition(" ")
    if kind == "skeleton":
        return SKELETON[path]
    if kind == "example":
        example = ROOT / project.EXAMPLE[0] / path
        return example.read_text() if example.is_file() else None  # a project made by `invoke init` has none
    return (ROOT / where).read_text()


def test_the_guide_shows_code_from_the_skeleton_the_tests_pipeline_and_the_example():
    sources = {where.partition(" ")[0] for where, _, _ in _blocks()}
    assert {"skeleton", "example", "tests/pipeline/src/mini/train.py"} <= sources
    # No code block goes unchecked.
    assert len(_blocks()) == GUIDE.count("```python") + GUIDE.count("```yaml") > 10


@pytest.mark.parametrize(("where", "language", "code"), _blocks(), ids=lambda value: str(value)[:40])
def test_each_code_block_is_the_code_it_was_copied_from(where, language, code):
    source = _source(where)
    if source is None:
        pytest.skip(f"{where}: the template's example is not in this project")
    shown, lines = _lines(code), _lines(source)
    starts = [i for i, line in enumerate(lines) if line == shown[0]]
    assert any(lines[i : i + len(shown)] == shown for i in starts), (
        f"docs/write-a-stage.md's block from {where} no longer matches it: copy it again"
    )
    if language == "python":
        compile(inspect.cleandoc("\n" + code) if code.startswith(" ") else code, where, "exec")
    else:
        yaml.safe_load(code)


def test_the_helpers_keep_the_names_and_arguments_the_guide_gives():
    modules = {"stage": stage, "tracking": tracking}
    documented = re.findall(r"^\| `(stage|tracking)\.(\w+)(?:\(([^)]*)\))?` \|", GUIDE, flags=re.MULTILINE)
    assert {f"{m}.{name}" for m, name, _ in documented} >= {
        "stage.load_params",
        "stage.BadInput",
        "stage.run_stage",
        "tracking.stage_run",
        "tracking.register_model",
        "tracking.locked_requirements",
    }
    for module, name, arguments in documented:
        helper = getattr(modules[module], name)
        if not arguments:
            assert inspect.isclass(helper), f"{module}.{name} is shown without arguments: a class"
            continue
        kinds = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
        real = [kinds.get(p.kind, "") + p.name for p in inspect.signature(helper).parameters.values()]
        assert [a.strip() for a in arguments.split(",")] == real, f"{module}.{name} takes {real} now"
    assert issubclass(stage.BadInput, ValueError)
    assert "after" in inspect.signature(tracking.stage_run).parameters
    assert tracking.RUNS_DIR == Path("runs")
    # The params key the guide tells a stage to name its model under: what promote reads and init renames.
    assert "`registered_model:`" in GUIDE and registry.PARAM == "registered_model" in project.NAMED_KEYS
    assert 'after="train"' in GUIDE and "tracking.register_model(info.model_uri, " in GUIDE


def test_the_guides_dvc_yaml_uses_what_the_real_pipelines_use():
    real_files = [ROOT / "dvc.yaml", ROOT / "tests/pipeline/dvc.yaml"]
    real = [yaml.safe_load(path.read_text())["stages"] for path in real_files] + [
        yaml.safe_load(SKELETON["dvc.yaml"])["stages"]
    ]
    stage_keys = {key for stages in real for spec in stages.values() for key in spec}
    plot_keys = {
        key
        for stages in real
        for spec in stages.values()
        for plot in spec.get("plots", [])
        if isinstance(plot, dict)
        for options in plot.values()
        for key in options
    }
    shown = [yaml.safe_load(code) for where, language, code in _blocks() if language == "yaml" and "dvc.yaml" in where]
    assert shown and {"cmd", "deps", "params", "outs", "metrics", "plots"} <= stage_keys
    for block in shown:
        entries = block["stages"].values() if "stages" in block else [block]
        for spec in entries:
            assert set(spec) <= stage_keys
            for plot in spec.get("plots", []):
                assert not isinstance(plot, dict) or all(set(o) <= plot_keys for o in plot.values())
    # The keys the guide explains are the ones the pipelines use.
    for key in ("cmd", "deps", "params", "outs", "metrics", "plots"):
        assert f"- `{key}`" in GUIDE
