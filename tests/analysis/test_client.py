"""The Prometheus client's response parsing and its failure modes, all returned as values."""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import time

import pytest

from modelpilot.analysis import PrometheusClient, QueryResult
from modelpilot.analysis.prometheus import parse_response

pytestmark = pytest.mark.unit


def ok(rtype: str, result) -> dict:
    return {"status": "success", "data": {"resultType": rtype, "result": result}}


def test_scalar_vector_and_matrix():
    assert parse_response(ok("scalar", [1.0, "0.5"])) == QueryResult((0.5,), "scalar", 1)
    vec = parse_response(ok("vector", [{"metric": {"a": "1"}, "value": [1, "2"]}, {"metric": {}, "value": [1, "NaN"]}]))
    assert vec.values[0] == 2.0 and math.isnan(vec.values[1]) and vec.series == 2 and vec.ok
    mat = parse_response(ok("matrix", [{"metric": {}, "values": [[1, "1"], [2, "+Inf"]]},
                                       {"metric": {}, "values": [[1, "3"]]}]))
    assert mat.values == (1.0, math.inf, 3.0) and mat.series == 2 and mat.result_type == "matrix"
    assert parse_response(ok("vector", [])) == QueryResult((), "vector", 0)


def test_errors_are_values():
    bad = parse_response({"status": "error", "errorType": "bad_data", "error": "parse error"})
    assert bad.error == "bad_data: parse error" and not bad.ok
    assert "string result" in parse_response(ok("string", [1, "x"])).error
    assert "malformed vector" in parse_response(ok("vector", [{"metric": {}}])).error
    assert "unexpected response" in parse_response([1, 2]).error


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.server.requests.append(self.rfile.read(length).decode())
        self.server.headers.append(self.headers)  # case-insensitive, as HTTP header names are
        status, body = self.server.answer
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_):
        pass


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.headers, srv.answer = [], [], (200, ok("scalar", [0, "1"]))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_instant_and_range_requests_are_posted_with_a_server_timeout(server):
    c = PrometheusClient(f"http://127.0.0.1:{server.server_port}/", timeout=3)
    assert c.query('up{job="a b"}', at=100.5).values == (1.0,)
    assert "query=up%7Bjob%3D%22a+b%22%7D" in server.requests[0] and "time=100.500" in server.requests[0]
    assert "timeout=3s" in server.requests[0]
    c.query_range("up", 10, 20, 5)
    assert "start=10.000&end=20.000&step=5.000" in server.requests[1]


def test_http_error_with_a_prometheus_body_keeps_its_reason(server):
    server.answer = (422, {"status": "error", "errorType": "execution", "error": "too many samples"})
    assert PrometheusClient(f"http://127.0.0.1:{server.server_port}").query("x").error == "execution: too many samples"


def test_http_error_without_json(server):
    server.answer = (503, "<html>down</html>")
    assert PrometheusClient(f"http://127.0.0.1:{server.server_port}").query("x").error.startswith("HTTP 503")


def test_invalid_json(server):
    server.answer = (200, "not json")
    assert "invalid JSON" in PrometheusClient(f"http://127.0.0.1:{server.server_port}").query("x").error


def test_a_server_that_never_answers_times_out_as_a_value():
    with socket.socket() as s:  # accepts connections (the backlog) but never reads or answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        t = time.monotonic()
        res = PrometheusClient(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.3).query("up")
        assert not res.ok and "timed out" in res.error and time.monotonic() - t < 3


def test_connection_refused_is_a_value():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        res = PrometheusClient(f"http://127.0.0.1:{port}", timeout=1).query("up")
    assert not res.ok and res.error.startswith(f"cannot reach Prometheus at http://127.0.0.1:{port}")


def test_the_tenant_header_carries_the_namespace_and_the_caps_come_from_the_config(server):
    """Issue 11, scenario 8: with prometheus.tenantHeader set, every query names the namespace whose
    analysis sent it (Mimir/Cortex/Thanos tenancy, or prom-label-proxy's -header-name)."""
    from modelpilot.config import parse_config
    config = parse_config({"prometheusUrl": f"http://127.0.0.1:{server.server_port}",
                           "prometheus": {"tenantHeader": "X-Scope-OrgID", "maxSeries": 5, "maxResponseBytes": 4096}})
    client = PrometheusClient.for_namespace(config, "team-b")
    assert client.query("up").ok
    assert server.headers[0]["X-Scope-OrgID"] == "team-b"
    assert (client.max_series, client.max_bytes) == (5, 4096)
    server.answer = (200, ok("vector", [{"metric": {"i": str(i)}, "value": [1, "1"]} for i in range(6)]))
    assert "more than 5 series" in client.query("up").error
    default = PrometheusClient.for_namespace(parse_config({"prometheusUrl": "http://x"}), "team-b")
    assert default.headers == {} and default.max_series == 1000 and default.max_bytes == 8 * 1024 * 1024


def test_a_body_over_the_cap_is_refused_before_it_is_read_whole(server):
    server.answer = (200, ok("vector", [{"metric": {"i": str(i)}, "value": [1, "1"]} for i in range(500)]))
    res = PrometheusClient(f"http://127.0.0.1:{server.server_port}", max_bytes=1000).query("up")
    assert not res.ok and "more than 1000 bytes" in res.error
