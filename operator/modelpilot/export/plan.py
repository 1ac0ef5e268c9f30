"""Plan one reconcile of a ModelExport. Pure: observations in, objects and status out.

One Job per spec generation (`<name>-export-g<generation>`). A spec change starts the new Job,
deletes an obsolete one that is still running, and keeps the earlier artifacts listed until the
new export succeeds. The result is read from the export container's termination message, the
compact JSON the exporter writes (see modelpilot_exporters.manifest).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import constants as c
from ..api.errors import SpecError
from ..api.modelexport import parse_model_export
from ..conditions import changed_conditions, set_condition
from ..config import OperatorConfig
from ..jobs import job_condition, termination
from .job import CONTAINER, build_export_job, build_export_network_policy, build_spec_config_map, claim_fields

ARTIFACT_FIELDS = ("name", "format", "uri", "sha256", "sizeBytes", "maxAbsError", "latencyMs", "sourceLatencyMs",
                   "top1Agreement", "validated", "autotune")


@dataclass(frozen=True)
class ExportObserved:
    jobs: Mapping[int, Mapping[str, Any]]  # generation -> Job
    pods: list[Mapping[str, Any]]  # pods of the current generation's Job
    now: str


@dataclass
class ExportPlan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str, str]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)


def plan_model_export(body: Mapping[str, Any], config: OperatorConfig, observed: ExportObserved) -> ExportPlan:
    meta = body.get("metadata") or {}
    gen = int(meta.get("generation") or 0)
    name = meta["name"]
    now = observed.now
    status: dict[str, Any] = copy.deepcopy(dict(body.get("status") or {}))
    old_conds = list(status.get("conditions") or [])
    job_name = c.job_name(name, gen)
    plan = ExportPlan()

    try:
        cm = build_spec_config_map(body, job_name)
        job = build_export_job(body, job_name, config)
    except SpecError as err:
        conds = set_condition(old_conds, c.COND_READY, False, c.REASON_INVALID_SPEC, str(err), gen, now)
        status.update({"phase": "Failed", "observedGeneration": gen, "conditions": conds, "message": str(err)})
        plan.status = status
        plan.events = [("Warning", c.REASON_INVALID_SPEC, str(err))] if changed_conditions(old_conds, conds) else []
        return plan

    if observed.jobs.get(gen) is None and _finished(status, gen, job_name):
        # ttlSecondsAfterFinished deleted this generation's Job: its result is in status already.
        # Running it again would reset status and clear the output directory that pods may serve.
        plan.status = status
        return plan
    policy = build_export_network_policy(body, config)
    plan.apply = [cm, job] if policy is None else [cm, policy, job]
    for g, old in observed.jobs.items():
        active = not (job_condition(old, "Complete") or job_condition(old, "Failed"))
        if g != gen and active:
            plan.delete.append(("Job", meta["namespace"], c.job_name(name, g)))
            plan.delete.append(("ConfigMap", meta["namespace"], c.job_name(name, g)))

    current = observed.jobs.get(gen)
    phase, reason, message = _job_phase(body, observed, current, job_name, status)
    conds = set_condition(old_conds, c.COND_JOB_COMPLETE, phase in ("Succeeded", "Failed"), reason, message, gen, now)
    conds = set_condition(conds, c.COND_READY, phase == "Succeeded", reason if phase != "Running" else c.REASON_EXPORT_RUNNING,
                          message, gen, now)
    conds = _validated(conds, phase, message, status, gen, now)
    status.update({"phase": phase, "observedGeneration": gen, "conditions": conds, "jobName": job_name})
    if phase == "Failed":
        status["message"] = message
    else:
        status.pop("message", None)
    _stamp_times(status, current, phase, now)
    plan.status = status
    for cond in changed_conditions(old_conds, conds):
        if cond["type"] == c.COND_READY and phase in ("Succeeded", "Failed"):
            plan.events.append(("Normal" if phase == "Succeeded" else "Warning", reason, message))
    return plan


def _job_phase(body: Mapping[str, Any], observed: ExportObserved, current: Mapping[str, Any] | None, job_name: str,
               status: dict[str, Any]) -> tuple[str, str, str]:
    """(phase, reason, message) of the current generation's Job; a success records its artifacts in status."""
    if current is None:
        return "Pending", c.REASON_JOB_CREATED, f"Job {job_name} created"
    if job_condition(current, "Complete"):
        result, raw = termination(observed.pods, "Succeeded", CONTAINER)
        if result is None or result.get("phase") != "Succeeded":
            return "Failed", c.REASON_RESULT_MISSING, (f"Job {job_name} succeeded but left no export result in its termination message"
                                               + (f": {raw}" if raw else ""))
        status["artifacts"] = [{k: a[k] for k in ARTIFACT_FIELDS if a.get(k) is not None} for a in result.get("artifacts") or []]
        if result.get("manifestUri"):
            status["manifestUri"] = result["manifestUri"]
        _record_validation_inputs(status, result)
        return "Succeeded", c.REASON_EXPORT_SUCCEEDED, _succeeded_message(status["artifacts"])
    failed = job_condition(current, "Failed")
    if failed is not None:
        result, raw = termination(observed.pods, "Failed", CONTAINER)
        _record_validation_inputs(status, result)
        exporter_message = (result or {}).get("message") or raw
        return "Failed", c.REASON_EXPORT_FAILED, exporter_message or (
            f"Job {job_name} failed ({failed.get('reason')}: {failed.get('message', '')})" + _limit_behind(body, failed.get("reason")))
    jst = current.get("status") or {}
    if int(jst.get("active") or 0) > 0 and any((p.get("status") or {}).get("phase") == "Running" for p in observed.pods):
        return "Running", c.REASON_JOB_RUNNING, f"Job {job_name} is running"
    why = _unscheduled_reason(observed.pods)
    if why:
        return "Pending", c.REASON_POD_UNSCHEDULABLE, f"Job {job_name} is waiting for its pod: {why} ({_fields_behind(body, why)})"
    return "Pending", c.REASON_JOB_PENDING, f"Job {job_name} is waiting for its pod"


