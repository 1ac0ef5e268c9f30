"""The dashboard without a cluster: what the page is given (views) and what the server refuses
(Host, Origin, CSRF token, read-only, objects outside its scope), on a real aiohttp server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from modelpilot.dashboard import _is_loopback, views
from modelpilot.dashboard.server import Settings, make_app
from modelpilot.dashboard.watch import Hub

pytestmark = pytest.mark.unit


def md(name: str = "m", ns: str = "ml", status: dict | None = None, steps: list | None = None) -> dict[str, Any]:
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": ns, "uid": "u1", "resourceVersion": "7",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"model": {"uri": "pvc://m/model.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                     "rollout": {"strategy": "canary", "canary": {"steps": steps or [{"setWeight": 20}, {"pause": {}}]}}},
            "status": status or {}}


def test_trim_keeps_identity_spec_and_status_only() -> None:
    body = md(status={"phase": "Ready"})
    assert views.trim(body) == {"kind": "ModelDeployment",
                                "metadata": {"name": "m", "namespace": "ml", "uid": "u1", "resourceVersion": "7"},
                                "spec": body["spec"], "status": {"phase": "Ready"}}


def test_deployment_row_and_latest_verdict() -> None:
    runs = {"step-1": {"latest": [{"metric": "errors", "verdict": "Successful", "at": "2026-01-01T00:00:01Z"},
                                  {"metric": "errors", "verdict": "Failed", "at": "2026-01-01T00:00:03Z"}]},
            "background": {"latest": [{"metric": "latency", "verdict": "Successful", "at": "2026-01-01T00:00:02Z"}]}}
    row = views.deployment_row(md(status={"phase": "Progressing", "stableRevision": 1, "canaryRevision": 2,
                                          "weights": {"stable": 80, "canary": 20}, "readyReplicas": 2, "replicas": 2,
                                          "analysis": {"runs": runs}}))
    assert row == {"key": "ModelDeployment/ml/m", "kind": "ModelDeployment", "namespace": "ml", "name": "m",
                   "phase": "Progressing", "strategy": "canary", "stable": 1, "canary": 2,
                   "weights": {"stable": 80, "canary": 20, "mirror": None}, "ready": 2, "replicas": 2,
                   "verdict": "errors: Failed", "message": ""}
    assert views.latest_verdict({}) is None
    done = {"kind": "ModelExport", "metadata": {"name": "e", "namespace": "ml"}, "spec": {"targets": [{"format": "onnx"}]},
            "status": {"phase": "Succeeded", "conditions": [{"type": "Ready", "message": "1 artifact(s) exported and validated"}]}}
    assert views.export_row(done)["message"] == "1 artifact(s) exported and validated", "no status.message: the Ready condition's"


def test_steps_are_the_operators_compiled_steps() -> None:
    assert views.steps(md(steps=[{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"pause": {}}])) == [
        "setWeight 20", "pause 1m", "pause until promoted"]
    bad = md()
    bad["spec"]["rollout"] = {"strategy": "canary", "canary": {"steps": [{"pause": {"duration": "soon"}}]}}
    assert views.steps(bad) == [], "a bad spec shows no steps; its SpecValid condition says why"


def test_weight_history_is_seeded_from_status_then_grows_on_change_only() -> None:
    st = {"canaryRevision": 2, "weights": {"stable": 80, "canary": 20},
          "revisions": [{"revision": 1, "created": "2026-01-01T00:00:00Z"}, {"revision": 2, "created": "2026-01-01T00:01:00Z"}],
          "rollout": {"stepStartedAt": "2026-01-01T00:01:30Z"}}
    h = views.WeightHistory()
    t0 = views._seconds("2026-01-01T00:01:00Z")
    assert h.observe(md(status=st), now=t0 + 100)
    assert h.points == [[t0, 100, 0, 0], [t0 + 30, 80, 20, 0]], "seeded: rollout start, then the current step"
    assert not h.observe(md(status=st), now=t0 + 101), "same weights: no point"
    st2 = {**st, "weights": {"stable": 50, "canary": 50}}
    assert h.observe(md(status=st2), now=t0 + 102)
    assert h.points[-1] == [t0 + 102, 50, 50, 0] and len(h.points) == 3
    assert not views.WeightHistory().observe(md(status={"phase": "Pending"}), now=t0), "no weights yet: nothing"


def test_hub_relist_deletes_what_vanished_and_publishes() -> None:
    hub = Hub()
    q: asyncio.Queue = asyncio.Queue()
    hub.subscribers.add(q)
    hub.upsert(md("a", status={"weights": {"stable": 100, "canary": 0}}), now=1.0)
    hub.upsert(md("b"), now=1.0)
    hub.relisted("ModelDeployment", [md("b")], now=2.0)
    sent = [q.get_nowait() for _ in range(q.qsize())]
    assert [(m["type"], m["key"]) for m in sent] == [("upsert", "ModelDeployment/ml/a"), ("upsert", "ModelDeployment/ml/b"),
                                                     ("delete", "ModelDeployment/ml/a"), ("upsert", "ModelDeployment/ml/b")]
    assert sent[0]["history"] == [[1.0, 100, 0, 0]] and sent[0]["steps"] == ["setWeight 20", "pause until promoted"]
    assert "annotations" not in json.dumps(hub.snapshot())


def test_hub_tells_pages_when_a_watch_breaks_and_heals() -> None:
    hub = Hub()
    q: asyncio.Queue = asyncio.Queue()
    hub.subscribers.add(q)
    hub.watch_failed("ModelExport", "watching modelexports: 503 Service Unavailable; retrying")
    hub.watch_failed("ModelExport", "watching modelexports: 503 Service Unavailable; retrying")  # no news
    assert hub.snapshot()["watchErrors"] == {"ModelExport": "watching modelexports: 503 Service Unavailable; retrying"}
    hub.watch_failed("ModelExport", None)
    sent = [q.get_nowait() for _ in range(q.qsize())]
    assert [m["watchErrors"] for m in sent] == [{"ModelExport": "watching modelexports: 503 Service Unavailable; retrying"}, {}]


async def _post(settings: Settings, hub: Hub, headers: dict[str, str], body: Any, host: str | None = None) -> tuple[int, dict]:
    async with TestClient(TestServer(make_app(settings, hub), host="127.0.0.1", port=settings.port)) as client:
        hdrs = {"Host": host or f"127.0.0.1:{settings.port}", **headers}
        r = await client.post("/api/control", headers=hdrs, data=json.dumps(body))
        return r.status, await r.json()


@pytest.fixture
def hub() -> Hub:
    h = Hub()
    h.upsert(md("m", "ml"), now=1.0)
    return h


PORT = 3199
GOOD = {"Origin": f"http://127.0.0.1:{PORT}", "Content-Type": "application/json"}
ACTION = {"namespace": "ml", "name": "m", "action": "promote"}


@pytest.mark.parametrize("case, headers, body, host, status, says", [
    ("no token", GOOD, ACTION, None, 403, "CSRF"),
    ("wrong token", {**GOOD, "X-CSRF-Token": "guess"}, ACTION, None, 403, "CSRF"),
    ("other origin", {**GOOD, "Origin": "http://evil.example", "X-CSRF-Token": "T"}, ACTION, None, 403, "cross-origin"),
    ("no origin", {"X-CSRF-Token": "T"}, ACTION, None, 403, "cross-origin"),
    ("rebinding host", {**GOOD, "Origin": "http://evil.example:3199", "X-CSRF-Token": "T"}, ACTION, "evil.example:3199", 421, "Host"),
    ("unknown action", {**GOOD, "X-CSRF-Token": "T"}, {**ACTION, "action": "delete"}, None, 400, "not one of"),
    ("bad revision", {**GOOD, "X-CSRF-Token": "T"}, {**ACTION, "action": "undo", "toRevision": "x"}, None, 400, "toRevision"),
    ("outside scope", {**GOOD, "X-CSRF-Token": "T"}, {**ACTION, "namespace": "other"}, None, 404, "not on this dashboard"),
])
def test_actions_are_refused_without_origin_token_or_scope(hub: Hub, case: str, headers: dict, body: dict, host: str | None,
                                                           status: int, says: str) -> None:
    got, resp = asyncio.run(_post(Settings(port=PORT, csrf_token="T"), hub, headers, body, host))
    assert (got, resp["ok"]) == (status, False), case
    assert says in resp["message"], resp


def test_read_only_refuses_even_a_valid_action(hub: Hub) -> None:
    got, resp = asyncio.run(_post(Settings(port=PORT, csrf_token="T", read_only=True), hub, {**GOOD, "X-CSRF-Token": "T"}, ACTION))
    assert got == 403 and "read-only" in resp["message"]


def test_page_carries_token_and_mode_but_no_credentials(hub: Hub) -> None:
    async def get() -> tuple[str, dict]:
        async with TestClient(TestServer(make_app(Settings(port=PORT, csrf_token="T<&>", read_only=True), hub), port=PORT)) as c:
            r = await c.get("/", headers={"Host": f"localhost:{PORT}"})
            return await r.text(), dict(r.headers)
    page, headers = asyncio.run(get())
    assert "{&quot;csrfToken&quot;: &quot;T&lt;&amp;&gt;&quot;, &quot;readOnly&quot;: true" in page, "escaped into the meta tag"
    assert "default-src 'self'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"


def test_only_loopback_addresses_pass_without_a_warning() -> None:
    assert [a for a in ("127.0.0.1", "::1", "localhost", "127.0.0.2", "0.0.0.0", "::", "10.0.0.5", "example.com") if _is_loopback(a)] == [
        "127.0.0.1", "::1", "localhost", "127.0.0.2"]
