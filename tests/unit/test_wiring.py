"""The operator's process-wide machinery: the start-up cache fill survives a failed LIST, and
deleted objects leave nothing behind (store index entries, per-object metric series)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from modelpilot import constants as c
from modelpilot import metrics
from modelpilot.config import OperatorConfig
from modelpilot.cache import Store
from modelpilot.workqueue import WorkQueue
from modelpilot.handlers import modeldeployment, wiring

pytestmark = pytest.mark.unit


class FlakyLists:
    """The one call the cache fill makes, `list`; the first LIST of `kind` fails like an apiserver
    restarting under it (503)."""

    def __init__(self, kind: str) -> None:
        self.kind, self.failed, self.calls = kind, False, 0

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.calls += 1
        if kind == self.kind and not self.failed:
            self.failed = True
            raise ApiException(status=503, reason="Service Unavailable")
        return []


def test_a_failed_startup_list_is_retried_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "backoff", lambda n: 0.01, raising=False)
    kube = FlakyLists("Job")
    monkeypatch.setattr(wiring.RT, "kube", kube, raising=False)
    monkeypatch.setattr(wiring.RT, "store", Store(), raising=False)
    monkeypatch.setattr(wiring.RT, "config", OperatorConfig(), raising=False)
    monkeypatch.setattr(wiring.RT, "namespaces", [])
    failures_before = REGISTRY.get_sample_value("modelpilot_cache_sync_failures_total") or 0.0

    async def start() -> None:
        wiring.RT.queue = WorkQueue()
        wiring.RT.executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        try:
            await asyncio.wait_for(wiring._start_reconciling(), 10)
            assert len(wiring.RT.tasks) == 2 and not any(t.done() for t in wiring.RT.tasks), "the work queue is not running"
        finally:
            for t in wiring.RT.tasks:
                t.cancel()
            wiring.RT.executor.shutdown(wait=True)

    asyncio.run(start())
    assert kube.failed and wiring.RT.store.nodes_synced
    assert REGISTRY.get_sample_value("modelpilot_cache_synced") == 1.0
    assert REGISTRY.get_sample_value("modelpilot_cache_sync_failures_total") == failures_before + 1


def _labelled(kind: str, name: str, owner: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1",
                                        "labels": {c.LABEL_DEPLOYMENT: owner}}}


def test_the_store_forgets_an_owner_once_its_last_child_is_gone() -> None:
    store = Store()
    for i in range(100):
        store.put("Service", _labelled("Service", f"md{i}-r1", f"md{i}"))
        store.remove("Service", "ns", f"md{i}-r1")
    assert store.owned("Service", "ns", "md7") == []
    assert len(store._by_owner) == 0, "the owner index keeps an entry for every owner ever seen"


def test_a_deleted_model_deployment_leaves_no_metric_series() -> None:
    metrics.WEIGHT.labels(namespace="ns", name="gone", role="canary").set(20)
    metrics.STEP.labels(namespace="ns", name="gone").set(2)
    # The object is gone from the store: the reconcile after its DELETED event.
    assert modeldeployment.reconcile(None, Store(), OperatorConfig(), "ns", "gone") is None  # type: ignore[arg-type]
    for name in ("modelpilot_traffic_weight_percent", "modelpilot_rollout_step"):
        samples = [s for m in REGISTRY.collect() if m.name == name for s in m.samples if s.labels.get("name") == "gone"]
        assert samples == [], f"{name} still has a series for the deleted ModelDeployment: ModelpilotRolloutStuck would fire"


def test_fit_status_keeps_the_abort_and_the_conditions_and_is_stable() -> None:
    import json

    from modelpilot.conditions import MAX_STATUS_BYTES, fit_status, status_bytes
    record = {"seq": 1, "metric": "err", "verdict": "Failed", "value": list(range(10)), "query": "q" * 4000, "message": "m" * 1000}
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "RolloutAborted", "message": "aborted"}],
              "rollout": {"aborted": {"revision": 2, "reason": "AnalysisFailed", "message": "err failed"}},
              "control": {"action": "abort", "requestedAt": "2026-01-01T00:00:00Z"},
              "analysis": {"runs": {f"step-{i}": {"phase": "Failed", "latest": [dict(record, seq=j) for j in range(10)]} for i in range(8)}}}
    assert status_bytes(status) > 10 * MAX_STATUS_BYTES
    fitted = fit_status(status)
    assert status_bytes(fitted) <= MAX_STATUS_BYTES
    assert fitted["rollout"] == status["rollout"] and fitted["conditions"] == status["conditions"] and fitted["control"] == status["control"]
    assert fit_status(fitted) == fitted and json.dumps(fit_status(status)) == json.dumps(fitted), "fitting twice changes bytes: a write loop"


def test_an_object_another_owner_holds_is_foreign() -> None:
    from modelpilot.conditions import foreign_owner
    ours = {"metadata": {"ownerReferences": [{"kind": "ModelDeployment", "name": "foo", "uid": "u1", "controller": True}]}}
    theirs = {"metadata": {"ownerReferences": [{"kind": "ModelDeployment", "name": "foo-r1", "uid": "u2", "controller": True}]}}
    assert foreign_owner(None, "u1") is None and foreign_owner(ours, "u1") is None
    assert foreign_owner(theirs, "u1") == "ModelDeployment foo-r1"
    assert "no owner" in (foreign_owner({"metadata": {"name": "handmade"}}, "u1") or "")


def test_an_apply_failure_is_reported_once_and_keeps_the_other_events() -> None:
    from modelpilot.conditions import get_condition, set_condition, with_apply_failure
    T = "2026-01-01T00:00:00Z"
    planned = {"phase": "Progressing", "conditions": set_condition([], "Ready", False, "NotReady", "revision 1 is rolling out", 1, T)}
    events = [("Warning", "NotReady", "revision 1 is rolling out"), ("Warning", "RolloutAborted", "revision 2: aborted")]
    refusal = 'Deployment.apps "foo-r1" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: "2"'
    status, out = with_apply_failure(planned, events, {}, "ApplyFailed", refusal, 1, T)
    ready = get_condition(status["conditions"], "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ApplyFailed", refusal)
    assert out == [("Warning", "RolloutAborted", "revision 2: aborted"), ("Warning", "ApplyFailed", refusal)]
    again, out2 = with_apply_failure(planned, events[:1], status, "ApplyFailed", refusal, 1, "2026-01-01T00:01:00Z")
    assert again == status and out2 == [], "a retry that fails the same way must write and post nothing"


class RecordingKube:
    """The calls apply_children makes; an apply without force on an existing object fails as the
    apiserver's does (422 for a second controller reference, 409 for fields another manager holds)."""

    def __init__(self, live: dict[str, dict[str, Any]]) -> None:
        self.live, self.deleted, self.applied, self.gets = live, [], [], []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(name)
        return self.live.get(name)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append(name)
        return True

    def apply(self, obj: dict[str, Any], live: Any, force: bool = True) -> None:
        from kubernetes.client.exceptions import ApiException
        name = obj["metadata"]["name"]
        existing = self.live.get(name)
        if existing is not None and not force:
            refs = existing["metadata"].get("ownerReferences") or []
            if refs and refs[0]["uid"] != obj["metadata"]["ownerReferences"][0]["uid"]:
                raise ApiException(status=422, reason="Invalid", body="Only one reference can have Controller set to true")
            raise ApiException(status=409, reason="Conflict", body="Apply failed with 1 conflict")
        if obj.get("invalid"):
            raise ApiException(status=422, reason="Invalid", body='{"message": "spec.ports[0].port: Invalid value: 0"}')
        self.applied.append((name, force))


