"""Sweeps: `invoke tag-run --set KEY=VALUES …` makes one run per combination of values, a leg, for the runner pool.

Each leg is a commit whose only parent is HEAD and whose only change is params.yaml, tagged and pushed as a run
of its own (one push per tag: GitHub starts no workflow for a push that carries more than three tags). The tag
carries the commit to the remote: no branch is made for it, so no other workflow starts for it and nothing lands
on the user's branch. Its annotation names the branch, the sweep and the leg's values; `invoke share` reads the
sweep there and keeps each leg's results on `results/<tag>`, so legs never race each other or the branch.

    parse(text, max_legs)                 one --set: DVC's -S grammar (a value, a comma list, range(), choice())
    plan(params_text, specs, max_legs)    the legs: keys and types checked, each leg's params.yaml written
    edited(text, values)                  params.yaml with new values, every other byte kept
    commit(c, base, leg, message)         the leg's commit on `base`, made without touching the checkout
    tag_names, taken, trailers            the legs' tags: names, a check that they are free, what they record
    has_run(c, runs, base)                whether the base's stages are in DVC's run cache for the legs to restore
    member(run), named(runs, name)        a run as a sweep's leg; a sweep's stem and its legs, from `runs.listed`
    base_run(c, runs, leg)                the run of the sweep's base: what `invoke compare` holds a leg against
    table(stem, legs, sort, ascending)    `invoke runs --sweep`: swept params against metrics, the best marked
    adopt(c, best, remote)                the commands that bring the best leg's params onto its branch
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from invoke import Context

from src.runloop.commands import git, must, run

PARAMS = "params.yaml"
MAX_LEGS = 32
DEFAULT_LABEL = "sweep"
# The lines of a leg's tag annotation (beside tag-run's `Branch:`): `Sweep: <stem>`, `Leg: 2/3`, `Set: key=value`.
SWEEP, LEG, SET = "Sweep", "Leg", "Set"
_FUNCTION = re.compile(r"^(range|choice)\((.*)\)$", re.DOTALL)
_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")


class Refused(Exception):
    """A sweep that cannot be made; the message is one line: what is wrong, what to do."""


@dataclass(frozen=True)
class Spec:
    """One --set: a dotted key of params.yaml and the values the sweep gives it."""

    key: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]  # each value as typed (a str param takes it as it is)


@dataclass(frozen=True)
class Leg:
    """One combination of values: its number, the values by key, and params.yaml as the leg's commit holds it."""

    number: int
    count: int
    values: dict[str, Any]
    params: str

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={shown(value)}" for key, value in self.values.items())


def shown(value: Any) -> str:
    """A value as YAML writes it: true/false, null, numbers as Python prints them, text as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


# -- --set KEY=VALUES ----------------------------------------------------------------------------------------------


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
    parsed = [_scalar(token) for token in tokens]
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


def _scalar(token: str) -> Any:
    """A value as YAML 1.2 reads it, as DVC's -S does: 0.5 and 1e-5 numbers, true a bool, 'x' and yes text."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(token)
    except YAMLError:
        return _unquoted(token)


def _unquoted(token: str) -> str:
    return token[1:-1] if len(token) > 1 and token[0] == token[-1] and token[0] in "'\"" else token


def _range(key: str, arguments: str, max_legs: int) -> list[int | float]:
    """Hydra's and DVC's range(): start (default 0), stop (left out), step (default 1), floats too."""
    parts = [p.strip() for p in arguments.split(",")]
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


# -- the legs -------------------------------------------------------------------------------------------------------


