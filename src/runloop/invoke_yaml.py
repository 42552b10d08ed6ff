"""invoke.yaml's `runloop:` section, read with the standard library: the runner's first steps (the route job, the
environment step) run before anything is installed, PyYAML included.

    section(root) -> dict      the `runloop:` mapping: names, quoted strings, lists of them, mappings of those

invoke itself reads the whole file with PyYAML. This reader takes the part of YAML the section is written in —
block mappings, plain or quoted scalars, lists (`[a, b]` or `- a` lines) of scalars, comments — and refuses
anything else in the section with its line number, instead of guessing (tests/test_runner_classes.py checks it
reads the project's invoke.yaml as PyYAML does). Scalars stay text: the section holds names, labels and paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from src.runloop.refusal import Refused

FILE = "invoke.yaml"
SECTION = "runloop"
_KEY = re.compile(r"([A-Za-z_][\w.-]*)\s*:(?:\s+(.*))?$")
_PLAIN = re.compile(r"[^\s\"'\[\]{},&*!|>%@`#][^\[\]{},#]*")


class SettingsError(Refused):
    """invoke.yaml's runloop section says something this reader does not take; the message names the line."""


def section(root: Path) -> dict[str, Any]:
    """The `runloop:` mapping of `root`/invoke.yaml; {} when the file has none."""
    path = root / FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{FILE} cannot be read ({exc.strerror}) — restore it: git checkout -- {FILE}") from None
    lines = _lines(text)
    start = next((i for i, (_, indent, body) in enumerate(lines) if indent == 0 and body == f"{SECTION}:"), None)
    if start is None:
        return {}
    block = []
    for number, indent, body in lines[start + 1 :]:
        if indent == 0:
            break
        block.append((number, indent, body))
    if not block:
        return {}
    value, rest = _mapping(block, block[0][1])
    if rest:
        _refuse(rest[0][0], "this line is indented less than the lines before it, but more than the section")
    return value


def _lines(text: str) -> list[tuple[int, int, str]]:
    """(line number, indentation, text without its comment) of every line that says something."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            _refuse(number, "it is indented with a tab")
        body = _without_comment(raw).rstrip()
        if body.strip():
            found.append((number, len(body) - len(body.lstrip()), body.strip()))
    return found


def _without_comment(line: str) -> str:
    """The line up to a `#` that starts a comment (at the start, or after a space, outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _mapping(block: list[tuple[int, int, str]], indent: int) -> tuple[dict[str, Any], list]:
    """The mapping whose keys sit at `indent`, and the lines after it."""
    found: dict[str, Any] = {}
    while block and block[0][1] == indent:
        number, _, body = block[0]
        match = _KEY.match(body)
        if not match or body.startswith("- "):
            _refuse(number, "a `key: value` line was expected")
        key, value = match.group(1), match.group(2)
        if key in found:
            _refuse(number, f"{key!r} is given twice")
        block = block[1:]
        if value is not None:
            found[key] = _scalar_or_list(number, value)
        elif block and block[0][1] > indent:
            if block[0][2].startswith("- ") or block[0][2] == "-":
                found[key], block = _sequence(block, block[0][1])
            else:
                found[key], block = _mapping(block, block[0][1])
        else:
            found[key] = None
    if block and block[0][1] > indent:
        _refuse(block[0][0], "this line is indented more than the keys before it")
    return found, block


def _sequence(block: list[tuple[int, int, str]], indent: int) -> tuple[list[str], list]:
    """The `- item` lines at `indent` (scalars only), and the lines after them."""
    items = []
    while block and block[0][1] == indent and (block[0][2].startswith("- ") or block[0][2] == "-"):
        number, _, body = block[0]
        items.append(_scalar(number, body[1:].strip()))
        block = block[1:]
    return items, block


def _scalar_or_list(number: int, text: str) -> Any:
    if text.startswith("["):
        if not text.endswith("]"):
            _refuse(number, "a list written [a, b] must end on the same line")
        inner = text[1:-1].strip()
        return [_scalar(number, item.strip()) for item in _split(number, inner)] if inner else []
    if text == "{}":
        return {}
    return _scalar(number, text)


def _split(number: int, text: str) -> list[str]:
    """A flow list's items: split at the commas outside quotes."""
    items, current, quote = [], "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == ",":
            items.append(current)
            current = ""
            continue
        current += char
    if quote:
        _refuse(number, "a quote is not closed")
    return [*items, current]


def _scalar(number: int, text: str) -> str:
    """A plain, single- or double-quoted scalar, as text."""
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        inner = text[1:-1]
        if re.search(r'\\[^"\\]', inner):
            _refuse(number, 'only \\" and \\\\ are taken as escapes in a double-quoted string')
        return inner.replace('\\"', '"').replace("\\\\", "\\")
    if not _PLAIN.fullmatch(text) or ": " in text:
        _refuse(number, f"{text!r} is not a plain word, a quoted string or a list of them")
    return text


def _refuse(number: int, why: str) -> None:
    raise SettingsError(
        f"{FILE} line {number}: {why} — the {SECTION}: section is read before anything is installed, so it holds "
        "only mappings, words, quoted strings and lists of them (docs/runners.md)."
    )
