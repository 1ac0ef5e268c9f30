"""Every transition of the analysis run state machine, with an injected query function."""

from __future__ import annotations

import json
import math
import random

import pytest

from modelpilot.analysis import QueryResult, describe, new_measurements, step, validate
from modelpilot.analysis.run import parse_duration, parse_time, rfc3339

pytestmark = pytest.mark.unit
T0 = 1_790_000_000.0
CTX = {"namespace": "ml", "name": "sentiment", "stableRevision": 1, "canaryRevision": 2}
ERR_Q = 'sum(rate(errors{namespace="{{namespace}}",revision="{{canaryRevision}}"}[1m]))'


def vec(*values: float) -> QueryResult:
    return QueryResult(tuple(values), "vector", len(values))


NAN = vec(math.nan)
EMPTY = vec()
DOWN = QueryResult.failure("cannot reach Prometheus at http://127.0.0.1:9: Connection refused")


class Script:
    """A query function that answers from a script, one result per call, and records what it was sent."""

    def __init__(self, *results: QueryResult | float):
        self.results = [r if isinstance(r, QueryResult) else vec(r) for r in results]
        self.sent: list[str] = []

    def __call__(self, promql: str) -> QueryResult:
        self.sent.append(promql)
        return self.results.pop(0)


def analysis(**kw) -> dict:
    metric = {"name": "error-rate", "query": ERR_Q, "successCondition": "result < 0.01"}
    metric.update(kw.pop("metric", {}))
    return {"interval": "30s", **kw, "metrics": [metric]}


def run_all(spec, q, times, ctx=CTX, run=None):
    for t in times:
        run = step(spec, run, T0 + t, q, ctx)
    return run


def test_blocking_analysis_without_count_takes_one_measurement():
    q = Script(0.004)
    run = step(analysis(), None, T0, q, CTX)
    assert run["phase"] == "Successful"
    assert q.sent == ['sum(rate(errors{namespace="ml",revision="2"}[1m]))']
    assert run["metrics"][0] == {"name": "error-rate", "phase": "Successful", "measurements": 1, "successful": 1,
                                 "failures": 0, "inconclusive": 0, "errors": 0, "consecutiveErrors": 0,
                                 "message": "1 of 1 measurements taken, 0 failed"}
    rec = run["latest"][0]
    assert rec == {"seq": 1, "metric": "error-rate", "query": q.sent[0], "value": 0.004, "verdict": "Successful",
                   "message": "successCondition `result < 0.01` holds", "at": rfc3339(T0)}
    assert run["startedAt"] == run["finishedAt"] == rfc3339(T0) and "nextMeasurementAt" not in run


def test_initial_delay_waits_before_the_first_measurement():
    q = Script(0.004)
    spec = analysis(initialDelay="1m")
    run = step(spec, None, T0, q, CTX)
    assert run["phase"] == "Running" and run["nextMeasurementAt"] == rfc3339(T0 + 60)
    assert q.sent == [] and run["latest"] == []
    assert step(spec, run, T0 + 59.9, q, CTX) is run  # not due: nothing changes, nothing is written
    run = step(spec, run, T0 + 60, q, CTX)
    assert run["phase"] == "Successful" and len(q.sent) == 1


def test_interval_timing_and_no_catch_up_burst():
    q = Script(0.001, 0.001, 0.001)
    spec = analysis(count=3)
    run = step(spec, None, T0, q, CTX)
    assert run["phase"] == "Running" and run["nextMeasurementAt"] == rfc3339(T0 + 30)
    same = step(spec, run, T0 + 29, q, CTX)
    assert same is run and len(q.sent) == 1
    run = step(spec, run, T0 + 30, q, CTX)
    assert run["metrics"][0]["measurements"] == 2 and run["nextMeasurementAt"] == rfc3339(T0 + 60)
    # The operator was down for minutes: one measurement now, the next one a full interval later.
    run = step(spec, run, T0 + 500, q, CTX)
    assert run["phase"] == "Successful" and len(q.sent) == 3