def plan(params_text: str, specs: list[Spec], max_legs: int = MAX_LEGS) -> list[Leg]:
    """Every combination of the specs' values as a leg, each with its params.yaml; refuses before making any."""
    keys = [spec.key for spec in specs]
    if twice := next((k for i, k in enumerate(keys) if keys.index(k) != i), None):
        raise Refused(f"--set {twice} is given twice — give one --set per key, its values separated by commas.")
    size = 1
    for spec in specs:
        size *= len(spec.values)
    if size > max_legs:
        counts = " × ".join(str(len(spec.values)) for spec in specs)
        raise Refused(
            f"The sweep has {size} legs ({counts}), more than --max-legs {max_legs} — sweep fewer values, or raise "
            "--max-legs if the runners can take them."
        )
    current = _load(params_text)
    typed = [(spec.key, [_typed(current, spec, i) for i in range(len(spec.values))]) for spec in specs]
    combos = list(itertools.product(*[values for _, values in typed]))
    return [
        Leg(number, len(combos), values, edited(params_text, values))
        for number, values in enumerate((dict(zip(keys, combo, strict=True)) for combo in combos), start=1)
    ]


def _load(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
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


def _typed(doc: Any, spec: Spec, index: int) -> Any:
    """The spec's value at `index`, of the type the key has now; Refused when it cannot be."""
    current, value, text = _lookup(doc, spec.key), spec.values[index], spec.texts[index]
    kind = type(current).__name__
    if isinstance(current, dict):
        raise Refused(f"{spec.key} is a mapping ({', '.join(map(str, current))}) — set one of its keys.")
    if isinstance(current, list):
        raise Refused(f"{spec.key} is a list — a sweep sets single values; edit the list in {PARAMS} and commit.")
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
        value = float(value) if ok else value
    else:
        ok = type(value) is type(current)
    if not ok:
        raise Refused(
            f"--set {spec.key}={text}: {spec.key} is {shown(current)} in {PARAMS}, {_kind(kind)}, and {text} is "
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

    expected = copy.deepcopy(_load(old))
    for key, value in values.items():
        *path, last = key.split(".")
        parent = expected
        for part in path:
            parent = parent[part]
        parent[last] = value
    try:
        got = _load(new)
    except Refused:
        got = None
    if json.dumps(got, sort_keys=True, default=str) != json.dumps(expected, sort_keys=True, default=str):
        raise Refused(
            f"Writing {', '.join(f'{k}={shown(v)}' for k, v in values.items())} into {PARAMS} would not read back as "
            "those values — set them by hand and commit, then `invoke tag-run`."
        )


# -- git ------------------------------------------------------------------------------------------------------------


def commit(c: Context, base: str, leg: Leg, message: str) -> str:
    """The leg's commit: `base`'s tree with the leg's params.yaml, `base` its only parent; the checkout, the index
    and every branch stay as they are (the commit is reachable only once its tag points at it)."""
    listed = must(c, f"Reading {PARAMS} at {base[:12]}", "git", "ls-tree", base, "--", PARAMS)
    mode = listed.split()[0] if listed else "100644"
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        params, index, text = os.path.join(tmp, PARAMS), os.path.join(tmp, "index"), os.path.join(tmp, "message")
        with open(params, "w", encoding="utf-8", newline="") as f:
            f.write(leg.params)
        with open(text, "w", encoding="utf-8") as f:
            f.write(message)
        blob = must(c, f"Storing leg {leg.number}'s {PARAMS}", "git", "hash-object", "-w", f"--path={PARAMS}", params)
        env = {"GIT_INDEX_FILE": index}
        must(c, "Reading HEAD's tree", "git", "read-tree", base, env=env)
        must(c, "Staging the leg's params", "git", "update-index", "--cacheinfo", f"{mode},{blob},{PARAMS}", env=env)
        tree = must(c, "Writing the leg's tree", "git", "write-tree", env=env)
        return must(c, f"Committing leg {leg.number}", "git", "commit-tree", tree, "-p", base, "-F", text)


def message(leg: Leg, label: str) -> str:
    """The leg commit's message: its values first (the results commit's subject adds "-results")."""
    return (
        f"Set {leg.label} (leg {leg.number}/{leg.count} of sweep {label})\n\n"
        f"Made by `invoke tag-run --set`: this commit changes only {PARAMS}; its parent is the sweep's base.\n"
    )


def trailers(stem: str, leg: Leg) -> list[tuple[str, str]]:
    """What the leg's tag annotation records besides its branch: the sweep, the leg, its values."""
    values = [(SET, f"{key}={shown(value)}") for key, value in leg.values.items()]
    return [(SWEEP, stem), (LEG, f"{leg.number}/{leg.count}"), *values]


def tag_names(stem: str, count: int) -> list[str]:
    width = len(str(count))
    return [f"{stem}-{n:0{width}d}" for n in range(1, count + 1)]


def taken(c: Context, tags: list[str], remote: str) -> list[str]:
    """Those of `tags` that git refuses as names, or that exist here or on the remote (one ls-remote for all)."""
    bad = [t for t in tags if git(c, "check-ref-format", f"refs/tags/{t}") is None]
    here = [t for t in tags if git(c, "rev-parse", "--quiet", "--verify", f"refs/tags/{t}") is not None]
    there = run(c, "git", "ls-remote", "--tags", remote, *(f"refs/tags/{t}" for t in tags))
    remote_tags = {line.split("refs/tags/", 1)[1] for line in there.stdout.splitlines() if "refs/tags/" in line}
    return [t for t in tags if t in bad or t in here or t in remote_tags]


# Said when the sweep's base has no results: nothing is in DVC's run cache for the stages the legs share.
COLD = (
    "Note: this clone knows no results of {base} (the sweep's base), so each leg also computes the stages the swept "
    "keys do not touch. To have the legs restore those from DVC's run cache, `invoke tag-run` the base first and "
    "sweep once its results are in (`invoke runs` fetches them)."
)


def has_run(c: Context, listed: list[Any], base: str) -> bool:
    """Whether the base's stages are in DVC's run cache: a run of it has results, or it holds a dvc.lock."""
    return any(r.commit == base and r.results for r in listed) or git(c, "cat-file", "-e", f"{base}:dvc.lock") == ""


# -- looking back ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A run that is a leg of a sweep, with what its tag records of it."""

    run: Any  # runs.Run
    stem: str
    number: int
    count: int
    values: list[tuple[str, str]]  # (key, value as recorded)


def member(r: Any) -> Member | None:
    """The sweep leg `r` (a runs.Run) is, read from its tag's message; None for a run that is no leg."""
    found = dict.fromkeys((SWEEP, LEG))
    values = []
    for line in (r.message or "").splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in found:
            found[key] = value.strip()
        elif sep and key == SET:
            name, _, text = value.partition("=")
            values.append((name.strip(), text.strip()))
    leg = re.fullmatch(r"(\d+)/(\d+)", found[LEG] or "")
    if not found[SWEEP] or not leg:
        return None
    return Member(r, found[SWEEP], int(leg.group(1)), int(leg.group(2)), values)


def base_run(c: Context, listed: list[Any], r: Any) -> Any:
    """For a sweep's leg, the run of the sweep's base (the leg's parent) that has results; else None."""
    if member(r) is None:
        return None
    base = git(c, "rev-parse", "--verify", "--quiet", f"{r.commit}^")
    return next((x for x in listed if base in (x.commit, x.results) and x.results and not member(x)), None)


def named(listed: list[Any], name: str) -> tuple[str, list[Member]]:
    """The sweep `name` names (its stem, or the label it was given: the newest with that label) and its legs."""
    members = [m for m in (member(r) for r in listed) if m]
    stems = list(dict.fromkeys(m.stem for m in members))  # newest first, as listed
    stem = next((s for s in stems if s == name), None) or next((s for s in stems if s.endswith(f"-{name}")), None)
    if stem is None:
        known = ", ".join(stems[:5]) or "none yet"
        raise Refused(f"No sweep named {name!r} — sweeps here (newest first): {known}. `invoke runs` fetches them.")
    return stem, sorted((m for m in members if m.stem == stem), key=lambda m: m.number)


def metrics(r: Any) -> dict[str, float]:
    """A run's metrics as its results commit lists them ("file key: value"), the numbers only."""
    found = {}
    for line in r.metrics:
        name, _, value = line.rpartition(": ")
        try:
            found[name] = float(value)
        except ValueError:
            continue
    return found


def metric_name(wanted: str, available: list[str]) -> str:
    """The metric `wanted` names: "file key" / "file:key" as listed, or a key alone when one file has it."""
    if not available:
        raise Refused("No leg has results yet, so there is no metric to sort by — wait for the legs (invoke watch).")
    if not wanted:
        last = available[-1].split(" ", 1)[0]  # the headline: the last metric file's first metric
        return next(m for m in available if m.split(" ", 1)[0] == last)
    spelled = wanted.replace(":", " ", 1)
    matches = [m for m in available if m == spelled] or [m for m in available if m.split(" ", 1)[-1] == wanted]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(m.replace(" ", ":", 1) for m in available)
    why = "several files have it" if matches else "no leg's results list it"
    raise Refused(f"--sort {wanted!r}: {why} — name one of: {listed}.")


def table(stem: str, legs: list[Member], sort: str = "", ascending: bool = False) -> tuple[str, Member | None]:
    """The legs' swept params against their metrics, sorted by `sort`, the best marked; and the best leg."""
    from src.runloop import report

    values = {m.run.tag: metrics(m.run) for m in legs}
    available = list(dict.fromkeys(name for v in values.values() for name in v))
    key = metric_name(sort, available) if available or sort else ""
    with_results = [m for m in legs if key in values[m.run.tag]]
    ranked = sorted(with_results, key=lambda m: values[m.run.tag][key], reverse=not ascending)
    ordered = ranked + [m for m in legs if m not in ranked]
    best = ranked[0] if ranked else None
    keys = list(dict.fromkeys(k for m in legs for k, _ in m.values))
    shown_metrics = [key] + [n for n in available if n != key] if key else []
    header = ("", "leg", "tag", *keys, *(n.replace(" ", ":", 1) for n in shown_metrics), "state")
    rows = [
        (
            "*" if m is best else "",
            f"{m.number}/{m.count}",
            m.run.tag,
            *(dict(m.values).get(k, "?") for k in keys),
            *(f"{values[m.run.tag][n]:g}" if n in values[m.run.tag] else "-" for n in shown_metrics),
            "results" if m.run.results else "waiting",
        )
        for m in ordered
    ]
    direction = "lower is better" if ascending else "higher is better"
    by = f", sorted by {key.replace(' ', ':', 1)} ({direction}); * marks the best" if key else ""
    base = legs[0].run.branch or "?"
    head = f"Sweep {stem}: {len(legs)} of {legs[0].count} legs on {base}{by}."
    return f"{head}\n\n{report.table(header, rows)}", best


def adopt(c: Context, best: Member, remote: str) -> str:
    """How to bring the best leg's params onto its branch (and, when the branch has not moved, its results too)."""
    import shlex

    r, branch = best.run, best.run.branch or "BRANCH"
    base = git(c, "rev-parse", "--verify", "--quiet", f"{r.commit}^") or ""
    tip = git(c, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{branch}")
    switch = shlex.join(["git", "switch", branch]) + " && " + shlex.join(["git", "pull", "--ff-only", remote, branch])
    lines = [
        f"Best: leg {best.number}/{best.count} ({', '.join(f'{k}={v}' for k, v in best.values)}), {r.tag}.",
        f"Bring its params onto {branch} (a commit that changes only {PARAMS}), then `invoke tag-run` it there:",
        f"  {switch} && {shlex.join(['git', 'cherry-pick', r.commit])}",
    ]
    if r.results and tip and tip == base:
        lines += [
            f"Or, as {branch} has not moved since the sweep, take the leg's commit and its results as they are:",
            f"  {switch} && {shlex.join(['git', 'merge', '--ff-only', r.results])}",
        ]
    return "\n".join(lines + ["Then push the branch."])
