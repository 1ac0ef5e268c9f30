"""The analysis run: a pure state machine over one `analysis` block of a ModelDeployment.

    run = step(spec, run, now, query, ctx)

`spec` is the analysis block as written in the CRD (camelCase), `run` the previous state (None to
start), `now` unix seconds, `query` a function PromQL -> QueryResult (for example
`PrometheusClient(url).query`), `ctx` the rollout context for templating. The returned run is
JSON-able and belongs in `status.analysis`; a restarted operator passes it back and the run goes on
where it stood. `step` takes measurements only when `nextMeasurementAt` has come, and returns an
equal dict otherwise, so an early or repeated reconcile writes nothing.

Counting (per metric; Argo Rollouts' rules, sharpened where noted in docs/analysis.md):
- a measurement is Successful, Failed, Inconclusive (NaN, no data, too few samples, or both
  conditions false), or Error (the query could not be answered);
- `count` is reached by decisive measurements only (Successful + Failed): an inconclusive one never
  moves a run towards success;
- failures > failureLimit -> Failed; inconclusive > inconclusiveLimit -> Inconclusive (the rollout
  pauses for a human); consecutive errors > consecutiveErrorLimit -> Failed; any other verdict
  resets the consecutive errors;
- a spec error (unknown placeholder, a condition that does not parse) fails the metric at once.
The run is Failed as soon as one metric fails, Inconclusive as soon as one is inconclusive (and
none failed), and Successful once every metric reached `count`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from .. import clock
from ..conditions import cap_message
from . import templating
from .expressions import FAILED, INCONCLUSIVE, SUCCESSFUL, ConditionError, judge_conditions, parse
from .judge import DEFAULT_CONFIDENCE, DEFAULT_MIN_SAMPLES, EITHER, json_number, mann_whitney
from .prometheus import QueryResult

RUNNING: Final = "Running"
ERROR: Final = "Error"  # a measurement verdict only; a run or metric that errors too often is Failed
TERMINAL: Final = frozenset({SUCCESSFUL, FAILED, INCONCLUSIVE})

DEFAULT_INTERVAL: Final = "30s"
DEFAULT_CONSECUTIVE_ERROR_LIMIT: Final = 4
#: The shortest interval between measurements (the CRD's rule says the same).
MIN_INTERVAL_SECONDS: Final = 1.0
#: How many of the latest measurements the run keeps (all metrics together, newest last).
MAX_LATEST: Final = 10
#: How many values of a multi-series result a measurement record keeps.
MAX_VALUES: Final = 10

QueryFn = Callable[[str], QueryResult]

class AnalysisSpecError(ValueError):
    """The analysis block cannot be run as written; the message names the field."""


def parse_duration(text: str, field: str) -> float:
    """Seconds in a duration such as `30s`, `1m30s`, `500ms` (the CRD's pattern)."""
    try:
        return clock.parse_duration(text)
    except ValueError as e:
        raise AnalysisSpecError(f"{field}: {e}") from None


rfc3339 = clock.to_rfc3339
parse_time = clock.to_epoch


def _limits(spec: Mapping[str, Any], ctx: Mapping[str, Any]) -> dict[str, Any]:
    count = spec.get("count")
    if count is None and not ctx.get("background"):
        count = 1
    interval = parse_duration(spec.get("interval") or DEFAULT_INTERVAL, "analysis.interval")
    if interval < MIN_INTERVAL_SECONDS:
        # The CRD refuses it too; this guards objects stored before that rule, and direct callers.
        raise AnalysisSpecError(f"analysis.interval: {spec.get('interval')!r} is shorter than {MIN_INTERVAL_SECONDS:g}s "
                                "(each measurement is a Prometheus query and a status write): use e.g. 30s")
    return {
        "interval": interval,
        "initialDelay": (parse_duration(spec["initialDelay"], "analysis.initialDelay")
                         if spec.get("initialDelay") else 0.0),
        "count": count,
        "failureLimit": int(spec.get("failureLimit") or 0),
        "consecutiveErrorLimit": int(spec["consecutiveErrorLimit"] if spec.get("consecutiveErrorLimit") is not None
                                     else DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        "inconclusiveLimit": int(spec.get("inconclusiveLimit") or 0),
    }


def validate(spec: Mapping[str, Any], ctx: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason this analysis block cannot run, each naming its field (empty: fine).

    With `ctx`, placeholders the context cannot fill (say `{{stableRevision}}` with no stable
    revision) are reported too. The operator can call this when it reads the spec, to report
    SpecValid=False before a rollout starts; `step` fails the run with the same messages.
    """
    problems: list[str] = []
    try:
        _limits(spec, ctx or {})
    except AnalysisSpecError as e:
        problems.append(str(e))
    metrics = spec.get("metrics") or []
    if not metrics:
        problems.append("analysis.metrics: at least one metric is needed")
    for metric in metrics:
        problems += _metric_problems(metric, ctx)
    return problems


def _metric_problems(metric: Mapping[str, Any], ctx: Mapping[str, Any] | None) -> list[str]:
    name = metric.get("name", "?")
    problems: list[str] = []
    for field, side in _queries(metric):
        where = f"metrics[{name}].{field}"
        try:
            if ctx is None:
                templating.check(_query_text(metric, field), where)
            else:
                templating.render(_query_text(metric, field), ctx, where, side)
        except templating.TemplateError as e:
            problems.append(str(e))
    for field in ("successCondition", "failureCondition"):
        if metric.get(field):
            try:
                parse(metric[field])
            except ConditionError as e:
                problems.append(f"metrics[{name}].{field}: {e}")
    judge = metric.get("judge")
    if judge is not None:
        if judge.get("type", "mannWhitney") != "mannWhitney":  # the one test the judge implements (judge.py)
            problems.append(f"metrics[{name}].judge.type: {judge['type']!r} is not a test this operator has; use mannWhitney")
        if judge.get("direction", EITHER) not in ("increase", "decrease", "either"):
            problems.append(f"metrics[{name}].judge.direction: must be increase, decrease or either")
        if not 0 < float(judge.get("confidence", DEFAULT_CONFIDENCE)) < 1:
            problems.append(f"metrics[{name}].judge.confidence: must be between 0 and 1 (exclusive)")
        if not (judge.get("baselineQuery") and judge.get("canaryQuery")):
            problems.append(f"metrics[{name}].judge: needs baselineQuery and canaryQuery")
    elif not metric.get("query"):
        problems.append(f"metrics[{name}]: needs query or judge")
    elif not (metric.get("successCondition") or metric.get("failureCondition") or metric.get("thresholdRange")):
        problems.append(f"metrics[{name}].query: needs successCondition, failureCondition or thresholdRange")
    return problems


def _queries(metric: Mapping[str, Any]) -> list[tuple[str, str]]:
    if metric.get("judge") is not None:
        return [("judge.canaryQuery", templating.CANARY), ("judge.baselineQuery", templating.BASELINE)]
    return [("query", templating.CANARY)] if metric.get("query") else []


def _query_text(metric: Mapping[str, Any], field: str) -> str:
    if field.startswith("judge."):
        return metric["judge"].get(field.split(".", 1)[1]) or ""
    return metric.get(field) or ""


def _new_metric_state(name: str) -> dict[str, Any]:
    return {"name": name, "phase": RUNNING, "measurements": 0, "successful": 0, "failures": 0,
            "inconclusive": 0, "errors": 0, "consecutiveErrors": 0}


def _run_query(query: QueryFn, promql: str) -> QueryResult:
    try:
        result = query(promql)
    except Exception as e:  # noqa: BLE001 - an injected query function must not crash a reconcile
        return QueryResult.failure(f"query failed: {type(e).__name__}: {e}")
    if not isinstance(result, QueryResult):
        return QueryResult.failure(f"query function returned {type(result).__name__}, not QueryResult")
    return result


def _value(result: QueryResult) -> Any:
    if not result.ok or not result.values:
        return None
    if len(result.values) == 1:
        return json_number(result.values[0])
    return [json_number(v) for v in result.values[:MAX_VALUES]]


def _measure_query(metric: Mapping[str, Any], ctx: Mapping[str, Any], query: QueryFn) -> dict[str, Any]:
    name = metric["name"]
    sent = templating.render(metric["query"], ctx, f"metrics[{name}].query")
    result = _run_query(query, sent)
    rec: dict[str, Any] = {"metric": name, "query": sent, "value": _value(result)}
    if not result.ok:
        return {**rec, "verdict": ERROR, "message": result.error}
    if result.result_type == "matrix":
        return {**rec, "verdict": ERROR, "message": "query returned a range vector: conditions need a scalar or "
                "an instant vector (use a judge for sample sets)"}
    if len(result.values) > 1:
        rec["series"] = result.series
    if not result.values:
        return {**rec, "verdict": INCONCLUSIVE, "message": "query returned no data (empty result)"}
    if any(math.isnan(v) for v in result.values):
        return {**rec, "verdict": INCONCLUSIVE, "message": "query returned NaN (no samples to compute from)"}
    try:
        verdict, reason = judge_conditions(metric, result.values)
    except ConditionError as e:
        return {**rec, "verdict": ERROR, "message": str(e)}
    return {**rec, "verdict": verdict, "message": reason}


def _measure_judge(metric: Mapping[str, Any], ctx: Mapping[str, Any], query: QueryFn) -> dict[str, Any]:
    name, judge = metric["name"], metric["judge"]
    canary_q = templating.render(judge["canaryQuery"], ctx, f"metrics[{name}].judge.canaryQuery", templating.CANARY)
    base_q = templating.render(judge["baselineQuery"], ctx, f"metrics[{name}].judge.baselineQuery",
                               templating.BASELINE)
    rec: dict[str, Any] = {"metric": name, "query": canary_q, "baselineQuery": base_q, "value": None}
    canary, baseline = _run_query(query, canary_q), _run_query(query, base_q)
    for side, res in (("canary", canary), ("baseline", baseline)):
        if not res.ok:
            return {**rec, "verdict": ERROR, "message": f"{side} query: {res.error}"}
    jr = mann_whitney(canary.values, baseline.values,
                      min_samples=int(judge.get("minSamples", DEFAULT_MIN_SAMPLES)),
                      confidence=float(judge.get("confidence", DEFAULT_CONFIDENCE)),
                      direction=judge.get("direction", EITHER))
    return {**rec, "value": json_number(jr.p_value) if jr.p_value is not None else None,
            "verdict": jr.verdict, "message": jr.reason, "judge": jr.to_dict()}


def _measure(metric: Mapping[str, Any], ctx: Mapping[str, Any], query: QueryFn) -> dict[str, Any]:
    if metric.get("judge") is not None:
        return _measure_judge(metric, ctx, query)
    return _measure_query(metric, ctx, query)


def _assess(state: dict[str, Any], limits: Mapping[str, Any]) -> tuple[str, str]:
    if state["failures"] > limits["failureLimit"]:
        return FAILED, f"{state['failures']} failed measurements, failureLimit {limits['failureLimit']}"
    if state["inconclusive"] > limits["inconclusiveLimit"]:
        return INCONCLUSIVE, (f"{state['inconclusive']} inconclusive measurements, "
                              f"inconclusiveLimit {limits['inconclusiveLimit']}")
    if state["consecutiveErrors"] > limits["consecutiveErrorLimit"]:
        return FAILED, (f"{state['consecutiveErrors']} consecutive errors, "
                        f"consecutiveErrorLimit {limits['consecutiveErrorLimit']}")
    decisive = state["successful"] + state["failures"]
    if limits["count"] is not None and decisive >= limits["count"]:
        return SUCCESSFUL, f"{decisive} of {limits['count']} measurements taken, {state['failures']} failed"
    return RUNNING, ""


def _count(state: dict[str, Any], verdict: str) -> None:
    state["measurements"] += 1
    if verdict == ERROR:
        state["errors"] += 1
        state["consecutiveErrors"] += 1
        return
    state["consecutiveErrors"] = 0
    key = {SUCCESSFUL: "successful", FAILED: "failures", INCONCLUSIVE: "inconclusive"}[verdict]
    state[key] += 1


def _finish(run: dict[str, Any], phase: str, message: str, now: float) -> dict[str, Any]:
    run["phase"] = phase
    run["message"] = cap_message(message)
    run["finishedAt"] = rfc3339(now)
    run.pop("nextMeasurementAt", None)
    return run


def step(spec: dict, run: dict | None, now: float, query: QueryFn, ctx: dict) -> dict:
    """Advance the analysis run to `now`; see the module docstring.

    ctx: `namespace`, `name`, `stableRevision`, `canaryRevision` (for templating) and `background`
    (True for rollout.analysis and abTest.analysis: an unset `count` then means "until the rollout
    ends" instead of 1).
    """
    if run is not None and run.get("phase") in TERMINAL:
        return run
    if run is not None and run.get("nextMeasurementAt") and now < parse_time(run["nextMeasurementAt"]):
        return run
    run = copy.deepcopy(run) if run is not None else None
    metrics = list(spec.get("metrics") or [])
    try:
        limits = _limits(spec, ctx)
    except AnalysisSpecError as e:
        run = run or {"phase": RUNNING, "startedAt": rfc3339(now), "taken": 0, "metrics": [], "latest": []}
        return _finish(run, FAILED, f"invalid analysis: {e}", now)
    if run is None:
        run = {"phase": RUNNING, "startedAt": rfc3339(now), "taken": 0,
               "metrics": [_new_metric_state(m["name"]) for m in metrics], "latest": []}
        if limits["initialDelay"] > 0:
            run["nextMeasurementAt"] = rfc3339(now + limits["initialDelay"])
            return run
    if not metrics:
        return _finish(run, FAILED, "invalid analysis: analysis.metrics: at least one metric is needed", now)

    # The spec may have been edited since the run started: follow its metrics, keep known counts.
    known = {s["name"]: s for s in run.get("metrics", [])}
    run["metrics"] = [known.get(m["name"]) or _new_metric_state(m["name"]) for m in metrics]
    latest: list[dict[str, Any]] = list(run.get("latest", []))
    decided: dict[str, dict[str, Any]] = {}
    for metric, state in zip(metrics, run["metrics"], strict=True):
        if state["phase"] != RUNNING:
            continue
        problems = _metric_problems(metric, ctx)
        if problems:
            state["phase"], state["message"] = FAILED, cap_message("; ".join(problems))
            continue
        rec = _measure(metric, ctx, query)
        run["taken"] = int(run.get("taken", 0)) + 1
        rec = {"seq": run["taken"], **rec, "message": cap_message(str(rec.get("message") or "")), "at": rfc3339(now)}
        # No nulls: the apiserver drops them from status, and what it stores must equal what was written.
        rec = {k: v for k, v in rec.items() if v is not None}
        latest.append(rec)
        _count(state, rec["verdict"])
        phase, why = _assess(state, limits)
        if phase != RUNNING:
            state["phase"], state["message"] = phase, why
            decided[state["name"]] = rec
    run["latest"] = latest[-MAX_LATEST:]

    for phase in (FAILED, INCONCLUSIVE):
        done = [s for s in run["metrics"] if s["phase"] == phase]
        if done:
            parts = []
            for s in done:
                last = decided.get(s["name"])
                parts.append(f"{s['name']}: {s['message']}" + (f"; last: {describe(last)}" if last else ""))
            return _finish(run, phase, " | ".join(parts), now)
    if all(s["phase"] == SUCCESSFUL for s in run["metrics"]):
        n = sum(s["successful"] + s["failures"] for s in run["metrics"])
        return _finish(run, SUCCESSFUL, f"all {len(metrics)} metrics passed ({n} measurements)", now)
    run["nextMeasurementAt"] = rfc3339(now + limits["interval"])
    return run


def new_measurements(before: dict | None, after: dict) -> list[dict]:
    """The measurement records `step` added between two states: one Event each, for example."""
    seen = int((before or {}).get("taken", 0))
    return [m for m in after.get("latest", []) if int(m.get("seq", 0)) > seen]


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def describe(measurement: Mapping[str, Any]) -> str:
    """One line for an Event or a condition message: metric, verdict, value, why, and the query."""
    m = measurement
    if "judge" in m:
        head = f"{m['metric']} {m['verdict']}: {m.get('message', '')}"
        return f"{head}; canary query: {_short(m['query'])}; baseline query: {_short(m.get('baselineQuery', ''))}"
    value = f"value {_fmt(m['value'])}: " if m.get("value") is not None else ""
    return f"{m['metric']} {m['verdict']}: {value}{m.get('message', '')}; query: {_short(m.get('query', ''))}"