def test_count_is_reached_by_decisive_measurements_only():
    q = Script(NAN, 0.001, EMPTY, 0.001)
    spec = analysis(count=2, inconclusiveLimit=2)
    phases = []
    run = None
    for t in (0, 30, 60, 90):
        run = step(spec, run, T0 + t, q, CTX)
        phases.append(run["phase"])
    assert phases == ["Running", "Running", "Running", "Successful"]
    m = run["metrics"][0]
    assert (m["measurements"], m["successful"], m["inconclusive"]) == (4, 2, 2)


def test_failure_at_failure_limit():
    q = Script(0.5, 0.001, 0.7)
    spec = analysis(count=5, failureLimit=1)
    run = step(spec, None, T0, q, CTX)
    assert run["phase"] == "Running" and run["metrics"][0]["failures"] == 1
    run = step(spec, run, T0 + 30, q, CTX)
    assert run["phase"] == "Running"
    run = step(spec, run, T0 + 60, q, CTX)
    assert run["phase"] == "Failed"
    assert run["metrics"][0]["message"] == "2 failed measurements, failureLimit 1"
    # The run's message says which query returned what.
    assert "value 0.7" in run["message"] and 'revision="2"' in run["message"]
    assert run["finishedAt"] == rfc3339(T0 + 60) and "nextMeasurementAt" not in run


def test_default_failure_limit_fails_on_the_first_failure():
    run = step(analysis(count=3), None, T0, Script(0.02), CTX)
    assert run["phase"] == "Failed" and run["latest"][0]["verdict"] == "Failed"


def test_failures_within_the_limit_still_complete():
    run = run_all(analysis(count=2, failureLimit=1), Script(0.5, 0.001), (0, 30))
    assert run["phase"] == "Successful" and run["metrics"][0]["failures"] == 1


def test_consecutive_errors_fail_the_run_and_a_success_resets_them():
    spec = analysis(count=2, consecutiveErrorLimit=2)
    q = Script(DOWN, DOWN, 0.001, DOWN, DOWN, DOWN)
    run = run_all(spec, q, (0, 30, 60))
    m = run["metrics"][0]
    assert run["phase"] == "Running" and (m["errors"], m["consecutiveErrors"], m["successful"]) == (2, 0, 1)
    run = run_all(spec, q, (90, 120), run=run)
    assert run["phase"] == "Running" and run["metrics"][0]["consecutiveErrors"] == 2
    run = step(spec, run, T0 + 150, q, CTX)
    assert run["phase"] == "Failed"
    assert run["metrics"][0]["message"] == "3 consecutive errors, consecutiveErrorLimit 2"
    assert run["latest"][-1]["verdict"] == "Error" and "Connection refused" in run["latest"][-1]["message"]
    assert describe(run["latest"][-1]) == (
        "error-rate Error: cannot reach Prometheus at http://127.0.0.1:9: Connection refused; "
        'query: sum(rate(errors{namespace="ml",revision="2"}[1m]))')


def test_errors_do_not_count_towards_count():
    run = run_all(analysis(count=1), Script(DOWN, 0.001), (0, 30))
    assert run["phase"] == "Successful" and run["metrics"][0]["measurements"] == 2


def test_default_consecutive_error_limit_is_four():
    q = Script(*[DOWN] * 5)
    run = run_all(analysis(), q, (0, 30, 60, 90))
    assert run["phase"] == "Running"
    run = step(analysis(), run, T0 + 120, q, CTX)
    assert run["phase"] == "Failed"


@pytest.mark.parametrize("result, why", [(NAN, "NaN"), (EMPTY, "no data")])
def test_nan_or_empty_is_inconclusive_and_pauses(result, why):
    run = step(analysis(count=3), None, T0, Script(result), CTX)
    assert run["phase"] == "Inconclusive"
    assert run["latest"][0]["verdict"] == "Inconclusive" and why in run["latest"][0]["message"]
    assert run["metrics"][0]["message"] == "1 inconclusive measurements, inconclusiveLimit 0"


