"""Bad input the CRD admits but the apiserver refuses, and generated names that collide: each ends
in a False condition that names the field or the other owner, one Event, and backoff (no hot loop)."""

from __future__ import annotations

import copy
import time

import pytest
import yaml

from ..conftest import REPO, Kubectl
from .conftest import Operator, operator_writes_by_agent, utcnow, wait_for
from .test_modeldeployment import condition, get, md_status

pytestmark = pytest.mark.e2e


CPU = yaml.safe_load((REPO / "docs/samples/modeldeployment-triton-cpu.yaml").read_text())


def md(name: str, **placement: dict) -> dict:
    body = copy.deepcopy(CPU)
    body["metadata"] = {"name": name}
    body["spec"]["replicas"] = 1
    body["spec"]["placement"].update(placement)
    return body


def ready_condition(kubectl: Kubectl, ns: str, name: str, reason: str) -> dict:
    return wait_for(lambda: (c := condition(md_status(kubectl, ns, name), "Ready")).get("reason") == reason and c,
                    60, what=f"{name} Ready reason {reason}")


def test_a_child_the_apiserver_refuses_is_a_condition_naming_the_field_and_is_retried_with_backoff(
        kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    body = md("overcommitted", resources={"requests": {"cpu": "8", "memory": "1Gi"}, "limits": {"cpu": "4", "memory": "1Gi"}})
    since = utcnow()
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    ready = ready_condition(kubectl, namespace, "overcommitted", "ApplyFailed")
    assert ready["status"] == "False"
    assert "resources.requests" in ready["message"] and "overcommitted-r1" in ready["message"], ready["message"]
    events = get(kubectl, namespace, "events", "--field-selector", "involvedObject.name=overcommitted,reason=ApplyFailed")["items"]
    assert len(events) == 1 and "resources.requests" in events[0]["message"]
    time.sleep(20)
    writes = [w for w in operator_writes_by_agent(since) if "overcommitted" in w["uri"]]
    refused = [w for w in writes if w["code"] == 422]
    # Backoff 1, 2, 4, 8 s (plus the retry the status write itself triggers): a hot loop makes hundreds.
    assert 1 <= len(refused) <= 8, f"{len(refused)} refused applies in ~20s: {refused}"
    status_writes = [w for w in writes if "/status" in w["uri"] and w["code"] < 400]
    assert len(status_writes) <= 2, status_writes


def test_a_generated_name_another_deployment_owns_is_never_taken_over(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    # ModelDeployment "coll"'s revision Service is "coll-r1": the entry Service of ModelDeployment "coll-r1".
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(md("coll-r1")))
    wait_for(lambda: md_status(kubectl, namespace, "coll-r1").get("phase") == "Ready", 90, what="coll-r1 Ready")
    owner_before = get(kubectl, namespace, "service", "coll-r1")["metadata"]["ownerReferences"][0]
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(md("coll")))
    ready = ready_condition(kubectl, namespace, "coll", "NameConflict")
    assert "Service coll-r1" in ready["message"] and "ModelDeployment coll-r1" in ready["message"], ready["message"]
    time.sleep(3)
    svc = get(kubectl, namespace, "service", "coll-r1")
    assert svc["metadata"]["ownerReferences"][0] == owner_before, "the other ModelDeployment's Service was taken over"
    assert svc["spec"]["selector"]["modelpilot.io/model-deployment"] == "coll-r1"
    assert md_status(kubectl, namespace, "coll-r1").get("phase") == "Ready"


def test_a_name_held_outside_modelpilot_is_refused_by_the_apiserver_itself(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    """Names the operator's watch cache cannot see (no modelpilot labels): a Service created by hand,
    and one another controller holds. The first apply of a new child (no force) is refused by the
    apiserver, atomically, and the condition names the holder; neither object is changed."""
    kubectl("-n", namespace, "create", "service", "clusterip", "byhand-r1", "--tcp=5000:5000")
    kubectl("-n", namespace, "create", "configmap", "holder")
    holder_uid = get(kubectl, namespace, "configmap", "holder")["metadata"]["uid"]
    held = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "held-r1", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "holder", "uid": holder_uid, "controller": True}]},
        "spec": {"ports": [{"port": 5000}]}}
    kubectl("-n", namespace, "create", "-f", "-", input=yaml.safe_dump(held))
    before = {n: get(kubectl, namespace, "service", n) for n in ("byhand-r1", "held-r1")}
    for name in ("byhand", "held"):
        kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(md(name)))
    assert "no owner" in ready_condition(kubectl, namespace, "byhand", "NameConflict")["message"]
    assert "ConfigMap holder" in ready_condition(kubectl, namespace, "held", "NameConflict")["message"]
    time.sleep(2)
    for name, svc in before.items():
        after = get(kubectl, namespace, "service", name)
        assert after["metadata"]["resourceVersion"] == svc["metadata"]["resourceVersion"], f"{name} was changed"
