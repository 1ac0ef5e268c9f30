"""successCondition / failureCondition / thresholdRange: syntax, semantics, and safety."""

from __future__ import annotations

import pytest

from modelpilot.analysis.expressions import (FAILED, INCONCLUSIVE, SUCCESSFUL, ConditionError, evaluate,
                                            judge_conditions, parse)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("expr, values, expected", [
    ("result < 0.01", [0.004], True),
    ("result < 0.01", [0.02], False),
    ("result[0] >= 0.95", [0.97], True),
    ("len(result) > 0 and result < 2", [1.0], True),
    ("len(result) == 2 and result[1] > result[0]", [1.0, 2.0], True),
    ("all(v < 3 for v in result)", [1.0, 2.0], True),
    ("max(result) < 2", [1.0, 2.0], False),
    ("mean(result) == 1.5", [1.0, 2.0], True),
    ("0.9 <= result <= 1", [0.95], True),
    ("result * 100 > 5", [0.06], True),
    # Argo Rollouts / expr spelling
    ("result > 1 && !(result > 3) || false", [2.0], True),
    ("result != 2", [2.0], False),
    ("isInf(result)", [float("inf")], True),
])
def test_evaluate(expr, values, expected):
    assert evaluate(expr, values) is expected


@pytest.mark.parametrize("expr, values, match", [
    ("result < 1", [1.0, 2.0], "result has 2 values"),
    ("result[2] < 1", [1.0, 2.0], r"result\[2\] does not exist"),
    ("result[1] < 1", [1.0], r"result\[1\] does not exist"),
    ("result / 0 > 1", [1.0], "cannot evaluate"),
    ("'a'", [1.0], "not true or false"),
])
def test_evaluation_errors_are_condition_errors(expr, values, match):
    with pytest.raises(ConditionError, match=match):
        evaluate(expr, values)


@pytest.mark.parametrize("expr, match", [
    ("result <", "invalid syntax"),
    ("", "empty"),
    ("rsult < 1", "unknown name 'rsult'"),
    ("__import__('os').system('true')", "attribute access"),
    ("__import__('os')", "unknown name '__import__'"),
    ("result.__class__", "attribute access"),
    ("open('/etc/passwd')", "unknown name 'open'"),
])
def test_unsafe_or_broken_expressions_are_rejected_before_evaluation(expr, match):
    with pytest.raises(ConditionError, match=match):
        parse(expr)


def test_success_condition_alone_fails_when_false():
    assert judge_conditions({"successCondition": "result < 1"}, [0.5])[0] == SUCCESSFUL
    verdict, why = judge_conditions({"successCondition": "result < 1"}, [2.0])
    assert verdict == FAILED and "does not hold" in why


def test_failure_condition_alone_passes_when_false():
    assert judge_conditions({"failureCondition": "result > 1"}, [0.5])[0] == SUCCESSFUL
    assert judge_conditions({"failureCondition": "result > 1"}, [2.0])[0] == FAILED


def test_both_conditions_false_is_inconclusive():
    m = {"successCondition": "result < 1", "failureCondition": "result > 2"}
    assert judge_conditions(m, [0.5])[0] == SUCCESSFUL
    assert judge_conditions(m, [3.0])[0] == FAILED
    assert judge_conditions(m, [1.5])[0] == INCONCLUSIVE


def test_threshold_range_every_value_inclusive_bounds():
    m = {"thresholdRange": {"min": 0.9, "max": 1.0}}
    assert judge_conditions(m, [0.9, 1.0])[0] == SUCCESSFUL
    verdict, why = judge_conditions(m, [0.95, 1.2])
    assert verdict == FAILED and "1.2 outside thresholdRange [0.9, 1]" in why
    assert judge_conditions({"thresholdRange": {"max": 5}}, [-100.0])[0] == SUCCESSFUL


def test_threshold_and_condition_must_both_pass():
    m = {"successCondition": "result < 10", "thresholdRange": {"min": 1}}
    assert judge_conditions(m, [5.0])[0] == SUCCESSFUL
    assert judge_conditions(m, [0.5])[0] == FAILED
    assert judge_conditions(m, [50.0])[0] == FAILED


# ---------- conditions that would freeze the worker (issue 11, scenario 1) ----------

FREEZERS = [
    "4000000**4000000 > result",          # passes simpleeval's own power cap; ~26 s of GIL
    "3999999**3999999 > result",
    "(2**1000)**4000000 > result",
    "2**4000000 * 2**4000000 * 2**4000000 > result",
    "1 << 4000000 << 4000000 > result",
    "round(result) ** 4000000 > 1",
    "sum(2**4000 ** 1000 for v in result) > 1",
    "max((10**300)**(10**4) for v in result) > 1",
]


@pytest.mark.parametrize("expr", FREEZERS)
def test_huge_integer_arithmetic_is_rejected_or_bounded_in_time(expr):
    """No condition holds the worker for more than a second, whatever it computes."""
    import time
    t0 = time.monotonic()
    with pytest.raises(ConditionError, match="too large"):
        parse(expr)
        evaluate(expr, [3.0, 4.0]) if "for v" in expr else evaluate(expr, [3.0])
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("expr", ["4000000**4000000 > result", "2**4000000 * 2**4000000 > result",
                                  "1 << 4000000 > result", "result < 1" + "0" * 400])
def test_huge_constants_are_refused_when_the_spec_is_parsed(expr):
    with pytest.raises(ConditionError, match="too large.*2\\*\\*1024"):
        parse(expr)


@pytest.mark.parametrize("expr, values", [("result ** 2 < 10", [3.0]), ("2 ** 10 == 1024", [1.0]),
                                          ("len(result) * 2 ** 100 > 1", [1.0, 2.0]),
                                          ("round(result) ** 3 == 27", [3.0])])
def test_ordinary_arithmetic_still_works(expr, values):
    assert evaluate(expr, values) is True
