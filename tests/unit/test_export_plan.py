"""The ModelExport Job builder and the status planner: every phase transition, without a cluster."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import yaml

import modelpilot
from modelpilot.conditions import get_condition
from modelpilot.config import parse_config
from modelpilot.export import ExportObserved, plan_model_export
from modelpilot.export.job import build_export_job

from .helpers import CONFIG

pytestmark = pytest.mark.unit
T0 = "2026-01-01T00:00:00Z"

BODY = {
    "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport",
    "metadata": {"name": "resnet", "namespace": "ml", "uid": "u1", "generation": 1, "resourceVersion": "5"},
    "spec": {
        "source": {"uri": "pvc://models/resnet/model.pt2", "format": "pytorch", "secretRef": {"name": "creds"}},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 3, 224, 224]}],
        "targets": [{"format": "onnx", "quantization": {"mode": "dynamic"}}],
        "output": {"uri": "pvc://artifacts/resnet"},
        "nodePool": "cpu",
        "backoffLimit": 2, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60,
    },
}
RESULT = {"phase": "Succeeded", "manifestUri": "pvc://artifacts/resnet/manifest.json",
          "artifacts": [{"name": "onnx", "format": "onnx", "uri": "pvc://artifacts/resnet/onnx/model.onnx",
                         "sha256": "ab" * 32, "sizeBytes": 1234, "maxAbsError": 0.002, "latencyMs": 1.5,
                         "sourceLatencyMs": 4.0, "top1Agreement": 0.99, "validated": True,
                         # an autotuned target's table is carried into status as is
                         "autotune": {"chosen": "transformer+dynamic", "batchSizes": [1, 32],
                                      "candidates": [{"name": "transformer+dynamic", "latencyMs": [0.2, 2.1],
                                                      "sizeBytes": 460522, "accuracyDrop": 0.0,
                                                      "withinBudget": True}]}}]}


def job(conditions=(), active=0, start="2026-01-01T00:00:01Z", completion=None):
    st = {"active": active, "startTime": start, "conditions": [{"type": t, "status": "True", "reason": r, "message": "m",
                                                                "lastTransitionTime": "2026-01-01T00:01:00Z"} for t, r in conditions]}
    if completion:
        st["completionTime"] = completion
    return {"metadata": {"name": "resnet-export-g1"}, "status": st}


def pod(phase, message=None, exit_code=0):
    cs = {"name": "export", "state": {"running": {}}}
    if phase in ("Succeeded", "Failed"):
        cs["state"] = {"terminated": {"exitCode": exit_code, **({"message": message} if message else {})}}
    return {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:01Z"}, "status": {"phase": phase, "containerStatuses": [cs]}}


def plan(body=BODY, jobs=None, pods=()):
    return plan_model_export(body, CONFIG, ExportObserved(jobs=jobs or {}, pods=list(pods), now=T0))


def test_job_runs_the_same_cli_with_the_spec_mounted():
    p = plan()
    cm, j = p.apply
    assert j["metadata"]["name"] == "resnet-export-g1" and cm["metadata"]["name"] == "resnet-export-g1"
    c = j["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["modelpilot-export"] and c["args"] == ["-f", "/etc/modelpilot/export/modelexport.yaml"]
    manifest = yaml.safe_load(cm["data"]["modelexport.yaml"])
    assert manifest["kind"] == "ModelExport" and manifest["spec"] == BODY["spec"]
    assert c["envFrom"] == [{"secretRef": {"name": "creds"}}]
    mounts = {m["mountPath"]: m.get("readOnly") for m in c["volumeMounts"]}
    assert mounts["/mnt/pvc/models"] is True and mounts["/mnt/pvc/artifacts"] is False
    s = j["spec"]
    assert (s["backoffLimit"], s["activeDeadlineSeconds"], s["ttlSecondsAfterFinished"]) == (2, 600, 60)
    assert s["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    assert s["template"]["spec"]["nodeSelector"] == {"modelpilot.io/pool": "cpu"}
    assert s["template"]["metadata"]["labels"]["modelpilot.io/model-export"] == "resnet"


def test_job_image_follows_the_source_format_and_is_overridable():
    def image(body, config=CONFIG):
        return build_export_job(body, "j", config)["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image(BODY) == f"ghcr.io/modelpilot/exporter-pytorch:{modelpilot.__version__}"
    for fmt in ("onnx", "tensorflow"):
        body = copy.deepcopy(BODY)
        body["spec"]["source"]["format"] = fmt
        assert image(body) == f"ghcr.io/modelpilot/exporter-{fmt}:{modelpilot.__version__}"
    images = parse_config({"imageRegistry": "registry.local/mp", "imageTag": "abc123",
                           "images": {"exporter-tensorflow": "registry.local/tf-exporter:1"}})
    config = dataclasses.replace(CONFIG, images=images.images, image_registry=images.image_registry,
                                 image_tag=images.image_tag)
    assert image(BODY, config) == "registry.local/mp/exporter-pytorch:abc123"
    body = copy.deepcopy(BODY)
    body["spec"]["source"]["format"] = "tensorflow"
    assert image(body, config) == "registry.local/tf-exporter:1"
    body = copy.deepcopy(BODY)
    body["spec"]["image"] = "ghcr.io/modelpilot/exporter-onnx:dev"
    assert build_export_job(body, "j", CONFIG)["spec"]["template"]["spec"]["containers"][0]["image"] == body["spec"]["image"]


@pytest.mark.parametrize("image", ["docker.io/attacker/exporter:1", "ghcr.io/modelpilotx/exporter:1", "busybox",
                                   "ghcr.io/modelpilot"])
def test_an_export_image_outside_the_allowlist_fails_without_a_job(image):
    """Issue 11, scenario 3: the export Job holds the namespace's Secrets and a writable claim."""
    body = copy.deepcopy(BODY)
    body["spec"]["image"] = image
    p = plan(body)
    assert p.apply == [] and p.status["phase"] == "Failed"
    assert p.status["message"].startswith("spec.image: image") and "allowedExportImages" in p.status["message"]
    assert p.events and p.events[0][0] == "Warning"


