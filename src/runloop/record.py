"""A run's record in git: what its tag's annotation says (the launch) and what its outcome commit says (the end).

Every run leaves two records, both readable from git alone and kept forever:

    the launch    the annotation of the run tag `invoke tag-run` pushes: the user's message, then trailers naming the
                  branch the results belong to and, for a sweep's leg, the sweep, the leg and its values
    the outcome   a commit on the tagged commit whose trailers name the run:
                    results        "<subject>-results": dvc.lock and DVC's .gitignore entries (`invoke share`)
                    same results   the same, for a run whose results another commit already holds: it names
                                   that commit (Same-As) and changes nothing else
                    failed         "<subject>-failed": which step and stage failed, the last lines of output
                    cancelled      the same, for a job cancelled while a step could still run

This module alone writes and parses them. `annotation`/`parse_launch` and `message`/`parse_outcome` are pure: text
in, text out. A record names its format in a `Run-Record` trailer; records without one are format 1, written
before the trailer existed (tests/fixtures/records/ holds real messages of every format ever written, and the
parser reads them all). A record this template cannot read (a damaged trailer, a newer format) is a RecordError
whose message says what is wrong.

Standard library only: the failure record is written on a runner where nothing may be installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VERSION = 2  # the format this module writes; parse_* read every format up to it
RESULTS, SAME, FAILED, CANCELLED = "results", "same-results", "failed", "cancelled"
KINDS = (RESULTS, SAME, FAILED, CANCELLED)
# The subject's suffix on the tagged commit's subject, per kind.
SUFFIX = {RESULTS: "-results", SAME: "-results", FAILED: "-failed", CANCELLED: "-cancelled"}
# What the machine section names, in this order: machine.describe's keys, then the runner that took the job (its
# name, and the labels the route job gave the run). The section is a list of `key: value` lines that every reader
# of format 2 takes whole, whatever the keys: a key added here needs no new format (tests/fixtures/records/).
MACHINE_KEYS = ("python", "os", "machine", "blas", "gpu", "runner", "labels")
# The branches outcome commits go to off the tag's branch: results that cannot land on it, and every failed or
# cancelled attempt. Where a branch on the remote blocks the first name (git cannot hold a branch `results` and a
# branch `results/<tag>` at once), the second, then -2, -3, …
SIDE = {"results": ("results/", "run-results/"), "failed": ("failed/", "run-failed/")}
SIDE_PREFIXES = tuple(prefix for pair in SIDE.values() for prefix in pair)

# Trailers of the launch (the tag's annotation).
BRANCH, SWEEP, LEG, SET, RUNNER = "Branch", "Sweep", "Leg", "Set", "Runner-Class"
# Trailers of the outcome (the commit's message).
TAG, COMMIT, OUTCOME, SAME_AS, MLFLOW_RUN, CI_RUN, ATTEMPT = (
    "Run-Tag",
    "Run-Commit",
    "Run-Outcome",
    "Same-As",
    "MLflow-Run",
    "CI-Run",
    "Run-Attempt",
)
FAILED_STEP, FAILED_STAGE = "Failed-Step", "Failed-Stage"
FORMAT = "Run-Record"

_LAUNCH_KEYS = {BRANCH, SWEEP, LEG, SET, RUNNER, FORMAT}
_TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): ?(.*)$")
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_TOKEN = re.compile(r"\S+")
_SIGNATURE = re.compile(r"^-----BEGIN (?:PGP|SSH) SIGNATURE-----$", re.MULTILINE)
_INDENT = "    "


class RecordError(ValueError):
    """A record this template cannot read; the message says what is wrong (the caller adds which record)."""


# -- the launch: the tag's annotation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """What a run tag's annotation records."""

    message: str = ""  # the user's words (tag-run --message), trailers taken off
    branch: str | None = None  # where the results belong
    sweep: str | None = None  # a sweep's leg: the sweep's name (its stem)
    leg: tuple[int, int] | None = None  # (number, count)
    sets: tuple[tuple[str, str], ...] = ()  # a leg's values: (params key, value as written)
    runner: str | None = None  # the runner class the run asked for
    version: int = VERSION