def test_inconclusive_limit_tolerates_then_pauses():
    spec = analysis(count=3, inconclusiveLimit=1)
    q = Script(NAN, 0.001, NAN)
    run = run_all(spec, q, (0, 30))
    assert run["phase"] == "Running"
    run = step(spec, run, T0 + 60, q, CTX)
    assert run["phase"] == "Inconclusive"


def test_nan_never_passes_a_failure_condition():
    # Argo Rollouts: NaN > 0.05 is false, so a failureCondition-only metric passes on NaN. Not here.
    spec = analysis(metric={"successCondition": None, "failureCondition": "result > 0.05"})
    run = step(spec, None, T0, Script(NAN), CTX)
    assert run["phase"] == "Inconclusive"


def test_nan_in_one_series_of_a_vector_is_inconclusive():
    spec = analysis(metric={"successCondition": "all(v < 1 for v in result)"})
    run = step(spec, None, T0, Script(vec(0.1, math.nan)), CTX)
    assert run["phase"] == "Inconclusive"
    json.dumps(run, allow_nan=False)  # NaN is stored as "NaN": status stays valid JSON
    assert run["latest"][0]["value"] == [0.1, "NaN"]


def test_both_conditions_false_is_an_inconclusive_measurement():
    spec = analysis(metric={"failureCondition": "result > 0.05"})
    run = step(spec, None, T0, Script(0.02), CTX)
    assert run["phase"] == "Inconclusive"
    assert "neither successCondition" in run["latest"][0]["message"]


def test_threshold_range():
    spec = analysis(metric={"successCondition": None, "thresholdRange": {"min": 0.95}})
    assert step(spec, None, T0, Script(0.99), CTX)["phase"] == "Successful"
    assert step(spec, None, T0, Script(0.90), CTX)["phase"] == "Failed"


def test_range_vector_for_a_condition_is_an_error():
    run = step(analysis(), None, T0, Script(QueryResult((1.0, 2.0), "matrix", 1)), CTX)
    assert run["phase"] == "Running" and run["latest"][0]["verdict"] == "Error"
    assert "range vector" in run["latest"][0]["message"]


def test_condition_that_cannot_be_evaluated_is_an_error():
    spec = analysis(metric={"successCondition": "result[1] < 1"})
    run = step(spec, None, T0, Script(0.5), CTX)
    assert run["latest"][0]["verdict"] == "Error" and "result[1] does not exist" in run["latest"][0]["message"]


def test_query_function_that_raises_is_an_error_not_a_crash():
    def broken(_: str) -> QueryResult:
        raise TimeoutError("timed out")
    run = step(analysis(), None, T0, broken, CTX)
    assert run["latest"][0]["verdict"] == "Error" and "TimeoutError: timed out" in run["latest"][0]["message"]


def test_unknown_placeholder_fails_at_once_without_querying():
    q = Script()
    run = step(analysis(metric={"query": "up{pod='{{podName}}'}"}), None, T0, q, CTX)
    assert run["phase"] == "Failed" and q.sent == []
    assert "metrics[error-rate].query: unknown placeholder {{podName}}" in run["message"]


def test_invalid_condition_fails_at_once():
    run = step(analysis(metric={"successCondition": "result <"}), None, T0, Script(), CTX)
    assert run["phase"] == "Failed" and "metrics[error-rate].successCondition: invalid syntax" in run["message"]


def test_invalid_interval_fails_the_run():
    run = step(analysis(interval="soon"), None, T0, Script(), CTX)
    assert run["phase"] == "Failed" and "analysis.interval: 'soon' is not a duration" in run["message"]