def test_the_export_image_allowlist_comes_from_the_config():
    from modelpilot.config import parse_config
    config = parse_config({"nodePools": {"cpu": {"nodeSelector": {"p": "cpu"}}},
                           "allowedExportImages": ["registry.local/", "docker.io/me/exporter:1.2"]})
    for image, ok in [("registry.local/x/exporter:dev", True), ("docker.io/me/exporter:1.2", True),
                      ("docker.io/me/exporter:1.2@sha256:" + "a" * 64, True), ("docker.io/me/exporter:1.3", False),
                      ("ghcr.io/modelpilot/exporter:0.1.0", False)]:
        assert config.export_image_allowed(image) is ok, image
    assert parse_config({"allowedExportImages": ["*"]}).export_image_allowed("anything:1")


def test_with_network_policies_on_an_export_pod_admits_no_ingress():
    from modelpilot.config import parse_config
    config = parse_config({"nodePools": {"cpu": {"nodeSelector": {"p": "cpu"}}}, "networkPolicy": {"enabled": True}})
    p = plan_model_export(BODY, config, ExportObserved(jobs={}, pods=[], now=T0))
    np = next(o for o in p.apply if o["kind"] == "NetworkPolicy")
    assert np["spec"] == {"podSelector": {"matchLabels": {"modelpilot.io/model-export": "resnet"}},
                          "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": [{}]}
    assert [o["kind"] for o in plan().apply] == ["ConfigMap", "Job"]  # off by default


def test_pending_then_running():
    assert plan().status["phase"] == "Pending"
    st = plan(jobs={1: job(active=1)}, pods=[pod("Running")]).status
    assert st["phase"] == "Running" and st["startTime"] == "2026-01-01T00:00:01Z" and st["jobName"] == "resnet-export-g1"