def annotation(launch: Launch) -> str:
    """The annotation of a run tag: the message, a blank line, the trailers."""
    lines = [(BRANCH, launch.branch)] if launch.branch else []
    lines += [(RUNNER, launch.runner)] if launch.runner else []
    if launch.sweep and launch.leg:
        lines += [(SWEEP, launch.sweep), (LEG, f"{launch.leg[0]}/{launch.leg[1]}")]
        lines += [(SET, f"{key}={value}") for key, value in launch.sets]
    lines.append((FORMAT, str(VERSION)))
    return f"{launch.message.strip()}\n\n" + "".join(f"{key}: {_one_line(key, value)}\n" for key, value in lines)


def parse_launch(text: str | None) -> Launch:
    """The launch an annotation records (a lightweight tag, None or "", records nothing but the tag itself)."""
    body, trailers = _split(_unsigned(text or ""), _LAUNCH_KEYS)
    sweep, leg = _last(trailers, SWEEP), _last(trailers, LEG)
    number = count = 0
    if leg is not None:
        match = re.fullmatch(r"(\d+)/(\d+)", leg)
        number, count = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if not 1 <= number <= count:
            raise RecordError(f"its {LEG} trailer {leg!r} is not <number>/<count>")
    sets = []
    for value in trailers.get(SET, []):
        key, eq, written = value.partition("=")
        if not eq or not key.strip():
            raise RecordError(f"its {SET} trailer {value!r} is not <key>=<value>")
        sets.append((key.strip(), written.strip()))
    branch = _last(trailers, BRANCH)
    is_leg = bool(sweep and leg)  # a sweep's leg records both; either alone makes no leg
    return Launch(
        message=body,
        branch=branch.split()[0] if branch else None,  # format 1 read the first word: a branch has no space
        sweep=sweep if is_leg else None,
        leg=(number, count) if is_leg else None,
        sets=tuple(sets) if is_leg else (),
        runner=_last(trailers, RUNNER),
        version=_version(trailers),
    )


# -- the outcome: the commit on the tagged commit ------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What an outcome commit records: how the run ended and what it made."""

    kind: str
    tag: str
    commit: str  # the tagged commit
    subject: str = ""  # the tagged commit's subject (the record's subject adds the kind's suffix)
    metrics: tuple[str, ...] = ()  # "file key: value", as `dvc metrics show` finds them
    mlflow_runs: tuple[str, ...] = ()
    ci_run: str | None = None
    machine: Mapping[str, str] = field(default_factory=dict)  # what machine.describe() said on the runner
    comparison: str = ""  # the params and metrics against the branch's previous run (DVC's diffs), as written
    same_as: str | None = None  # same results: the commit that already held them
    same_note: str = ""  # same results: whose they were, in words
    attempt: int | None = None
    step: str | None = None  # failed/cancelled: the step (its command)
    stage: str | None = None  # failed: the pipeline stage that failed, when one did
    output: tuple[str, ...] = ()  # failed/cancelled: the last lines of the step's output, secrets cut out
    runner: str | None = None  # the runner class the run went to
    version: int = VERSION

    @property
    def has_results(self) -> bool:
        return self.kind in (RESULTS, SAME)


def message(outcome: Outcome) -> str:
    """The outcome commit's message: "<subject><suffix>", what happened, its sections, the trailers."""
    o = outcome
    head = f"{o.subject or o.tag}{SUFFIX[o.kind]}\n\n"
    if o.has_results:
        head += f"Results of run {o.tag} for {o.commit}.\n"
        if o.kind == SAME:
            head += f"The same results as {o.same_as}{f' ({o.same_note})' if o.same_note else ''}.\n"
        head += "\nMetrics:\n" + ("".join(f"{_INDENT}{m}\n" for m in o.metrics) or f"{_INDENT}(none)\n")
    else:
        where = f" at step `{o.step}`" if o.step else ""
        stage = f" (stage {o.stage})" if o.stage else ""
        verb = "failed" if o.kind == FAILED else "was cancelled"
        head += f"Run {o.tag} for {o.commit} {verb}{where}{stage}.\n"
        if o.output:
            # Blank lines left out: the section ends at the first one.
            head += "\nLast lines of its output:\n" + "".join(f"{_INDENT}{line}\n" for line in o.output if line.strip())
    sections = [_machine_section(o.machine)] if o.machine else []
    sections += [o.comparison.strip("\n") + "\n"] if o.comparison.strip() else []
    body = "".join(f"\n{s}" for s in sections)
    return f"{head}{body}\n" + "".join(f"{k}: {_one_line(k, v)}\n" for k, v in _outcome_trailers(o))


