"""A small Prometheus HTTP API client: instant and range queries, errors as values.

Every call returns a `QueryResult`; nothing raises for an unreachable server, a timeout, an HTTP
error or a PromQL error. The analysis run counts such results as errors toward
`consecutiveErrorLimit` instead of crashing a reconcile. Only the standard library is used.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Final

DEFAULT_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class QueryResult:
    """What a query returned.

    `values`: a scalar gives one value, an instant vector one value per series, a range vector
    (matrix) every sample of every series, in series order. `error` is set, and `values` empty,
    when the query could not be answered.
    """

    values: tuple[float, ...] = ()
    result_type: str = ""
    series: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, message: str) -> QueryResult:
        return cls(error=message)


def parse_response(body: Any) -> QueryResult:
    """Turn a decoded /api/v1/query or /api/v1/query_range response into a QueryResult."""
    if not isinstance(body, dict):
        return QueryResult.failure(f"unexpected response: {str(body)[:200]}")
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    if body.get("status") != "success":
        return QueryResult.failure(f"{body.get('errorType') or 'error'}: {body.get('error') or body}")
    data = body.get("data") or {}
    rtype, result = data.get("resultType"), data.get("result")
    try:
        if rtype == "scalar":
            return QueryResult((float(result[1]),), rtype, 1, warnings=warnings)
        if rtype == "vector":
            return QueryResult(tuple(float(s["value"][1]) for s in result), rtype, len(result), warnings=warnings)
        if rtype == "matrix":
            vals = tuple(float(v[1]) for s in result for v in s.get("values") or ())
            return QueryResult(vals, rtype, len(result), warnings=warnings)
    except (TypeError, KeyError, IndexError, ValueError) as e:
        return QueryResult.failure(f"malformed {rtype} result: {e}")
    return QueryResult.failure(f"query returned a {rtype or 'missing'} result, not a number or vector")


class PrometheusClient:
    """`query(promql)` fits `step(..., query=client.query, ...)` directly."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, headers: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        """Instant query at `at` (unix seconds; default: the server's now)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _ts(at)
        return self._call("/api/v1/query", params)

    def query_range(self, promql: str, start: float, end: float, step: float) -> QueryResult:
        """Range query over [start, end] every `step` seconds: every sample of every series."""
        return self._call("/api/v1/query_range",
                          {"query": promql, "start": _ts(start), "end": _ts(end), "step": _ts(step)})

    def _call(self, path: str, params: dict[str, str]) -> QueryResult:
        # The server-side timeout stops an expensive query there too, not only our wait for it.
        params = {**params, "timeout": f"{max(self.timeout, 0.001):g}s"}
        req = urllib.request.Request(
            self.url + path, data=urllib.parse.urlencode(params).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            # Prometheus answers PromQL errors with 400/422/503 and a JSON body that says why.
            try:
                return parse_response(json.loads(e.read()))
            except (ValueError, OSError):
                return QueryResult.failure(f"HTTP {e.code} from {self.url}{path}: {e.reason}")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            return QueryResult.failure(f"cannot reach Prometheus at {self.url}: {reason}")
        try:
            return parse_response(json.loads(raw))
        except ValueError as e:
            return QueryResult.failure(f"invalid JSON from {self.url}{path}: {e}")


def _ts(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"not a finite time: {x}")
    return f"{x:.3f}"
