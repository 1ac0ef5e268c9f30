"""Served-model parity before traffic (spec.rollout.parityCheck): a new revision of an exportRef
model takes no traffic until it answers the inputs its ModelExport validated on as the artifact did
at export time. Pure: the check Job to create, and the gate's verdict from what the handler saw.

The Job (`<name>-r<N>-parity`, storage-init image, `modelpilot-parity`) resolves the target from
the export's manifest like the storage initializer does, reads its `parity/<target>.json`, sends
each recorded input to the revision's Service and writes the verdict to its termination message
(modelpilot.comparator.parity). The verdict is kept in status.rollout.parity, so the check runs
once per revision; a failed check aborts the rollout with the input and the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .. import constants as c
from .. import objectmeta
from ..api.modeldeployment import ModelDeployment
from ..comparator.compare import RUNTIME_PROTOCOLS
from ..config import OperatorConfig
from ..jobs import job_condition, termination
from ..placement import Scheduling
from ..render import PVC_ROOT, ExportArtifact, labels, owner_reference, source_claims
from .control import abort
from .model import Reconcile, ready_replicas

COMPONENT: Final = c.COMPONENT_PARITY
CONTAINER: Final = "parity"
REQUEST_TIMEOUT_SECONDS: Final = 30
TTL_SECONDS_AFTER_FINISHED: Final = 3600  # the verdict is in status; the Job stays a while for its logs


def job_name(md_name: str, revision: int) -> str:
    return f"{c.revision_name(md_name, revision)}-{COMPONENT}"


def wanted(rc: Reconcile, stable: int | None, target: int) -> bool:
    """A check runs for a new revision of an exportRef model rolling out next to a stable one."""
    return (rc.md.rollout.parity_check.enabled and rc.export.artifact is not None and stable is not None
            and target != stable and not rc.ro.get("pinned"))


def gate(rc: Reconcile, stable: int | None, target: int) -> bool:
    """True when `target` may take traffic. Otherwise the check is created or still running
    (rc.message says so), or it failed and the rollout is aborted."""
    if not wanted(rc, stable, target):
        return True
    done = rc.ro.get("parity") or {}
    if done.get("revision") == target and done.get("passed") or _took_traffic(rc, target):
        return True
    verdict = outcome(rc.obs.parity_jobs.get(target))
    if verdict is None:
        _start(rc, target)
        return False
    if verdict["passed"]:
        rc.ro["parity"] = {"revision": target, "passed": True, "samples": verdict.get("samples"), "message": verdict["message"]}
        rc.event("Normal", c.EVENT_PARITY_PASSED, f"revision {target}: {verdict['message']}")
        return True
    abort(rc, target, c.ABORT_PARITY_FAILED, f"served-model parity check failed: {verdict['message']}; the revision "
          "answers differently from its export (set spec.rollout.parityCheck.enabled: false to roll it out anyway)")
    return False


def _took_traffic(rc: Reconcile, target: int) -> bool:
    """The rollout is past its first step, or the revision carries traffic: it started before this
    operator checked parity (an upgrade mid-rollout). Holding it now would take its weight away."""
    w = rc.status.get("weights") or {}
    past_first = rc.ro.get("revision") == target and int(rc.ro.get("step") or 0) > 0
    carries = rc.status.get("canaryRevision") == target and (int(w.get("canary") or 0) > 0 or int(w.get("mirror") or 0) > 0)
    return past_first or carries


def _start(rc: Reconcile, target: int) -> None:
    name = job_name(rc.md.name, target)
    if target not in rc.obs.parity_jobs and ready_replicas(rc.dep(target)) >= 1:
        job = build_parity_job(rc.md, target, rc.export.artifact, rc.config, rc.scheduling)
        rc.plan.apply.append(job)  # once: a Job's template cannot change
    rc.message = (f"revision {target}: checking served-model parity (Job {name}) before it takes traffic"
                  if target in rc.obs.parity_jobs else f"revision {target}: waiting for a ready pod to check served-model parity")
    rc.plan.wake(5.0)


def outcome(job_and_pods: tuple[Mapping[str, Any], list[Mapping[str, Any]]] | None) -> dict[str, Any] | None:
    """The check's verdict ({"passed", "message", ...}), or None while there is none yet."""
    if job_and_pods is None:
        return None
    job, pods = job_and_pods
    if job_condition(job, "Complete"):
        result, raw = termination(pods, "Succeeded", CONTAINER)
        if result and "passed" in result:
            return result
        return {"passed": False, "message": f"the check Job succeeded but left no verdict ({raw or 'no termination message'})"}
    failed = job_condition(job, "Failed")
    if failed:
        result, raw = termination(pods, "Failed", CONTAINER)
        if result and "message" in result:
            return {**result, "passed": False}
        why = raw or f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip()
        return {"passed": False, "message": f"the check did not finish: {why}"}
    return None


def build_parity_job(md: ModelDeployment, revision: int, art: ExportArtifact | None, config: OperatorConfig,
                     scheduling: Scheduling) -> dict[str, Any]:
    assert art is not None
    claims = source_claims(md, art, config.mount_pvc_sources)  # the storage initializer's claims: the manifest's
    url = f"http://{c.revision_name(md.name, revision)}.{md.namespace}.svc:{md.port}"
    args = [f"--uri=export://{md.model.export_name}/{art.target}", f"--manifest={art.manifest_uri}", f"--url={url}",
            f"--protocol={RUNTIME_PROTOCOLS[md.runtime.kind]}", f"--model={md.model.name}",
            f"--timeout={REQUEST_TIMEOUT_SECONDS}"]
    if md.model.endpoint:
        args.append(f"--endpoint={md.model.endpoint}")
    container: dict[str, Any] = {
        "name": CONTAINER, "image": config.image_for("storage-init"), "command": ["modelpilot-parity"], "args": args,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": objectmeta.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         *({"name": f"model-pvc-{i}", "mountPath": f"{PVC_ROOT}/{cl}", "readOnly": True}
                           for i, cl in enumerate(claims))],
    }
    if md.model.secret_ref:
        container["envFrom"] = [{"secretRef": {"name": md.model.secret_ref}}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": objectmeta.pod_security_context(), "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                    *({"name": f"model-pvc-{i}", "persistentVolumeClaim": {"claimName": cl, "readOnly": True}}
                      for i, cl in enumerate(claims))],
    }
    if scheduling.node_selector:  # the revision's pool: a node that surely reaches its pods
        pod["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        pod["tolerations"] = [dict(t) for t in scheduling.tolerations]
    pod_labels = labels(md, revision, component=COMPONENT)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(md.name, revision), "namespace": md.namespace, "labels": pod_labels,
                     "ownerReferences": [owner_reference(md)]},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": md.rollout.parity_check.timeout_seconds,
                 "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
                 "template": {"metadata": {"labels": dict(pod_labels)}, "spec": pod}},
    }
