"""The shadow comparator: parsing of the three runtimes' answers, the comparison, the token bucket,
and the HTTP service end to end on loopback (two small aiohttp backends standing in for the two
revisions, so that errors, timeouts and limits can be provoked; the real TorchServe pair is in
tests/runtimes/test_comparator_torchserve.py)."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from modelpilot.comparator.compare import FormatError, Tensor, compare_answers, parse_answer, tensor_from_nested
from modelpilot.comparator.metrics import ComparatorMetrics
from modelpilot.comparator.server import Comparator, Settings, TokenBucket, build_apps

pytestmark = pytest.mark.unit


def test_v2_answer_is_parsed_with_its_shape() -> None:
    body = {"model_name": "m", "outputs": [{"name": "logits", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}
    t = parse_answer("v2", body)["logits"]
    assert t == Tensor((2, 3), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
    assert t.row(1) == (4.0, 5.0, 6.0)


def test_v2_answer_whose_data_does_not_fill_its_shape_is_refused() -> None:
    with pytest.raises(FormatError, match=r"outputs\[0\]: shape \[2, 3\] holds 6 values, data has 5"):
        parse_answer("v2", {"outputs": [{"name": "y", "shape": [2, 3], "data": [1, 2, 3, 4, 5]}]})


def test_torchserve_named_outputs_and_a_plain_answer() -> None:
    named = parse_answer("torchserve", {"outputs": {"logits": [[0.1, 0.9]], "score": [1.0]}})
    assert named == {"logits": Tensor((1, 2), (0.1, 0.9)), "score": Tensor((1,), (1.0,))}
    assert parse_answer("torchserve", [[1, 2], [3, 4]]) == {"output": Tensor((2, 2), (1.0, 2.0, 3.0, 4.0))}


def test_tfserving_row_and_columnar_formats_give_the_same_tensors() -> None:
    rows = parse_answer("tfserving", {"predictions": [{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}]})
    cols = parse_answer("tfserving", {"outputs": {"a": [[1, 2], [4, 5]], "b": [3, 6]}})
    assert rows == cols == {"a": Tensor((2, 2), (1.0, 2.0, 4.0, 5.0)), "b": Tensor((2,), (3.0, 6.0))}
    assert parse_answer("tfserving", {"predictions": [[0.5]]}) == {"output": Tensor((1, 1), (0.5,))}


@pytest.mark.parametrize("bad, match", [([[1, 2], [3]], "ragged"), ([["a"]], "expected a number, got str"),
                                        ([True], "expected a number, got bool")])
def test_nested_lists_that_are_not_tensors_are_refused(bad, match) -> None:
    with pytest.raises(FormatError, match=match):
        tensor_from_nested(bad, "x")


def test_unknown_protocol_names_the_choices() -> None:
    with pytest.raises(ValueError, match="use one of v2, torchserve, tfserving"):
        parse_answer("grpc", {})


def test_identical_answers_agree_with_zero_difference() -> None:
    t = {"logits": Tensor((2, 3), (0.1, 0.7, 0.2, 0.5, 0.3, 0.2))}
    c = compare_answers(t, t)
    assert (c.rows, c.agreed_rows, c.values, c.max_abs_diff, c.mean_abs_diff, c.mismatch) == (2, 2, 6, 0.0, 0.0, "")


def test_top1_decides_a_classifier_row_and_the_differences_are_exact() -> None:
    stable = {"logits": Tensor((2, 3), (0.1, 0.7, 0.2, 0.5, 0.3, 0.2))}
    shadow = {"logits": Tensor((2, 3), (0.1, 0.6, 0.2, 0.2, 0.6, 0.2))}  # row 0 same top-1, row 1 flips
    c = compare_answers(stable, shadow)
    assert (c.rows, c.agreed_rows, c.values) == (2, 1, 6)
    assert math.isclose(c.max_abs_diff, 0.3) and math.isclose(c.sum_abs_diff, 0.1 + 0.3 + 0.3)


def test_single_value_rows_agree_within_tolerance_only() -> None:
    stable = {"score": Tensor((3,), (1.0, 100.0, 5.0))}
    shadow = {"score": Tensor((3,), (1.0005, 100.05, 5.1))}
    c = compare_answers(stable, shadow, atol=1e-3, rtol=1e-3)
    # 0.0005 <= 0.001+0.001; 0.05 <= 0.001+0.1; 0.1 > 0.001+0.005
    assert (c.rows, c.agreed_rows) == (3, 2)


def test_with_a_classifier_output_agreement_is_top1_and_other_outputs_only_count_in_the_differences() -> None:
    stable = {"logits": Tensor((2, 2), (0.9, 0.1, 0.9, 0.1)), "score": Tensor((2,), (1.0, 1.0))}
    shadow = {"logits": Tensor((2, 2), (0.9, 0.1, 0.9, 0.1)), "score": Tensor((2,), (1.0, 2.0))}
    c = compare_answers(stable, shadow)
    assert (c.agreed_rows, c.max_abs_diff, c.values) == (2, 1.0, 6)


def test_a_row_agrees_only_when_every_classifier_output_agrees() -> None:
    stable = {"a": Tensor((2, 2), (0.9, 0.1, 0.9, 0.1)), "b": Tensor((2, 2), (0.9, 0.1, 0.9, 0.1))}
    shadow = {"a": Tensor((2, 2), (0.9, 0.1, 0.9, 0.1)), "b": Tensor((2, 2), (0.9, 0.1, 0.1, 0.9))}
    assert compare_answers(stable, shadow).agreed_rows == 1


@pytest.mark.parametrize("shadow, match", [
    ({"other": Tensor((1, 2), (0.0, 1.0))}, r"outputs differ: stable has \['y'\], shadow has \['other'\]"),
    ({"y": Tensor((2, 1), (0.0, 1.0))}, r"output y: stable shape \[1, 2\], shadow shape \[2, 1\]"),
])
def test_a_structural_difference_is_a_mismatch_with_no_agreeing_row(shadow, match) -> None:
    c = compare_answers({"y": Tensor((1, 2), (0.0, 1.0))}, shadow)
    assert c.agreed_rows == 0 and c.rows == 1 and c.values == 0
    assert __import__("re").fullmatch(match, c.mismatch)


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    b = TokenBucket(rate=2.0, burst=2.0, clock=lambda: now[0])
    assert [b.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.49
    assert b.take() is False
    now[0] = 0.5
    assert b.take() is True


# ---------- the HTTP service ----------

def _settings(**kw) -> Settings:
    base = dict(stable_url="", shadow_url="", protocol="torchserve", namespace="ml", name="ranker",
                stable_revision="1", shadow_revision="2", rate=1000.0)
    return Settings(**{**base, **kw})


SEEN = web.AppKey("seen", list)


def _backend(answer, status: int = 200, delay: float = 0.0) -> web.Application:
    app = web.Application()
    seen: list[tuple[str, str, bytes, str]] = []
    app[SEEN] = seen

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, await request.read(), request.headers.get("Content-Type", "")))
        await asyncio.sleep(delay)
        return web.json_response(answer, status=status)

    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _drive(settings: Settings, stable: web.Application, shadow: web.Application, n: int, rng=None):
    async with TestServer(stable) as s1, TestServer(shadow) as s2:
        settings.stable_url, settings.shadow_url = str(s1.make_url("")), str(s2.make_url(""))
        cmp = Comparator(settings, ComparatorMetrics(settings), rng=rng)
        mirror, admin = build_apps(cmp)
        async with TestClient(TestServer(mirror)) as client, TestClient(TestServer(admin)) as adm:
            answers = []
            for i in range(n):
                r = await client.post(f"/predictions/ranker?x={i}", data=json.dumps({"inputs": [[i]]}),
                                      headers={"Content-Type": "application/json"})
                answers.append((r.status, await r.json() if r.status == 200 else None))
            metrics = await (await adm.get("/metrics")).text()
            latest = await (await adm.get("/comparison")).json()
        return answers, metrics, latest, stable[SEEN], shadow[SEEN]


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in the metrics")


def test_service_forwards_the_request_to_both_and_publishes_the_comparison() -> None:
    stable = _backend({"outputs": {"logits": [[0.2, 0.8]]}})
    shadow = _backend({"outputs": {"logits": [[0.3, 0.7]]}})
    answers, metrics, latest, seen_a, seen_b = asyncio.run(_drive(_settings(), stable, shadow, 3))
    assert [a[0] for a in answers] == [200, 200, 200]
    assert answers[0][1]["outcome"] == "compared" and answers[0][1]["agreedRows"] == 1
    assert math.isclose(answers[0][1]["maxAbsDiff"], 0.1)
    # Same method, path, query, body and content type on both sides.
    assert seen_a == seen_b and seen_a[2] == ("POST", "/predictions/ranker?x=2", b'{"inputs": [[2]]}', "application/json")
    ids = dict(namespace="ml", model_deployment="ranker", stable_revision="1", shadow_revision="2")
    assert _metric(metrics, "modelpilot_shadow_requests_compared_total", **ids) == 3
    assert _metric(metrics, "modelpilot_shadow_agreement_ratio", **ids) == 1.0
    assert math.isclose(_metric(metrics, "modelpilot_shadow_abs_difference_max", **ids), 0.1)
    assert math.isclose(_metric(metrics, "modelpilot_shadow_abs_difference_mean", **ids), 0.1)
    assert _metric(metrics, "modelpilot_shadow_error_ratio", **ids) == 0.0
    assert _metric(metrics, "modelpilot_shadow_latency_ratio", **ids) > 0
    assert _metric(metrics, "modelpilot_shadow_latency_seconds_count", side="shadow", **ids) == 3
    assert latest["summary"]["requestsCompared"] == 3 and latest["latest"]["outcome"] == "compared"


def test_shadow_errors_and_timeouts_count_as_shadow_errors_not_comparisons() -> None:
    stable = _backend({"outputs": {"y": [1.0]}})
    answers, metrics, _, _, _ = asyncio.run(_drive(_settings(), stable, _backend({"error": "boom"}, status=500), 2))
    assert answers[0][1]["outcome"] == "shadow_error" and "HTTP 500" in answers[0][1]["error"]
    assert _metric(metrics, "modelpilot_shadow_error_ratio") == 1.0
    assert _metric(metrics, "modelpilot_shadow_mirrored_requests_total", outcome="shadow_error") == 2
    slow = _backend({"outputs": {"y": [1.0]}}, delay=1.0)
    answers, metrics, _, _, _ = asyncio.run(_drive(_settings(timeout=0.2), _backend({"outputs": {"y": [1.0]}}), slow, 1))
    assert answers[0][1] == {"outcome": "shadow_error", "error": "no answer within 0.2s", "latencyRatio": answers[0][1]["latencyRatio"]}


def test_a_failing_stable_is_not_blamed_on_the_shadow() -> None:
    answers, metrics, _, _, _ = asyncio.run(_drive(_settings(), _backend({}, status=503), _backend({"outputs": {"y": [1.0]}}), 1))
    assert answers[0][1]["outcome"] == "stable_error"
    assert _metric(metrics, "modelpilot_shadow_mirrored_requests_total", outcome="stable_error") == 1
    assert "modelpilot_shadow_error_ratio{" not in metrics or _metric(metrics, "modelpilot_shadow_error_ratio") == 0.0


def test_sampling_and_the_rate_limit_skip_requests_without_calling_either_side() -> None:
    answer = {"outputs": {"y": [1.0]}}
    answers, metrics, _, seen_a, seen_b = asyncio.run(
        _drive(_settings(sample=0.5), _backend(answer), _backend(answer), 40, rng=random.Random(7)))
    compared = sum(1 for s, _ in answers if s == 200)
    assert [s for s, _ in answers].count(204) == 40 - compared and 10 < compared < 30
    assert len(seen_a) == len(seen_b) == compared
    assert _metric(metrics, "modelpilot_shadow_mirrored_requests_total", outcome="sampled_out") == 40 - compared
    answers, metrics, _, seen_a, _ = asyncio.run(_drive(_settings(rate=2.0), _backend(answer), _backend(answer), 10))
    assert len(seen_a) == 2  # the burst; 10 requests arrive well within a second
    assert _metric(metrics, "modelpilot_shadow_mirrored_requests_total", outcome="rate_limited") == 8
