"""The grammar of a sweep's `--set KEY=VALUES`: DVC's `-S` values, Hydra's `range()` and `choice()`.

    parse(text, max_legs)     one --set as a Spec: a dotted key of params.yaml and the values the sweep gives it

VALUES is a value (`0.1`), a comma list (`0.1,0.5`; quotes and brackets keep their commas), `choice(a, b, …)` (the
same list), or `range([start,] stop[, step])`: start defaults to 0 and step to 1, stop is left out, floats too
(`range(0.1, 0.5, 0.2)` is 0.1, 0.3), computed in decimal so no value drifts. Each value is read as YAML 1.2 reads
it, as DVC's -S does: 0.5 and 1e-5 are numbers, true a bool, 'x' and yes text. A whole number longer than Python
reads (4300 digits) is refused in one line.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from src.runloop.refusal import Refused

PARAMS = "params.yaml"
MAX_LEGS = 32
_FUNCTION = re.compile(r"^(range|choice)\((.*)\)$", re.DOTALL)
_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")


@dataclass(frozen=True)
class Spec:
    """One --set: a dotted key of params.yaml and the values the sweep gives it."""

    key: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]  # each value as typed (a str param takes it as it is)


def shown(value: Any) -> str:
    """A value as YAML writes it: true/false, null, numbers as Python prints them, text as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def parse(text: str, max_legs: int = MAX_LEGS) -> Spec:
    """One --set: KEY=VALUES, VALUES a value, a comma list, `choice(a, b, …)` or `range([start,] stop[, step])`."""
    key, eq, values = text.partition("=")
    key = key.strip()
    if key.startswith(f"{PARAMS}:"):  # DVC's `file:key` form, for the one file a sweep edits
        key = key.removeprefix(f"{PARAMS}:")
    if not eq or not _KEY.fullmatch(key):
        raise Refused(
            f"--set {text!r} is not KEY=VALUES — write a dotted key of {PARAMS} and its values, e.g. "
            "--set train.learning_rate=0.1,0.5 or --set 'train.epochs=range(20, 80, 20)'."
        )
    values = values.strip()
    function = _FUNCTION.match(values)
    if function and function.group(1) == "range":
        found = _range(key, function.group(2), max_legs)
        return Spec(key, tuple(found), tuple(shown(v) for v in found))
    tokens = _split(function.group(2) if function else values)
    if not tokens or any(not t for t in tokens):
        raise Refused(f"--set {text!r} has an empty value — list values separated by commas, e.g. {key}=0.1,0.5.")
    parsed = [_scalar(key, token) for token in tokens]
    seen = [t for i, t in enumerate(tokens) if tokens.index(t) != i]
    if seen:
        raise Refused(f"--set {key} lists {seen[0]} twice — give each value once.")
    return Spec(key, tuple(parsed), tuple(_unquoted(t) for t in tokens))


def _split(text: str) -> list[str]:
    """Comma-separated tokens, commas inside quotes or brackets kept."""
    tokens, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            tokens.append(current.strip())
            current = ""
            continue
        current += char
    return [*tokens, current.strip()] if text.strip() else []


def _scalar(key: str, token: str) -> Any:
    """A value as YAML 1.2 reads it, as DVC's -S does: 0.5 and 1e-5 numbers, true a bool, 'x' and yes text."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(token)
    except YAMLError:
        return _unquoted(token)
    except ValueError:  # a whole number of more digits than Python converts (sys.get_int_max_str_digits)
        raise Refused(_too_long(key, token)) from None


def _too_long(key: str, token: str) -> str:
    digits = sum(c.isdigit() for c in token)
    return (
        f"--set {key}: a number of {digits} digits is longer than the {sys.get_int_max_str_digits()} digits Python "
        "reads — give a shorter number."
    )


def _unquoted(token: str) -> str:
    return token[1:-1] if len(token) > 1 and token[0] == token[-1] and token[0] in "'\"" else token


def _range(key: str, arguments: str, max_legs: int) -> list[int | float]:
    """Hydra's and DVC's range(): start (default 0), stop (left out), step (default 1), floats too."""
    parts = [p.strip() for p in arguments.split(",")]
    if too_long := next((p for p in parts if sum(c.isdigit() for c in p) > sys.get_int_max_str_digits()), None):
        raise Refused(_too_long(key, too_long))
    usage = f"range({arguments}) for {key} is not range([start,] stop[, step]) with numbers — e.g. range(20, 80, 20)"
    if not 1 <= len(parts) <= 3:
        raise Refused(usage)
    try:
        numbers = [Decimal(p) for p in parts]
    except InvalidOperation:
        raise Refused(usage) from None
    if len(numbers) == 1:
        start, stop, step = Decimal(0), numbers[0], Decimal(1)
    else:
        start, stop, step = (*numbers, Decimal(1))[:3]
    if step == 0:
        raise Refused(f"range({arguments}) for {key} has step 0 — give a step that is not zero.")
    count = max(0, math.ceil((stop - start) / step))
    if count == 0:
        raise Refused(f"range({arguments}) for {key} gives no value (stop is left out) — check start, stop and step.")
    if count > max_legs:
        raise Refused(
            f"range({arguments}) for {key} alone gives {count} legs, more than --max-legs {max_legs} — narrow it, "
            "or raise --max-legs if the runners can take them."
        )
    integral = all("." not in p and "e" not in p.lower() for p in parts)
    return [int(start + i * step) if integral else float(start + i * step) for i in range(count)]
