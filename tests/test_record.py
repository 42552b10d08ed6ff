"""The run's record (src/runloop/record.py): written and read back, every format ever written, damage refused.

tests/fixtures/records/ holds real records: the messages each earlier version of the template wrote (format 1, in
its variants v1-v3; see the folder's README), and those this version writes (format 2, `*-f2-*`). Every one of them
must parse to what index.json says, forever: results commits stay in history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.runloop import record
from src.runloop.record import CANCELLED, FAILED, RESULTS, SAME, Launch, Outcome, RecordError

FIXTURES = Path(__file__).parent / "fixtures" / "records"
INDEX = json.loads((FIXTURES / "index.json").read_text())
TAG = "run-example-main-20261201-093000"
COMMIT = "bad86de9c8a7581ff8814fdfd1cb651b7a8a3a7a"
OTHER = "1f3e683d86a5c0e2b6d8f4a9c7e1b3d5f7a9c2e4"


def _fixtures(kind: str) -> list[dict]:
    return [entry for entry in INDEX if entry["kind"] == kind]


# -- every format ever written ------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", _fixtures("annotation"), ids=lambda e: e["file"])
def test_every_annotation_ever_written_parses(entry):
    launch = record.parse_launch((FIXTURES / entry["file"]).read_text())

    expected = entry["expected"]
    assert (launch.message, launch.branch) == (expected["message"], expected["branch"])
    assert launch.sweep == expected.get("sweep")
    leg = expected.get("leg")
    assert launch.leg == (tuple(int(n) for n in (leg.split("/") if isinstance(leg, str) else leg)) if leg else None)
    assert launch.sets == tuple(tuple(pair) for pair in expected.get("sets") or [])
    assert launch.runner == expected.get("runner")
    assert launch.version == (2 if "-f2-" in entry["file"] else 1)


@pytest.mark.parametrize("entry", _fixtures("results"), ids=lambda e: e["file"])
def test_every_outcome_record_ever_written_parses(entry):
    outcome = record.parse_outcome((FIXTURES / entry["file"]).read_text())

    expected = entry["expected"]
    assert outcome is not None
    assert outcome.kind == expected.get("kind", RESULTS)  # format 1 recorded results only
    assert (outcome.tag, outcome.commit, outcome.subject) == (expected["tag"], expected["commit"], expected["subject"])
    assert list(outcome.metrics) == expected["metrics"]
    assert list(outcome.mlflow_runs) == expected["mlflow_runs"]
    assert outcome.ci_run == expected["ci_run"]
    assert dict(outcome.machine) == expected["environment"]
    assert bool(outcome.comparison) == expected["details"]
    for field in ("same_as", "attempt", "step", "stage", "runner"):
        assert getattr(outcome, field) == expected.get(field), field
    assert list(outcome.output) == expected.get("output", [])
    assert outcome.version == (2 if "-f2-" in entry["file"] else 1)


def test_format_1_metrics_without_a_file_name_are_read_as_metrics_of_no_file():
    (outcome,) = [
        record.parse_outcome((FIXTURES / e["file"]).read_text()) for e in INDEX if e["file"] == "results-v1-539a4c9.txt"
    ]
    assert record.metric(outcome.metrics[0]) == ("", "test_accuracy", "0.9649")
    assert record.metric("metrics/evaluate.json test_accuracy: 0.9649") == (
        "metrics/evaluate.json",
        "test_accuracy",
        "0.9649",
    )


@pytest.mark.parametrize("entry", [e for e in INDEX if "-f2-" in e["file"]], ids=lambda e: e["file"])
def test_this_version_writes_its_fixtures_byte_for_byte(entry):
    """A change to what is written must come with a new format number and fixtures of it (the old ones stay)."""
    text = (FIXTURES / entry["file"]).read_text()
    if entry["kind"] == "annotation":
        assert record.annotation(record.parse_launch(text)) == text
    else:
        assert record.message(record.parse_outcome(text)) == text


# -- written and read back ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "launch",
    [
        Launch("Try a deeper forest", "feature/deep-forest"),
        Launch("", "main"),
        Launch("A message\n\nBranch: not-this-one\n\nwith paragraphs", "main", runner="gpu"),
        Launch("Leg 1/2", "main", "run-x-main-20260101-000000-lr", (1, 2), (("train.lr", "0.1"), ("a.b", "x=y: z"))),
    ],
)
def test_a_launch_reads_back_as_written(launch):
    text = record.annotation(launch)

    assert record.parse_launch(text) == Launch(launch.message.strip(), *list(vars(launch).values())[1:])
    assert text.endswith(f"{record.FORMAT}: {record.VERSION}\n")


def test_a_tag_without_an_annotation_records_nothing_but_itself():
    assert record.parse_launch("") == Launch(version=1)
    assert record.parse_launch("Made by hand\n\nNote: not a trailer of ours") == Launch(
        "Made by hand\n\nNote: not a trailer of ours", version=1
    )


def test_a_signed_tags_signature_is_not_part_of_its_record():
    signed = (
        record.annotation(Launch("Signed", "main"))
        + "-----BEGIN PGP SIGNATURE-----\n\niQEz\n-----END PGP SIGNATURE-----\n"
    )
    assert record.parse_launch(signed) == Launch("Signed", "main")


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(
            RESULTS, TAG, COMMIT, "Tune", ("metrics/e.json acc: 0.9",), ("a" * 32,), "https://ci/1", {"python": "3"}
        ),
        Outcome(RESULTS, TAG, COMMIT, "No metrics, no MLflow, no CI"),
        Outcome(SAME, TAG, COMMIT, "Edit the README", ("m.json acc: 1",), same_as=OTHER, same_note="run-x's results"),
        Outcome(FAILED, TAG, COMMIT, "Tune", step="invoke repro", stage="train", output=("a", "KeyError: 'x'")),
        Outcome(CANCELLED, TAG, COMMIT, "Tune", attempt=3, runner="gpu"),
        Outcome(FAILED, TAG, COMMIT, "Failed before any step"),
    ],
    ids=["results", "bare results", "same results", "failed", "cancelled", "failed, nothing known"],
)
def test_an_outcome_reads_back_as_written(outcome):
    text = record.message(outcome)

    assert record.parse_outcome(text) == outcome
    assert text.splitlines()[0] == outcome.subject + record.SUFFIX[outcome.kind]
    assert text.endswith(f"{record.FORMAT}: {record.VERSION}\n")


def test_a_commit_that_names_no_run_is_no_record():
    assert record.parse_outcome("Tune the evaluation\n\nJust a commit.\n") is None
    assert record.parse_outcome("Run-Tag: in a subject, not a trailer\n") is None


def test_a_value_over_several_lines_is_never_written():
    with pytest.raises(ValueError, match="the Failed-Step of a run record is one line"):
        record.message(Outcome(FAILED, TAG, COMMIT, step="invoke repro\nRun-Outcome: results"))
    with pytest.raises(ValueError, match="the Branch of a run record is one line"):
        record.annotation(Launch("x", "main\nSweep: forged"))


# -- damaged records --------------------------------------------------------------------------------------------------


def _damaged(trailer: str, value: str) -> str:
    text = record.message(Outcome(RESULTS, TAG, COMMIT, "Tune", ("m.json acc: 1",), ("a" * 32,)))
    lines = text.splitlines()
    found = [i for i, line in enumerate(lines) if line.startswith(f"{trailer}: ")]
    if found:
        lines[found[0]] = f"{trailer}: {value}"
    else:
        lines.insert(-1, f"{trailer}: {value}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("trailer", "value", "said"),
    [
        ("Run-Record", "3", "it is written in record format 3, newer than this template reads (up to 2) — take "),
        ("Run-Record", "two", "its Run-Record trailer 'two' is not a format number"),
        ("Run-Outcome", "succeeded", "its Run-Outcome trailer 'succeeded' is none of results, same-results, failed"),
        ("Run-Commit", "bad86de", "its Run-Commit trailer 'bad86de' is not a full commit id"),
        ("Run-Tag", "run-example-other", "it names 2 run tags"),
        ("Run-Attempt", "second", "its Run-Attempt trailer 'second' is not a number"),
        ("Run-Outcome", "same-results", "it records the same results as None, which is not a full commit id"),
    ],
)
def test_a_damaged_outcome_trailer_is_refused_saying_what_is_wrong(trailer, value, said):
    text = (
        _damaged(trailer, value)
        if trailer != "Run-Tag"
        else _damaged("Run-Tag-2", value).replace("Run-Tag-2", "Run-Tag")
    )

    with pytest.raises(RecordError) as refused:
        record.parse_outcome(text)

    assert said in str(refused.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Run x\n\nBranch: main\nSweep: s\nLeg: 3/2\nRun-Record: 2\n", "its Leg trailer '3/2' is not <number>/<count>"),
        ("Run x\n\nBranch: main\nSweep: s\nLeg: 1/2\nSet: nokey\nRun-Record: 2\n", "its Set trailer 'nokey' is not"),
        ("Run x\n\nBranch: main\nRun-Record: 9\n", "record format 9, newer than this template reads"),
    ],
)
def test_a_damaged_annotation_is_refused_saying_what_is_wrong(text, said):
    with pytest.raises(RecordError, match=said.replace("(", r"\(").replace(")", r"\)")):
        record.parse_launch(text)