def test_background_analysis_runs_until_stopped():
    spec = analysis()
    q = Script(*[0.001] * 5)
    run = run_all(spec, q, (0, 30, 60, 90, 120), ctx={**CTX, "background": True})
    assert run["phase"] == "Running" and run["metrics"][0]["successful"] == 5
    assert run["nextMeasurementAt"] == rfc3339(T0 + 150)


def test_a_finished_run_never_changes():
    run = step(analysis(), None, T0, Script(0.001), CTX)
    assert step(analysis(), run, T0 + 3600, Script(), CTX) is run


def test_one_failing_metric_fails_the_run_at_once_and_stops_the_others():
    spec = analysis(count=3)
    spec["metrics"].append({"name": "latency", "query": "lat", "thresholdRange": {"max": 0.5}})
    q = Script(0.001, 0.2, 0.5, 0.2)
    run = run_all(spec, q, (0, 30))
    assert run["phase"] == "Failed" and len(q.sent) == 4
    assert [m["phase"] for m in run["metrics"]] == ["Failed", "Running"]
    assert run["message"].startswith("error-rate: 1 failed measurements, failureLimit 0; last: error-rate Failed")


def test_metrics_added_to_the_spec_mid_run_get_their_own_counts():
    spec = analysis(count=2)
    q = Script(0.001, 0.001, 0.3)
    run = step(spec, None, T0, q, CTX)
    spec2 = {**spec, "metrics": spec["metrics"] + [{"name": "latency", "query": "lat", "thresholdRange": {"max": 0.5}}]}
    run = step(spec2, run, T0 + 30, q, CTX)
    assert [(m["name"], m["phase"], m["successful"]) for m in run["metrics"]] == [
        ("error-rate", "Successful", 2), ("latency", "Running", 1)]


def test_state_survives_a_json_round_trip_like_a_restart():
    spec = analysis(count=3, failureLimit=1)
    a, b = Script(0.001, 0.5, 0.5), Script(0.001, 0.5, 0.5)
    direct = run_all(spec, a, (0, 30, 60))
    run = None
    for t in (0, 30, 60):
        run = json.loads(json.dumps(step(spec, run, T0 + t, b, CTX), allow_nan=False))
    assert run == direct and run["phase"] == "Failed"


def test_latest_is_bounded_and_new_measurements_are_found_by_seq():
    spec = analysis()
    q = Script(*[0.001] * 12)
    run = None
    for t in range(12):
        before = run
        run = step(spec, run, T0 + 30 * t, q, {**CTX, "background": True})
        new = new_measurements(before, run)
        assert [m["seq"] for m in new] == [t + 1]
    assert len(run["latest"]) == 10 and run["latest"][-1]["seq"] == 12 and run["taken"] == 12
    assert new_measurements(run, run) == []


def _judge_spec(**judge) -> dict:
    return {"metrics": [{"name": "latency-vs-stable", "judge": {
        "canaryQuery": 'lat{revision="{{revision}}"}[5m]', "baselineQuery": 'lat{revision="{{revision}}"}[5m]',
        "minSamples": 20, "confidence": 0.95, "direction": "increase", **judge}}]}


def _samples(mu: float, n: int, seed: int) -> QueryResult:
    rng = random.Random(seed)
    return QueryResult(tuple(rng.gauss(mu, 0.01) for _ in range(n)), "matrix", 1)


def test_judge_metric_fails_a_slower_canary_and_records_the_statistics():
    q = Script(_samples(0.15, 40, 1), _samples(0.10, 40, 2))
    run = step(_judge_spec(), None, T0, q, CTX)
    assert q.sent == ['lat{revision="2"}[5m]', 'lat{revision="1"}[5m]']
    assert run["phase"] == "Failed"
    rec = run["latest"][0]
    assert rec["query"] == q.sent[0] and rec["baselineQuery"] == q.sent[1]
    j = rec["judge"]
    assert j["canarySamples"] == j["baselineSamples"] == 40 and j["pValue"] < 0.05 and rec["value"] == j["pValue"]
    assert j["medianRatio"] == pytest.approx(1.5, rel=0.05) and j["cles"] > 0.9 and j["direction"] == "increase"
    line = describe(rec)
    assert line.startswith("latency-vs-stable Failed: canary is significantly higher")
    assert 'canary query: lat{revision="2"}[5m]' in line and 'baseline query: lat{revision="1"}[5m]' in line