def _outcome_trailers(o: Outcome) -> list[tuple[str, str]]:
    lines = [(TAG, o.tag), (COMMIT, o.commit), (OUTCOME, o.kind)]
    lines += [(SAME_AS, o.same_as)] if o.kind == SAME and o.same_as else []
    lines += [(FAILED_STEP, o.step)] if o.step and not o.has_results else []
    lines += [(FAILED_STAGE, o.stage)] if o.stage and not o.has_results else []
    lines += [(MLFLOW_RUN, r) for r in dict.fromkeys(o.mlflow_runs)]
    lines += [(CI_RUN, o.ci_run)] if o.ci_run else []
    lines += [(ATTEMPT, str(o.attempt))] if o.attempt else []
    lines += [(RUNNER, o.runner)] if o.runner else []
    return [*lines, (FORMAT, str(VERSION))]


def parse_outcome(text: str) -> Outcome | None:
    """The outcome a commit message records; None for a commit that is no run's record (no Run-Tag trailer)."""
    body, trailers = _split(text, None)
    tags = trailers.get(TAG, [])
    if not tags:
        return None
    version = _version(trailers)
    if len(set(tags)) != 1:
        raise RecordError(f"it names {len(set(tags))} run tags ({', '.join(tags)}), a record names one")
    commit = _last(trailers, COMMIT) or ""
    if not _SHA.fullmatch(commit):
        raise RecordError(f"its {COMMIT} trailer {commit!r} is not a full commit id")
    kind = _last(trailers, OUTCOME) or RESULTS  # format 1 recorded results only
    if kind not in KINDS:
        raise RecordError(f"its {OUTCOME} trailer {kind!r} is none of {', '.join(KINDS)}")
    same_as = _last(trailers, SAME_AS)
    if kind == SAME and not (same_as and _SHA.fullmatch(same_as)):
        raise RecordError(f"it records the same results as {same_as!r}, which is not a full commit id")
    attempt = _last(trailers, ATTEMPT)
    if attempt is not None and not attempt.isdigit():
        raise RecordError(f"its {ATTEMPT} trailer {attempt!r} is not a number")
    runs = trailers.get(MLFLOW_RUN, [])
    if bad := [r for r in runs if not _TOKEN.fullmatch(r)]:
        raise RecordError(f"its {MLFLOW_RUN} trailer {bad[0]!r} is not an MLflow run id")
    subject = body.partition("\n")[0]
    return Outcome(
        kind=kind,
        tag=tags[0].strip(),
        commit=commit,
        subject=subject.removesuffix(SUFFIX[kind]),
        metrics=tuple(m for m in _section(body, "Metrics") if m != "(none)") if kind in (RESULTS, SAME) else (),
        mlflow_runs=tuple(dict.fromkeys(runs)),
        ci_run=_last(trailers, CI_RUN),
        machine=_machine(body),
        comparison=_comparison(body),
        same_as=same_as if kind == SAME else None,
        same_note=_same_note(body) if kind == SAME else "",
        attempt=int(attempt) if attempt else None,
        step=_last(trailers, FAILED_STEP),
        stage=_last(trailers, FAILED_STAGE),
        output=_section(body, "Last lines of its output", keep_blank=True),
        runner=_last(trailers, RUNNER),
        version=version,
    )


# -- the machine section -------------------------------------------------------------------------------------------