def test_history_cleanup_deletes_only_what_the_owner_holds() -> None:
    from modelpilot.handlers.apply import ApplyError, apply_children
    ref = lambda uid, name: {"metadata": {"name": name, "ownerReferences": [  # noqa: E731
        {"kind": "ModelDeployment", "name": name.split("-r")[0] if uid == "u-foo" else "foo-r1", "uid": uid, "controller": True}]}}
    kube = RecordingKube({"foo-r2": ref("u-foo", "foo-r2"), "foo-r1": ref("u-foo-r1", "foo-r1")})
    owner = {"metadata": {"name": "foo", "uid": "u-foo"}}
    apply_children(kube, Store(), owner, [], delete=[("Service", "ns", "foo-r1"), ("Service", "ns", "foo-r2")])  # type: ignore[arg-type]
    assert kube.deleted == ["foo-r2"], "deleted the Service another ModelDeployment owns"
    svc = {"kind": "Service", "metadata": {"name": "foo-r1", "namespace": "ns", "ownerReferences": ref("u-foo", "foo-r1")["metadata"]["ownerReferences"]}}
    with pytest.raises(ApplyError) as err:
        apply_children(kube, Store(), owner, [svc])  # type: ignore[arg-type]
    assert err.value.reason == "NameConflict" and "ModelDeployment foo-r1" in err.value.message and kube.applied == []


