"""A small Prometheus HTTP API client: instant and range queries, errors as values.

Every call returns a `QueryResult`; nothing raises for an unreachable server, a timeout, an HTTP
error or a PromQL error. The analysis run counts such results as errors toward
`consecutiveErrorLimit` instead of crashing a reconcile. Only the standard library is used.

Whoever writes a ModelDeployment writes the query, so what comes back is bounded before it is
parsed (issue 11): a body over `max_bytes` is not read further, and a result over `max_series`
series is refused before its values are converted. Both are error measurements that say which
operator option to raise.
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

from ..config import OperatorConfig, PrometheusOptions

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_MAX_BYTES: Final = PrometheusOptions.max_response_bytes
DEFAULT_MAX_SERIES: Final = PrometheusOptions.max_series


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


def parse_response(body: Any, max_series: int = DEFAULT_MAX_SERIES) -> QueryResult:
    """Turn a decoded /api/v1/query or /api/v1/query_range response into a QueryResult."""
    if not isinstance(body, dict):
        return QueryResult.failure(f"unexpected response: {str(body)[:200]}")
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    if body.get("status") != "success":
        return QueryResult.failure(f"{body.get('errorType') or 'error'}: {str(body.get('error') or body)[:500]}")
    data = body.get("data") or {}
    rtype, result = data.get("resultType"), data.get("result")
    if rtype in ("vector", "matrix") and isinstance(result, list) and len(result) > max_series:
        return QueryResult.failure(
            f"query returned {len(result)} series, more than {max_series} series: aggregate it (sum, max by (...)), or "
            "ask the operator's admin to raise prometheus.maxSeries")
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

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, headers: dict[str, str] | None = None, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_series: int = DEFAULT_MAX_SERIES):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.max_bytes = max_bytes
        self.max_series = max_series

    @classmethod
    def for_namespace(cls, config: OperatorConfig, namespace: str) -> PrometheusClient:
        """The client an analysis of `namespace` uses: the configured bounds and tenant header."""
        opts = config.prometheus
        return cls(config.prometheus_url, headers={opts.tenant_header: namespace} if opts.tenant_header else None,
                   max_bytes=opts.max_response_bytes, max_series=opts.max_series)

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
                raw = self._read(resp)
        except urllib.error.HTTPError as e:
            # Prometheus answers PromQL errors with 400/422/503 and a JSON body that says why.
            try:
                raw = self._read(e)
                return raw if isinstance(raw, QueryResult) else parse_response(json.loads(raw), self.max_series)
            except (ValueError, OSError):
                return QueryResult.failure(f"HTTP {e.code} from {self.url}{path}: {e.reason}")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            return QueryResult.failure(f"cannot reach Prometheus at {self.url}: {reason}")
        if isinstance(raw, QueryResult):
            return raw
        try:
            return parse_response(json.loads(raw), self.max_series)
        except ValueError as e:
            return QueryResult.failure(f"invalid JSON from {self.url}{path}: {e}")

    def _read(self, resp: Any) -> bytes | QueryResult:
        """The body, or a failure once it is known to exceed max_bytes (never read whole)."""
        raw = resp.read(self.max_bytes + 1)
        if len(raw) > self.max_bytes:
            return QueryResult.failure(
                f"the response is more than {self.max_bytes} bytes: aggregate the query, or ask the operator's "
                "admin to raise prometheus.maxResponseBytes")
        return raw


def _ts(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"not a finite time: {x}")
    return f"{x:.3f}"