def _kept_unvalidated(artifacts: list[Mapping[str, Any]]) -> list[str]:
    return [str(a.get("name")) for a in artifacts if a.get("validated") is False]


def _succeeded_message(artifacts: list[Mapping[str, Any]]) -> str:
    kept = _kept_unvalidated(artifacts)
    if not kept:
        return f"{len(artifacts)} artifact(s) exported and validated"
    return f"{len(artifacts)} artifact(s) exported; " + c.MSG_VALIDATION_FAILED_KEPT.format(targets=", ".join(kept))


def _validated(conds: list[dict[str, Any]], phase: str, message: str, status: Mapping[str, Any], gen: int,
               now: str) -> list[dict[str, Any]]:
    """Validated: False for a failed validation (the export failed, or warnOnly kept an artifact), True
    when every artifact met its criterion; unchanged while the export runs."""
    if phase == "Failed" and "validation failed" in message:
        return set_condition(conds, c.COND_VALIDATED, False, c.REASON_VALIDATION_FAILED, message, gen, now)
    if phase != "Succeeded":
        return conds
    kept = _kept_unvalidated(status.get("artifacts") or [])
    if kept:
        return set_condition(conds, c.COND_VALIDATED, False, c.REASON_VALIDATION_FAILED,
                             c.MSG_VALIDATION_FAILED_KEPT.format(targets=", ".join(kept)), gen, now)
    return set_condition(conds, c.COND_VALIDATED, True, c.REASON_VALIDATION_PASSED,
                         "every artifact met its validation criterion", gen, now)


def _record_validation_inputs(status: dict[str, Any], result: Mapping[str, Any] | None) -> None:
    """status.validationInputs: which inputs the exporter validated on (its result's `validation`)."""
    v = (result or {}).get("validation") or {}
    if v.get("samplesSource"):
        status["validationInputs"] = f"{v['samplesSource']} ({v.get('samples')} samples)"


def _stamp_times(status: dict[str, Any], current: Mapping[str, Any] | None, phase: str, now: str) -> None:
    """startTime and completionTime from the Job; a new Job clears the previous one's."""
    jst = (current or {}).get("status") or {}
    if current is None:
        status.pop("startTime", None)
        status.pop("completionTime", None)
    if jst.get("startTime"):
        status["startTime"] = jst["startTime"]
    if jst.get("completionTime") or (phase == "Failed" and current is not None):
        status["completionTime"] = jst.get("completionTime") or _failed_time(current) or now
    elif phase in ("Pending", "Running"):
        status.pop("completionTime", None)


def _finished(status: Mapping[str, Any], gen: int, job_name: str) -> bool:
    """Status records that generation `gen`'s Job ran to an end (succeeded or failed)."""
    return (status.get("jobName") == job_name and status.get("observedGeneration") == gen
            and status.get("phase") in ("Succeeded", "Failed"))


def _failed_time(job: Mapping[str, Any] | None) -> str | None:
    cond = job_condition(job, "Failed")
    return (cond or {}).get("lastTransitionTime")


# The Job controller's failure reasons that a spec field sets, and that field.
_JOB_LIMITS = {"DeadlineExceeded": ("activeDeadlineSeconds", 3600), "BackoffLimitExceeded": ("backoffLimit", 1)}


def _limit_behind(body: Mapping[str, Any], job_reason: str | None) -> str:
    """"; spec.<field> is N" when the Job failed on a limit the spec sets."""
    if job_reason not in _JOB_LIMITS:
        return ""
    name, default = _JOB_LIMITS[job_reason]
    return f"; spec.{name} is {(body.get('spec') or {}).get(name, default)}: raise it if the export needs more"


def _fields_behind(body: Mapping[str, Any], why: str) -> str:
    """The spec fields a scheduler message points at: those naming a missing claim, else the placement."""
    for claim, fields in claim_fields(parse_model_export(body)).items():
        if f'persistentvolumeclaim "{claim}"' in why:
            return f"PersistentVolumeClaim {claim} is named by {', '.join(fields)}"
    return "check spec.nodePool and spec.resources"


def _unscheduled_reason(pods: list[Mapping[str, Any]]) -> str | None:
    """The scheduler's own words when the export pod cannot be placed (a missing PVC, no node)."""
    for p in pods:
        for cond in (p.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("message"):
                return str(cond["message"])[:512]
    return None
