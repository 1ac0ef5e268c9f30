"""Served-model parity before traffic (spec.rollout.parityCheck, rollout/parity.py), on the planner's
simulator: a new revision of an exportRef model takes no traffic until its check Job passes; a failed
check aborts with the input and the difference; the check runs once per revision."""

from __future__ import annotations

import pytest

from modelpilot import constants as c
from modelpilot.conditions import get_condition
from modelpilot.rollout.parity import outcome

from .helpers import md
from .sim import Sim
from .test_strategies import GATEWAY, export_body, exported

pytestmark = pytest.mark.unit
CANARY = {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
MISMATCH = {"passed": False, "samples": 1, "sample": 0, "output": "logits", "maxAbsDiff": 0.75,
            "message": "recorded input 0 (features[1, 4]: 0.5, -1, 2, 0.25): output 'logits' differs by up to 0.75 at index 2"}


def second_artifact(rollout: dict = CANARY, verdict: dict | None = None, **spec) -> Sim:
    """Revision 1 serves; the export's new artifact makes revision 2, whose check ends with `verdict` (None: runs on)."""
    s = Sim(exported(rollout=rollout, traffic=GATEWAY, **spec))
    s.export = export_body("a" * 64)
    s.settle()
    assert s.status["stableRevision"] == 1 and s.parity_jobs == {}  # the first revision has nothing to protect
    s.parity_verdict = verdict
    s.export = export_body("b" * 64)
    return s


def test_no_weight_before_the_check_passes_then_the_steps_run() -> None:
    s = second_artifact()
    s.settle()
    assert list(s.parity_jobs) == [2] and s.weights == [(0, 0)]
    assert s.status["message"].startswith("revision 2: checking served-model parity (Job resnet-r2-parity)")
    assert s.deps[2]["status"]["readyReplicas"] >= 1  # the canary is up, to be checked
    s.finish_parity(2, {"passed": True, "samples": 8, "message": "8 recorded inputs answered within atol=0.001, rtol=0.001"})
    s.settle()
    assert s.status["weights"]["canary"] == 50 and s.status["rollout"]["parity"]["passed"] is True
    assert ("Normal", c.EVENT_PARITY_PASSED, "revision 2: 8 recorded inputs answered within atol=0.001, rtol=0.001") in s.events
    job = s.parity_jobs[2][0]
    s.control("promote")
    s.settle()
    assert s.status["stableRevision"] == 2 and s.parity_jobs[2][0] is job  # checked once, never re-created


def test_a_mismatch_aborts_before_any_traffic_and_names_the_input() -> None:
    s = second_artifact(verdict=MISMATCH)
    s.settle()
    assert all(w == (0, 0) for w in s.weights)
    aborted = s.status["rollout"]["aborted"]
    assert aborted["reason"] == c.ABORT_PARITY_FAILED and "recorded input 0 (features[1, 4]" in aborted["message"]
    ready = get_condition(s.status["conditions"], c.COND_READY)
    assert ready["status"] == "False" and ready["reason"] == c.REASON_ROLLOUT_ABORTED
    assert "differs by up to 0.75" in ready["message"] and "spec.rollout.parityCheck.enabled: false" in ready["message"]
    assert s.status["stableRevision"] == 1 and s.status["phase"] == "Degraded"


@pytest.mark.parametrize("rollout", [{"strategy": "direct"},
                                     {"strategy": "blueGreen", "blueGreen": {"autoPromotionEnabled": True}}])
def test_a_direct_or_blue_green_switch_waits_for_the_check(rollout: dict) -> None:
    s = second_artifact(rollout)
    s.settle()
    assert s.status["stableRevision"] == 1 and s.status["weights"]["stable"] == 100 and list(s.parity_jobs) == [2]
    s.finish_parity(2, {"passed": True, "samples": 3, "message": "3 recorded inputs answered"})
    s.settle()
    assert s.status["stableRevision"] == 2


def test_disabled_or_without_an_export_no_check_runs() -> None:
    s = second_artifact(verdict=None)
    s.body["spec"]["rollout"]["parityCheck"] = {"enabled": False}
    s.settle()
    assert s.parity_jobs == {} and s.status["weights"]["canary"] == 50
    plain = Sim(md(rollout=CANARY, traffic=GATEWAY))
    plain.settle()
    plain.set_spec(model={"uri": "pvc://m/v2/model.onnx", "format": "onnx"})
    plain.settle()
    assert plain.parity_jobs == {} and plain.status["weights"]["canary"] == 50


def test_a_check_that_outlasts_the_progress_deadline_aborts() -> None:
    s = second_artifact(verdict=None)
    s.body["spec"]["rollout"]["progressDeadlineSeconds"] = 60
    s.settle()
    s.advance(61)
    s.settle()
    assert s.status["rollout"]["aborted"]["reason"] == c.ABORT_PROGRESS_DEADLINE
    assert "parity not checked within progressDeadlineSeconds=60" in s.status["rollout"]["aborted"]["message"]


def test_the_check_job() -> None:
    s = second_artifact(verdict=None)
    s.body["spec"]["rollout"]["parityCheck"] = {"timeoutSeconds": 45}
    s.settle()
    job = s.parity_jobs[2][0]
    assert job["metadata"]["name"] == "resnet-r2-parity" and job["metadata"]["labels"][c.LABEL_COMPONENT] == "parity"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 45
    pod = spec["template"]["spec"]
    # the revision's pool (where its pods are), but no GPU for the check itself
    assert pod["nodeSelector"]["modelpilot.io/pool"] == "gpu-a100" and pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["modelpilot-parity"] and "/storage-init:" in container["image"]
    assert container["args"][:5] == ["--uri=export://resnet-export/onnx", "--manifest=pvc://art/resnet/manifest.json",
                                     "--url=http://resnet-r2.ml.svc:80", "--protocol=v2", "--model=resnet"]
    assert "nvidia.com/gpu" not in str(container["resources"]) and container["securityContext"]["readOnlyRootFilesystem"]


def test_outcome_reads_the_verdict_or_why_there_is_none() -> None:
    job = {"metadata": {"name": "j"}}
    assert outcome(None) is None and outcome((job, [])) is None  # running
    deadline = {**job, "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                                  "message": "Job was active longer than specified deadline"}]}}
    assert outcome((deadline, [])) == {"passed": False, "message": "the check did not finish: DeadlineExceeded: Job was "
                                                                    "active longer than specified deadline"}
    done = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert outcome((done, []))["passed"] is False  # succeeded without a verdict: not a pass


def test_a_rollout_in_flight_when_the_check_arrived_keeps_its_weight() -> None:
    """An operator upgraded mid-rollout finds a canary at 50 % and no verdict: it does not pull the weight back."""
    s = second_artifact(verdict=None)
    s.body["spec"]["rollout"]["parityCheck"] = {"enabled": False}  # the old operator: no check
    s.settle()
    assert s.status["weights"]["canary"] == 50
    del s.body["spec"]["rollout"]["parityCheck"]  # the new one checks, but not what already serves
    s.settle()
    assert s.parity_jobs == {} and s.status["weights"]["canary"] == 50 and "aborted" not in s.status["rollout"]