def test_a_new_child_is_one_request_and_a_taken_name_is_found_by_the_apiserver() -> None:
    """A child the cache lacks is applied once without force (no GET first): the apiserver refuses
    a name someone else holds, and only then a GET names the holder."""
    from modelpilot.handlers.apply import ApplyError, apply_children
    owner = {"metadata": {"name": "foo", "uid": "u-foo"}}
    ref = [{"kind": "ModelDeployment", "name": "foo", "uid": "u-foo", "controller": True}]
    child = lambda name, **kw: {"kind": "Service", "metadata": {"name": name, "namespace": "ns", "ownerReferences": ref}, **kw}  # noqa: E731
    mine = {"metadata": {"name": "foo-r3", "ownerReferences": ref}}
    kube = RecordingKube({"foo-r1": {"metadata": {"name": "foo-r1"}}, "foo-r3": mine})
    apply_children(kube, Store(), owner, [child("foo-r2")])  # type: ignore[arg-type]
    assert (kube.applied, kube.gets) == ([("foo-r2", False)], []), "a new child costs one apply and no GET"
    with pytest.raises(ApplyError) as err:
        apply_children(kube, Store(), owner, [child("foo-r1")])  # type: ignore[arg-type]
    assert err.value.reason == "NameConflict" and "no owner" in err.value.message and kube.gets == ["foo-r1"]
    apply_children(kube, Store(), owner, [child("foo-r3")])  # type: ignore[arg-type]
    assert kube.applied[-1] == ("foo-r3", True), "ours, only not cached yet: applied again, with force"
    with pytest.raises(ApplyError) as err:
        apply_children(kube, Store(), owner, [child("foo-r4", invalid=True)])  # type: ignore[arg-type]
    assert err.value.reason == "ApplyFailed" and "spec.ports[0].port" in err.value.message and kube.gets == ["foo-r1", "foo-r3"]


def test_analysis_measurements_keep_their_interval_although_status_times_have_whole_seconds() -> None:
    # The reconcile's `now` has whole seconds (status timestamps). Measured on that clock, a 1 s
    # interval could end 10 ms after the last measurement, so a 3 s Prometheus blip gave 5 errors
    # in a row where 3 fit, and consecutiveErrorLimit 4 aborted a healthy canary.
    from modelpilot.analysis.run import parse_time
    from modelpilot.clock import now_rfc3339

    time.sleep(1.5 - time.time() % 1)  # half-way through a second: the whole-second clock is 0.5 s behind
    before = time.time()
    analyze = modeldeployment._analyzer(OperatorConfig(prometheus_url="http://127.0.0.1:9"), now_rfc3339(), "ns")
    assert analyze is not None
    spec = {"interval": "1s", "count": 3, "metrics": [{"name": "up", "query": "up", "successCondition": "result > 0"}]}
    run = analyze(spec, None, {"namespace": "ns", "name": "m", "stableRevision": 1, "canaryRevision": 2})
    assert run["latest"][0]["verdict"] == "Error"  # nothing listens on port 9: the measurement was taken
    assert parse_time(run["nextMeasurementAt"]) >= before + 1.0 - 0.001, run["nextMeasurementAt"]  # milliseconds in status


def test_the_cache_keeps_one_copy_of_the_strings_every_object_repeats() -> None:
    """A thousand ModelDeployments' children repeat the same label keys and values: the cache holds
    each string once (28 MB less at peak in bench/load.py, N=1000), and the data is unchanged."""
    import json

    from modelpilot.cache import slim

    def parsed() -> dict:  # each watch event is its own JSON document: its own copy of every string
        return json.loads(json.dumps({"metadata": {"name": "m-r1", "labels": {"app.kubernetes.io/managed-by": "modelpilot"},
                                                   "annotations": {"modelpilot.io/spec-hash": "h"}},
                                      "spec": {"ports": [{"name": "http", "port": 80}]}}))
    first, second = parsed(), parsed()
    assert next(iter(first["metadata"]["labels"])) is not next(iter(second["metadata"]["labels"]))
    a, b = slim("Service", first), slim("Service", second)
    assert a == b == first
    (key_a, value_a), (key_b, value_b) = next(iter(a["metadata"]["labels"].items())), next(iter(b["metadata"]["labels"].items()))
    assert key_a is key_b and value_a is value_b and a["spec"]["ports"][0]["name"] is b["spec"]["ports"][0]["name"]


def test_the_store_lists_one_kind_without_walking_the_others() -> None:
    """A reconcile reads all Nodes: at N=1000 that read walked every cached object of every kind
    (~5,000), so the fleet's reconciles cost N²."""
    store = Store()
    for i in range(2000):
        store.put("Service", {"metadata": {"name": f"s{i}", "namespace": "ns", "resourceVersion": "1"}})
    store.put("Node", {"metadata": {"name": "n0", "resourceVersion": "1"}})
    store.put("Node", {"metadata": {"name": "n1", "resourceVersion": "2"}})
    store.remove("Node", "", "n0")
    assert [n["metadata"]["name"] for n in store.all("Node")] == ["n1"] and len(store.all("Service")) == 2000
    assert store.get("Service", "ns", "s7") is not None and store.get("Node", "ns", "s7") is None
    walked = 0

    class Counting(dict):
        def items(self):  # type: ignore[override]
            nonlocal walked
            walked += len(self)
            return super().items()

        def values(self):  # type: ignore[override]
            nonlocal walked
            walked += len(self)
            return super().values()

    for kind, objects in list(store._kinds.items()):
        store._kinds[kind] = Counting(objects)
    store.all("Node")
    assert walked == 1, f"listing 1 Node walked {walked} objects"
