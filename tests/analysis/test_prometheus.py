"""Analysis against a real Prometheus (Debian package): backfilled history for exact answers, live
targets for the canary-versus-stable judge."""

from __future__ import annotations

import time

import pytest

from modelpilot.analysis import describe, step

from .conftest import Prom
from .targets import BACKFILL_SPAN, BACKFILL_STEP, NAMESPACE

pytestmark = pytest.mark.integration

ERROR_RATIO = ('sum(rate(mp_requests_total{namespace="{{namespace}}",revision="{{canaryRevision}}",code="500"}[2m]))\n'
               '/ sum(rate(mp_requests_total{namespace="{{namespace}}",revision="{{canaryRevision}}"}[2m]))')
SPEC = {"interval": "30s",
        "metrics": [{"name": "error-rate", "query": ERROR_RATIO, "successCondition": "result < 0.01"}]}


def ctx(canary: int, stable: int = 1) -> dict:
    return {"namespace": NAMESPACE, "name": "sentiment", "stableRevision": stable, "canaryRevision": canary}


def test_query_that_passes(prometheus: Prom):
    run = step(SPEC, None, time.time(), prometheus.at_end, ctx(canary=4))
    rec = run["latest"][0]
    assert run["phase"] == "Successful", describe(rec)
    assert rec["value"] == pytest.approx(0.0005, rel=0.01)
    assert 'revision="4"' in rec["query"] and "{{" not in rec["query"]


def test_query_that_fails_the_condition_says_what_it_returned(prometheus: Prom):
    run = step(SPEC, None, time.time(), prometheus.at_end, ctx(canary=2))
    assert run["phase"] == "Failed"
    rec = run["latest"][0]
    assert rec["value"] == pytest.approx(0.05, rel=0.01)
    line = describe(rec)
    assert line.startswith("error-rate Failed: value 0.05") and "successCondition `result < 0.01` does not hold" in line
    assert f'namespace="{NAMESPACE}",revision="2",code="500"' in line


def test_query_with_no_series_is_inconclusive(prometheus: Prom):
    run = step(SPEC, None, time.time(), prometheus.at_end, ctx(canary=9))
    assert run["phase"] == "Inconclusive"
    assert run["latest"][0]["message"] == "query returned no data (empty result)"


def test_revision_without_traffic_gives_nan_which_is_inconclusive(prometheus: Prom):
    run = step(SPEC, None, time.time(), prometheus.at_end, ctx(canary=3))
    assert run["phase"] == "Inconclusive"
    assert run["latest"][0]["value"] == "NaN"


def test_promql_error_is_an_error_measurement(prometheus: Prom):
    spec = {"metrics": [{"name": "typo", "query": "sum(rate(mp_requests_total[2m])", "successCondition": "result < 1"}]}
    run = step(spec, None, time.time(), prometheus.at_end, ctx(canary=2))
    rec = run["latest"][0]
    assert run["phase"] == "Running" and rec["verdict"] == "Error"
    assert rec["message"].startswith("bad_data:")


def test_range_query_returns_every_sample(prometheus: Prom):
    end = prometheus.backfill_end
    res = prometheus.client.query_range(f'mp_latency_seconds{{namespace="{NAMESPACE}",revision="1"}}',
                                        end - 300, end, BACKFILL_STEP)
    assert res.ok and res.result_type == "matrix" and res.series == 1
    assert len(res.values) == 300 // BACKFILL_STEP + 1


def _judge(canary_q: str, baseline_q: str, **judge) -> dict:
    return {"metrics": [{"name": "latency-vs-stable", "judge": {
        "canaryQuery": canary_q, "baselineQuery": baseline_q, "minSamples": 20, "confidence": 0.95,
        "direction": "increase", **judge}}]}


LATENCY = f'mp_latency_seconds{{namespace="{{{{namespace}}}}",revision="{{{{revision}}}}"}}[{BACKFILL_SPAN}s]'


def test_judge_fails_a_slower_canary_from_history(prometheus: Prom):
    run = step(_judge(LATENCY, LATENCY), None, time.time(), prometheus.at_end, ctx(canary=2))
    rec = run["latest"][0]
    assert run["phase"] == "Failed", describe(rec)
    assert rec["judge"]["canarySamples"] == rec["judge"]["baselineSamples"] == BACKFILL_SPAN // BACKFILL_STEP + 1
    assert rec["judge"]["medianRatio"] == pytest.approx(1.3, rel=0.1)


def test_judge_passes_a_canary_like_stable(prometheus: Prom):
    run = step(_judge(LATENCY, LATENCY), None, time.time(), prometheus.at_end, ctx(canary=4))
    assert run["phase"] == "Successful", describe(run["latest"][0])


def test_judge_with_too_short_a_window_is_inconclusive(prometheus: Prom):
    short = LATENCY.replace(f"[{BACKFILL_SPAN}s]", "[30s]")
    run = step(_judge(short, short), None, time.time(), prometheus.at_end, ctx(canary=2))
    assert run["phase"] == "Inconclusive"
    assert "too few samples" in run["latest"][0]["message"]


def test_judge_compares_live_canary_and_stable_targets(prometheus: Prom):
    live = 'mp_live_latency_seconds{namespace="{{namespace}}",revision="{{revision}}"}[30s]'
    spec = _judge(live, live, minSamples=10)
    counts = 'count_over_time(mp_live_latency_seconds{revision="%d"}[30s])'
    deadline = time.time() + 30
    while True:  # Prometheus scrapes each target twice a second: wait for ten samples of each
        have = [prometheus.client.query(counts % rev).values for rev in (1, 2)]
        if all(v and v[0] >= 10 for v in have):
            break
        assert time.time() < deadline, f"too few scrapes after 30 s: {have}"
        time.sleep(0.5)
    run = step(spec, None, time.time(), prometheus.client.query, ctx(canary=2))
    rec = run["latest"][0]
    assert run["phase"] == "Failed", describe(rec)
    assert rec["judge"]["canarySamples"] >= 10 and rec["judge"]["medianRatio"] == pytest.approx(1.5, rel=0.15)
    # The same live target on both sides: no difference.
    same = _judge(live.replace("{{revision}}", "1"), live.replace("{{revision}}", "1"), minSamples=10)
    assert step(same, None, time.time(), prometheus.client.query, ctx(canary=2))["phase"] == "Successful"


# ---------- bounded responses (issue 11, scenario 8) ----------

def test_a_response_over_the_byte_cap_is_an_error_not_a_parse(prometheus: Prom):
    from modelpilot.analysis import PrometheusClient
    full = prometheus.client.query("up")
    assert full.ok and full.series >= 2
    capped = PrometheusClient(prometheus.url, timeout=5, max_bytes=100).query("up")
    assert not capped.ok and "more than 100 bytes" in capped.error and "prometheus.maxResponseBytes" in capped.error


def test_a_response_over_the_series_cap_is_an_error_measurement(prometheus: Prom):
    from modelpilot.analysis import PrometheusClient
    client = PrometheusClient(prometheus.url, timeout=5, max_series=1)
    res = client.query("up")
    assert not res.ok and "more than 1" in res.error and "prometheus.maxSeries" in res.error
    spec = {"metrics": [{"name": "up", "query": "up", "successCondition": "all(v == 1 for v in result)"}]}
    run = step(spec, None, time.time(), client.query, ctx(canary=2))
    assert run["phase"] == "Running" and run["latest"][0]["verdict"] == "Error"
    assert "prometheus.maxSeries" in run["latest"][0]["message"]
    assert len(PrometheusClient(prometheus.url, timeout=5, max_series=1).query("sum(up)").values) == 1