def test_success_records_the_exporters_result():
    p = plan(jobs={1: job([("Complete", "Completed")], completion="2026-01-01T00:02:00Z")}, pods=[pod("Succeeded", json.dumps(RESULT))])
    st = p.status
    assert st["phase"] == "Succeeded" and st["completionTime"] == "2026-01-01T00:02:00Z"
    assert st["artifacts"] == RESULT["artifacts"] and st["manifestUri"] == RESULT["manifestUri"]
    assert get_condition(st["conditions"], "Ready")["status"] == "True"
    assert p.events == [("Normal", "ExportSucceeded", "1 artifact(s) exported and validated")]


def test_failure_shows_the_exporters_own_message():
    msg = "spec.targets[0].quantization.calibration: static int8 needs calibration data; set uri to an .npz or synthetic: true"
    p = plan(jobs={1: job([("Failed", "PodFailurePolicy")])}, pods=[pod("Failed", json.dumps({"phase": "Failed", "message": msg}), 2)])
    assert p.status["phase"] == "Failed" and p.status["message"] == msg
    assert p.events == [("Warning", "ExportFailed", msg)]


def test_failure_without_result_falls_back_to_the_log_tail_or_job_reason():
    st = plan(jobs={1: job([("Failed", "BackoffLimitExceeded")])}, pods=[pod("Failed", "Traceback...\nMemoryError", 137)]).status
    assert st["message"] == "MemoryError"
    st = plan(jobs={1: job([("Failed", "DeadlineExceeded")])}, pods=[]).status
    assert "DeadlineExceeded" in st["message"]


def test_success_without_result_is_not_a_silent_success():
    st = plan(jobs={1: job([("Complete", "Completed")])}, pods=[pod("Succeeded")]).status
    assert st["phase"] == "Failed" and "no export result" in st["message"]


def test_spec_change_keeps_old_artifacts_and_stops_obsolete_running_job():
    done = plan(jobs={1: job([("Complete", "Completed")])}, pods=[pod("Succeeded", json.dumps(RESULT))]).status
    body = copy.deepcopy(BODY)
    body["metadata"]["generation"] = 2
    body["status"] = done
    p = plan(body, jobs={1: job([("Complete", "Completed")])})
    assert p.apply[1]["metadata"]["name"] == "resnet-export-g2"
    assert p.status["phase"] == "Pending" and p.status["artifacts"] == RESULT["artifacts"]
    assert p.delete == []  # the finished Job of generation 1 is left to its TTL
    running_old = plan(body, jobs={1: job(active=1)})
    assert ("Job", "ml", "resnet-export-g1") in running_old.delete


def test_unknown_node_pool_fails_without_a_job():
    body = copy.deepcopy(BODY)
    body["spec"]["nodePool"] = "tpu"
    p = plan(body)
    assert p.apply == [] and p.status["phase"] == "Failed" and "spec.nodePool" in p.status["message"]


def test_idle_replan_is_identical():
    jobs = {1: job([("Complete", "Completed")], completion="2026-01-01T00:02:00Z")}
    pods = [pod("Succeeded", json.dumps(RESULT))]
    st = plan(jobs=jobs, pods=pods).status
    body = copy.deepcopy(BODY)
    body["status"] = st
    again = plan_model_export(body, CONFIG, ExportObserved(jobs=jobs, pods=pods, now="2030-01-01T00:00:00Z"))
    assert again.status == st and again.events == []


def test_unschedulable_export_pod_says_why():
    p = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": 'persistentvolumeclaim "models" not found'}]}}
    st = plan(jobs={1: job(active=1)}, pods=[p]).status
    assert st["phase"] == "Pending" and 'persistentvolumeclaim "models" not found' in get_condition(st["conditions"], "Ready")["message"]


@pytest.mark.parametrize("images, message", [
    ({"exporter": "x"}, "images.exporter: the exporter image is chosen by source format"),
    ({"exportr-onnx": "x"}, "images.exportr-onnx: unknown image kind; use one of triton"),
    ("ghcr.io/x", "images: expected a mapping"),
])
def test_bad_image_config_names_the_key(images, message):
    from modelpilot.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config({"images": images})


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_a_finished_job_deleted_by_its_ttl_is_never_run_again(outcome):
    # ttlSecondsAfterFinished deleted the Job: status keeps the result, and nothing is created again
    # (a re-run would clear the output directory under pods that serve it).
    if outcome == "Succeeded":
        finished = plan(jobs={1: job([("Complete", "Completed")], completion="2026-01-01T00:02:00Z")}, pods=[pod("Succeeded", json.dumps(RESULT))])
    else:
        finished = plan(jobs={1: job([("Failed", "BackoffLimitExceeded")])}, pods=[pod("Failed", "bad input")])
    assert finished.status["phase"] == outcome
    body = {**BODY, "status": finished.status}
    after = plan(body, jobs={})
    assert [o["kind"] for o in after.apply] == [] and after.delete == [] and after.events == []
    assert after.status == finished.status


