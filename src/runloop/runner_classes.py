"""Runner classes: which runners a run goes to. invoke.yaml names each class's `runs-on` labels, and a default.

    runloop:
      runners:
        default: cpu
        classes:
          cpu: [self-hosted, igz, cpu]      # labels: a runner that has all of them takes the run
          gpu: [self-hosted, igz, gpu]
          a100: arc-a100                    # one name: an Actions Runner Controller scale set (its one label)

    read(root) -> Table               the table, checked (names and labels are words GitHub and the shell take)
    Table.labels(name)                a class's labels; an unknown class is refused, naming the classes
    Table.check(name)                 the class to record: `name`, or the default for none

`invoke tag-run --runner CLASS` records the class in the tag's annotation; the workflow's first job (route.py)
maps it through this table (an allow-list: the annotation's text never reaches `runs-on`) to the run job's
`runs-on`. Standard library only: the route job runs before anything is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from src.runloop import invoke_yaml
from src.runloop.refusal import Refused

KEY = "runners"
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
# GitHub's labels are case-insensitive words; these are also safe in a shell word, a ref and a YAML flow list.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
WHERE = f"{invoke_yaml.FILE}'s {invoke_yaml.SECTION}.{KEY}"


@dataclass(frozen=True)
class Table:
    """Runner classes by name: each one's `runs-on` labels; and the class a run without one goes to."""

    default: str
    classes: dict[str, tuple[str, ...]]
    scale_sets: frozenset[str] = frozenset()  # classes written as one name: an ARC runner scale set

    @property
    def names(self) -> list[str]:
        return list(self.classes)

    def labels(self, name: str) -> tuple[str, ...]:
        """The labels of class `name`; refused, naming the classes there are, when it is not one."""
        if name not in self.classes:
            raise Refused(
                f"Runner class {name!r} is not in {WHERE} ({', '.join(self.names)}) — use one of those, or add it "
                "to the table (docs/runners.md)."
            )
        return self.classes[name]

    def check(self, name: str) -> str:
        """The class a run asking for `name` records: `name` when it is in the table, the default for ""."""
        chosen = name or self.default
        self.labels(chosen)
        return chosen


def read(root: Path) -> Table:
    """The runner classes invoke.yaml at `root` names, checked; refused with what is wrong and where."""
    settings = invoke_yaml.section(root).get(KEY)
    if not isinstance(settings, dict):
        raise Refused(
            f"{invoke_yaml.FILE} has no {invoke_yaml.SECTION}.{KEY} table — add one (a default class and each "
            "class's runs-on labels; docs/runners.md)."
        )
    classes = settings.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise Refused(f"{WHERE} names no classes — give `classes:`, each class its labels (docs/runners.md).")
    table: dict[str, tuple[str, ...]] = {}
    scale_sets = []
    for name, labels in classes.items():
        if not NAME.fullmatch(name):
            raise Refused(
                f"Runner class name {name!r} in {WHERE} is not a word of lowercase letters, digits, '.', '_' or '-' "
                "(up to 40) — rename it."
            )
        if isinstance(labels, str):
            scale_sets.append(name)
            labels = [labels]
        if not isinstance(labels, list) or not labels:
            raise Refused(f"Runner class {name!r} in {WHERE} has no labels — give it [label, ...] or a scale set name.")
        if bad := [label for label in labels if not isinstance(label, str) or not LABEL.fullmatch(label)]:
            raise Refused(
                f"Runner class {name!r} in {WHERE} has label {bad[0]!r}, which is not a word of letters, digits, '.', "
                "'_' or '-' — use the labels the runners were registered with."
            )
        table[name] = tuple(dict.fromkeys(labels))
    default = settings.get("default")
    if not isinstance(default, str) or default not in table:
        raise Refused(
            f"{WHERE}'s default {default!r} is not one of its classes ({', '.join(table)}) — name one of them."
        )
    return Table(default, table, frozenset(scale_sets))
