"""The grammar of `invoke tag-run --set KEY=VALUES` (src/runloop/sweep_grammar.py), each documented form.

The README (Sweeps) documents: a value, a comma list, `choice(a, b, …)`, `range([start,] stop[, step])` with a
default start of 0, a default step of 1, stop left out, floats computed without drift; values read as YAML 1.2
reads them (as DVC's -S does); DVC's `params.yaml:key` form. Each is pinned here, value and type.
"""

from __future__ import annotations

import pytest

from src.runloop.refusal import Refused
from src.runloop.sweep_grammar import parse


def values(text: str, max_legs: int = 32) -> list:
    return list(parse(text, max_legs).values)


def test_a_value_and_a_comma_list():
    assert values("train.lr=0.1") == [0.1]
    assert values("train.lr=0.1,0.5, 1") == [0.1, 0.5, 1]
    assert parse("train.lr=0.1,0.5").key == "train.lr"


def test_choice_is_the_same_list():
    assert values("train.model=choice(forest, boosting)") == ["forest", "boosting"]
    assert values("train.depth=choice(2, 4,8)") == [2, 4, 8]
    assert values("a=choice(x)") == ["x"]


def test_range_starts_at_0_by_default_and_leaves_stop_out():
    assert values("train.epochs=range(3)") == [0, 1, 2]
    assert values("train.epochs=range(20, 80, 20)") == [20, 40, 60]
    assert values("train.epochs=range(1, 4)") == [1, 2, 3]


def test_range_counts_down_with_a_negative_step():
    assert values("train.depth=range(5, 0, -2)") == [5, 3, 1]


def test_a_float_range_keeps_every_value_and_none_drifts():
    assert values("train.lr=range(0.1, 0.5, 0.2)") == [0.1, 0.3]
    assert values("train.lr=range(0.1, 0.4, 0.1)") == [0.1, 0.2, 0.3]  # 0.1 + 0.1 + 0.1 would be 0.30000000000000004
    assert values("train.lr=range(1, 2, 0.25)") == [1.0, 1.25, 1.5, 1.75]
    assert all(isinstance(v, float) for v in values("train.lr=range(1, 2, 0.5)"))
    assert all(isinstance(v, int) for v in values("train.epochs=range(1, 9, 4)"))


def test_values_are_read_as_yaml_1_2_reads_them():
    spec = parse("a.b=0.5,1e-5,true,yes,null,'x,y',[1, 2],\"q\"")
    assert list(spec.values) == [0.5, 1e-05, True, "yes", None, "x,y", [1, 2], "q"]
    assert list(spec.texts) == ["0.5", "1e-5", "true", "yes", "null", "x,y", "[1, 2]", "q"]


def test_dvc_s_file_key_form_for_params_yaml():
    assert parse("params.yaml:train.lr=0.1").key == "train.lr"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("train.lr", "--set 'train.lr' is not KEY=VALUES — write a dotted key of params.yaml and its values"),
        ("1train=3", "is not KEY=VALUES"),
        ("train.lr=", "--set 'train.lr=' has an empty value — list values separated by commas"),
        ("train.lr=0.1,,0.2", "has an empty value"),
        ("train.lr=0.1,0.1", "--set train.lr lists 0.1 twice — give each value once."),
        ("train.epochs=range(1, 5, 0)", "range(1, 5, 0) for train.epochs has step 0 — give a step that is not zero."),
        ("train.epochs=range(5, 1)", "range(5, 1) for train.epochs gives no value (stop is left out)"),
        ("train.epochs=range(a, b)", "range(a, b) for train.epochs is not range([start,] stop[, step]) with numbers"),
        ("train.epochs=range(1, 2, 3, 4)", "is not range([start,] stop[, step]) with numbers"),
        ("train.epochs=range(1, 100)", "range(1, 100) for train.epochs alone gives 99 legs, more than --max-legs 32"),
    ],
)
def test_what_the_grammar_refuses_in_one_line(text, said):
    with pytest.raises(Refused) as refused:
        parse(text)

    assert said in str(refused.value)
    assert "\n" not in str(refused.value)