def test_a_new_generation_still_runs_after_the_ttl_deleted_the_old_job():
    done = plan(jobs={1: job([("Complete", "Completed")], completion="2026-01-01T00:02:00Z")}, pods=[pod("Succeeded", json.dumps(RESULT))])
    body = copy.deepcopy({**BODY, "status": done.status})
    body["metadata"]["generation"] = 2
    after = plan(body, jobs={})
    assert [o["metadata"]["name"] for o in after.apply] == ["resnet-export-g2", "resnet-export-g2"]
    assert after.status["phase"] == "Pending" and after.status["artifacts"] == RESULT["artifacts"]


def test_a_pod_waiting_for_a_missing_claim_names_the_spec_fields_that_use_it():
    # Found by the bad-input campaign: the scheduler's words name the claim, not the field to fix.
    waiting = {"metadata": {"name": "p", "creationTimestamp": T0}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "message": '0/8 nodes are available: persistentvolumeclaim "models" not found.'}]}}
    p = plan(jobs={1: job(active=1)}, pods=[waiting])
    ready = get_condition(p.status["conditions"], "Ready")
    assert ready["reason"] == "PodUnschedulable"
    assert "PersistentVolumeClaim models is named by spec.source.uri" in ready["message"], ready["message"]


def test_a_job_that_ran_out_of_time_names_the_spec_field_that_set_the_limit():
    # Found by the bad-input campaign (activeDeadlineSeconds: 1): the Job controller's words name no field.
    p = plan(jobs={1: job([("Failed", "DeadlineExceeded")])})
    ready = get_condition(p.status["conditions"], "Ready")
    assert ready["reason"] == "ExportFailed" and "spec.activeDeadlineSeconds is 600" in ready["message"], ready["message"]


def test_validation_passed_is_a_condition_and_status_names_the_inputs_used():
    result = {**RESULT, "validation": {"samplesSource": "synthetic (seed 20240601, from spec.inputs)", "samples": 8}}
    st = plan(jobs={1: job([("Complete", "Completed")])}, pods=[pod("Succeeded", json.dumps(result))]).status
    cond = get_condition(st["conditions"], "Validated")
    assert (cond["status"], cond["reason"]) == ("True", "ValidationPassed")
    assert st["validationInputs"] == "synthetic (seed 20240601, from spec.inputs) (8 samples)"


def test_an_artifact_kept_by_warn_only_is_validated_false_and_never_called_validated():
    art = {**RESULT["artifacts"][0], "name": "int8", "validated": False}
    result = {**RESULT, "artifacts": [RESULT["artifacts"][0], art]}
    p = plan(jobs={1: job([("Complete", "Completed")])}, pods=[pod("Succeeded", json.dumps(result))])
    cond = get_condition(p.status["conditions"], "Validated")
    assert (cond["status"], cond["reason"]) == ("False", "ValidationFailed")
    assert cond["message"] == "failed validation, kept by spec.validation.warnOnly: int8"
    assert p.events == [("Normal", "ExportSucceeded",
                         "2 artifact(s) exported; failed validation, kept by spec.validation.warnOnly: int8")]


def test_a_failed_validation_is_validated_false():
    msg = "spec.targets[0] (int8): validation failed: output 'logits': top-1 agreement 0.125 < 0.85"
    st = plan(jobs={1: job([("Failed", "PodFailurePolicy")])}, pods=[pod("Failed", json.dumps({"phase": "Failed", "message": msg}), 1)]).status
    cond = get_condition(st["conditions"], "Validated")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "ValidationFailed", msg)
