"""params.yaml read by dotted key and edited in place: what a sweep's leg changes, every other byte kept.

load(text)                      the file's content (a syntax error is a refusal naming the file)
typed(doc, key, value, text)    `value` as the type the key has now, or a refusal saying why it cannot be
edited(text, values)            the file with `values` set, comments, order, quotes and indentation kept
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from src.runloop import environment
from src.runloop.refusal import Refused
from src.runloop.sweep_grammar import PARAMS, shown


def load(text: str) -> Any:
    import yaml

    try:
        environment.check_aliases(PARAMS, text)  # the values are compared and copied below: no alias bomb
        return yaml.safe_load(text)
    except environment.SettingsError as exc:
        raise Refused(f"{exc}; then commit: a sweep edits {PARAMS} as HEAD has it.") from None
    except yaml.YAMLError as exc:
        raise Refused(f"{PARAMS} at HEAD is not valid YAML ({exc}) — fix it and commit first.") from None


def _lookup(doc: Any, key: str) -> Any:
    """The value at a dotted key; Refused naming what is there instead."""
    node, path = doc, []
    for part in key.split("."):
        if not isinstance(node, dict):
            where = ".".join(path)
            raise Refused(f"{key} is not in {PARAMS}: {where} is {shown(node)}, not a mapping — check the key.")
        if part not in node:
            where = f"{'.'.join(path)} has" if path else f"{PARAMS}'s top level has"
            known = ", ".join(str(k) for k in node) or "nothing"
            raise Refused(f"{key} is not in {PARAMS} ({where}: {known}) — check the key; a sweep only sets keys there.")
        node = node[part]
        path.append(part)
    return node


def typed(doc: Any, key: str, value: Any, text: str, allow_non_finite: bool = False) -> Any:
    """`value` (typed as `text`) as the type `key` has in `doc` now; Refused when it cannot be.

    A float that is not finite (.nan, .inf, -.inf, or 1e999) is refused unless `allow_non_finite`: a stage rarely
    means one, and every comparison with NaN is false.
    """
    value = _typed(doc, key, value, text)
    if isinstance(value, float) and not math.isfinite(value) and not allow_non_finite:
        raise Refused(
            f"--set {key}={text}: {text} is not a finite number ({shown(value)}) — give a finite value, or pass "
            f"--allow-non-finite if {key} is meant to be {shown(value)}."
        )
    return value


def _typed(doc: Any, key: str, value: Any, text: str) -> Any:
    current = _lookup(doc, key)
    kind = type(current).__name__
    if isinstance(current, dict):
        raise Refused(f"{key} is a mapping ({', '.join(map(str, current))}) — set one of its keys.")
    if isinstance(current, list):
        raise Refused(f"{key} is a list — a sweep sets single values; edit the list in {PARAMS} and commit.")
    if current is None:
        return value
    if isinstance(current, str):
        return text
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except OverflowError:  # a whole number beyond a float's range (about 1.8e308)
            raise Refused(
                f"--set {key}: {len(str(abs(value)))} digits are beyond what a float holds — give a smaller number."
            ) from None
    else:
        ok = type(value) is type(current)
    if not ok:
        raise Refused(
            f"--set {key}={text}: {key} is {shown(current)} in {PARAMS}, {_kind(kind)}, and {text} is "
            f"{_kind(type(value).__name__)} — give values of the same type."
        )
    return value


def _kind(name: str) -> str:
    return {
        "int": "a whole number",
        "float": "a number",
        "bool": "a boolean (true or false)",
        "str": "text",
        "NoneType": "null",
        "list": "a list",
        "dict": "a mapping",
    }.get(name, name)


def edited(text: str, values: dict[str, Any]) -> str:
    """params.yaml with `values` set and every other byte kept (comments, order, quotes, indentation, flow style):
    ruamel.yaml composes the file into nodes that know where they stand, and each value's own characters are
    replaced with the new value as YAML writes it; a comment after it keeps its column."""
    from ruamel.yaml import YAML

    root = YAML(typ="rt").compose(text)
    edits = []
    for key, value in values.items():
        key_node, node, flow = _node(root, key)
        start, end = node.start_mark.index, node.end_mark.index
        if node.start_mark.line != node.end_mark.line or node.style in ("|", ">"):
            raise Refused(f"{key} is text over several lines in {PARAMS} — set it by hand and commit, then tag-run.")
        written = _written(value, node.style, flow)
        if start == end:  # `key:` with nothing after it
            start = end = key_node.end_mark.index + 1
            written = f" {written}"
        edits.append((start, end, written))
    result = text
    for start, end, written in sorted(edits, reverse=True):
        result = _replace(result, start, end, written)
    _check(text, result, values)
    return result


def _node(root: Any, key: str) -> tuple[Any, Any, bool]:
    """The key's node, its value's node and whether that sits in a flow mapping ({a: 1}), by dotted key."""
    node, key_node, flow = root, None, False
    for part in key.split("."):
        flow = bool(getattr(node, "flow_style", False))
        found = [(k, v) for k, v in node.value if k.value == part] if isinstance(node.value, list) else []
        if not found:  # PyYAML found it through a merge key (<<: *defaults) or an alias
            raise Refused(f"{key} is not written out in {PARAMS} (it comes from a merge or an alias) — set it by hand.")
        key_node, node = found[-1]
    return key_node, node, flow


def _written(value: Any, style: str | None, flow: bool) -> str:
    """`value` as YAML text in place of a scalar of `style` ("'", '"' or plain): read back as itself everywhere."""
    if isinstance(value, bool) or value is None:
        return shown(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if style == '"':
        return json.dumps(text)
    if style != "'" and _reads_as_itself(text) and (not flow or _reads_as_itself(text, flow=True)):
        return text
    return "'" + text.replace("'", "''") + "'"


def _replace(text: str, start: int, end: int, written: str) -> str:
    """`text` with [start, end) replaced; spaces before a comment after it shrink or grow to keep its column."""
    line_end = text.find("\n", end)
    rest = text[end : len(text) if line_end < 0 else line_end]
    comment = re.fullmatch(r"( +)(#.*)", rest)
    if comment:
        spaces = max(1, len(comment.group(1)) - (len(written) - (end - start)))
        return text[:start] + written + " " * spaces + comment.group(2) + text[end + len(rest) :]
    return text[:start] + written + text[end:]


def _float_text(value: float) -> str:
    """A float every YAML reader takes for one: `1.0e-05`, not `1e-05`, which PyYAML (YAML 1.1) reads as text."""
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}{'' if '.' in mantissa else '.0'}{e}{exponent}" if e else text


def _reads_as_itself(text: str, flow: bool = False) -> bool:
    """Whether `text`, written plain, reads back as that text (for PyYAML and ruamel.yaml alike)."""
    import yaml
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    document = f"{{k: {text}}}" if flow else f"k: {text}"
    try:
        return yaml.safe_load(document) == {"k": text} == YAML(typ="safe", pure=True).load(document)
    except (yaml.YAMLError, YAMLError):
        return False


def _check(old: str, new: str, values: dict[str, Any]) -> None:
    """What the stages read (PyYAML) from the new file: the old file with `values` set, nothing else changed."""
    import copy

    expected = copy.deepcopy(load(old))
    for key, value in values.items():
        *path, last = key.split(".")
        parent = expected
        for part in path:
            parent = parent[part]
        parent[last] = value
    try:
        got = load(new)
    except Refused:
        got = None
    if json.dumps(got, sort_keys=True, default=str) != json.dumps(expected, sort_keys=True, default=str):
        raise Refused(
            f"Writing {', '.join(f'{k}={shown(v)}' for k, v in values.items())} into {PARAMS} would not read back as "
            "those values — set them by hand and commit, then `invoke tag-run`."
        )