def runner_facts(name: str | None, labels: Iterable[str]) -> dict[str, str]:
    """The machine section's lines for the runner that took the job: its name, and its labels (comma separated)."""
    return {key: value for key, value in (("runner", name or ""), ("labels", ", ".join(labels))) if value}


def _machine_section(described: Mapping[str, str]) -> str:
    return "Environment:\n" + "".join(
        f"{_INDENT}{key}: {_one_line(key, described[key])}\n" for key in MACHINE_KEYS if described.get(key)
    )


def _machine(body: str) -> dict[str, str]:
    lines = _section(body, "Environment")
    return dict(line.split(": ", 1) for line in lines if ": " in line)


# -- reading text --------------------------------------------------------------------------------------------------


def _unsigned(text: str) -> str:
    """A tag's message without the signature git appends to a signed tag's object."""
    match = _SIGNATURE.search(text)
    return text[: match.start()] if match else text


def _split(text: str, known: set[str] | None) -> tuple[str, dict[str, list[str]]]:
    """The text above the trailers, and the trailers: the last paragraph, when every line of it is `Key: value`
    (and, with `known`, one of its keys is known: a hand-written tag's last paragraph may be prose)."""
    paragraphs = re.split(r"\n(?:[ \t]*\n)+", text.strip("\n"))
    last = paragraphs[-1].splitlines() if paragraphs else []
    found: dict[str, list[str]] = {}
    for line in last:
        match = _TRAILER.match(line)
        if not match:
            return text.strip("\n"), {}
        found.setdefault(match.group(1), []).append(match.group(2).strip())
    if not found or (known is not None and not found.keys() & known) or len(paragraphs) == 1 and known is None:
        return text.strip("\n"), {}
    return "\n\n".join(paragraphs[:-1]).strip("\n"), found


def _version(trailers: Mapping[str, list[str]]) -> int:
    written = _last(trailers, FORMAT)
    if written is None:
        return 1  # written before records named their format
    if not written.isdigit():
        raise RecordError(f"its {FORMAT} trailer {written!r} is not a format number")
    if int(written) > VERSION:
        raise RecordError(
            f"it is written in record format {written}, newer than this template reads (up to {VERSION}) — take "
            "the template's fixes (README: Taking the template's fixes)"
        )
    return int(written)


def _last(trailers: Mapping[str, list[str]], key: str) -> str | None:
    values = trailers.get(key) or []
    return values[-1] if values else None


def _section(body: str, title: str, keep_blank: bool = False) -> tuple[str, ...]:
    """The indented lines under `Title:` (a line of its own), their indentation taken off."""
    match = re.search(rf"^{re.escape(title)}:\n((?:{_INDENT}[^\n]*(?:\n|$))*)", body, flags=re.MULTILINE)
    lines = [line.removeprefix(_INDENT) for line in (match.group(1) if match else "").splitlines()]
    return tuple(line.rstrip() for line in lines if keep_blank or line.strip())


def _comparison(body: str) -> str:
    """The comparison with the branch's previous run, as written (from "Compared with" to the end of the body)."""
    match = re.search(r"^Compared with.*", body, flags=re.MULTILINE | re.DOTALL)
    return match.group(0).rstrip() if match else ""


def _same_note(body: str) -> str:
    match = re.search(r"^The same results as [0-9a-f]+ \((.*)\)\.$", body, flags=re.MULTILINE)
    return match.group(1) if match else ""


def _one_line(key: str, value: object) -> str:
    """A trailer's value on one line: a newline in it would end the trailer and start a line of its own."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"the {key} of a run record is one line, not {text!r}")
    return text


def describe(kind: str) -> str:
    """The kind in words."""
    return {RESULTS: "results", SAME: "same results", FAILED: "failed", CANCELLED: "cancelled"}[kind]


def metric(line: str) -> tuple[str, str, str]:
    """A metric line as (file, key, value): "metrics/x.json acc: 0.9" (format 1 wrote no file: "acc: 0.9")."""
    name, _, value = line.rpartition(": ")
    file, space, key = name.partition(" ")
    return (file, key, value) if space else ("", name, value)