def test_judge_metric_with_too_few_samples_is_inconclusive():
    run = step(_judge_spec(), None, T0, Script(_samples(0.15, 5, 1), _samples(0.10, 40, 2)), CTX)
    assert run["phase"] == "Inconclusive" and "too few samples: canary 5" in run["latest"][0]["message"]


def test_judge_metric_query_error_is_an_error():
    run = step(_judge_spec(), None, T0, Script(_samples(0.1, 40, 1), DOWN), CTX)
    assert run["latest"][0]["verdict"] == "Error" and run["latest"][0]["message"].startswith("baseline query:")


def test_validate_names_every_problem():
    spec = {"interval": "1x", "metrics": [
        {"name": "a", "query": "x{{foo}}", "successCondition": "result <"},
        {"name": "b", "query": "up"},
        {"name": "c", "judge": {"canaryQuery": "{{canaryService}}", "baselineQuery": "x", "direction": "up"}},
        {"name": "d", "judge": {"type": "kolmogorovSmirnov", "canaryQuery": "x", "baselineQuery": "x"}},
    ]}
    problems = validate(spec, {"namespace": "ml", "name": "s", "stableRevision": 1})
    assert problems == [
        "analysis.interval: '1x' is not a duration like 30s, 1m30s or 500ms",
        "metrics[a].query: unknown placeholder {{foo}}; known: {{namespace}}, {{name}}, {{service}}, "
        "{{stableRevision}}, {{canaryRevision}}, {{stableService}}, {{canaryService}}, {{revision}}",
        "metrics[a].successCondition: invalid syntax in 'result <': invalid syntax",
        "metrics[b].query: needs successCondition, failureCondition or thresholdRange",
        "metrics[c].judge.canaryQuery: {{canaryService}} cannot be filled in here (the rollout has no canaryService)",
        "metrics[c].judge.direction: must be increase, decrease or either",
        "metrics[d].judge.type: 'kolmogorovSmirnov' is not a test this operator has; use mannWhitney",
    ]
    assert validate(analysis(), CTX) == []


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1h1m1s", 3661)])
def test_durations(text, seconds):
    assert parse_duration(text, "f") == seconds


def test_times_round_trip():
    assert parse_time(rfc3339(T0)) == T0 and parse_time(rfc3339(T0 + 0.25)) == T0 + 0.25
    assert rfc3339(T0 + 0.25).endswith(".250Z")


@pytest.mark.parametrize("interval", ["0s", "0ms", "999ms"])
def test_an_interval_under_a_second_is_refused_naming_the_field(interval):
    # 0s meant a reconcile, a Prometheus query and a status write every 50 ms.
    spec = {"interval": interval, "metrics": [{"name": "err", "query": "up", "successCondition": "result < 1"}]}
    assert any(p.startswith("analysis.interval:") and "1s" in p for p in validate(spec))
    q = Script()
    run = step(spec, None, T0, q, CTX)
    assert run["phase"] == "Failed" and "analysis.interval" in run["message"] and q.sent == []


def test_a_measurement_without_a_value_holds_no_null():
    # The apiserver drops nulls from status: a record with "value": null never equals what it stores.
    run = step({"metrics": [{"name": "err", "query": "up", "successCondition": "result < 1"}]}, None, T0, Script(DOWN), CTX)
    rec = run["latest"][-1]
    assert rec["verdict"] == "Error" and "value" not in rec
    assert "null" not in json.dumps(run)
