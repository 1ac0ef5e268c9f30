"""successCondition / failureCondition / thresholdRange: syntax, semantics, and safety."""

from __future__ import annotations

import pytest

from modelpilot.analysis.conditions import (FAILED, INCONCLUSIVE, SUCCESSFUL, ConditionError, evaluate,
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
