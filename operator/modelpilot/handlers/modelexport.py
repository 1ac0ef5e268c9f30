"""Reconcile one ModelExport: observe its Jobs and pods, plan (export/, pure), apply, report."""

from __future__ import annotations

import logging
from typing import Any

from .. import constants as c
from .. import metrics
from ..cache import Store
from ..clock import now_rfc3339
from ..config import OperatorConfig
from ..export import ExportObserved, plan_model_export
from ..kube import KubeClient
from .apply import STALE, apply_and_report

log = logging.getLogger(__name__)
KIND = "ModelExport"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def reconcile(kube: KubeClient, store: Store, config: OperatorConfig, namespace: str, name: str) -> float | None:
    body = store.get(KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    gen = int((body.get("metadata") or {}).get("generation") or 0)
    jobs: dict[int, dict[str, Any]] = {}
    for job in store.owned("Job", namespace, name, label=c.LABEL_EXPORT):
        job_name = (job.get("metadata") or {}).get("name") or ""
        suffix = job_name.rsplit("-g", 1)[-1]
        if job_name.startswith(f"{name}-export-g") and suffix.isdigit():
            jobs[int(suffix)] = job
    current = c.job_name(name, gen)
    pods = [p for p in store.owned("Pod", namespace, name, label=c.LABEL_EXPORT)
            if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == current]
    observed = ExportObserved(jobs=jobs, pods=pods, now=now_rfc3339())

    plan = plan_model_export(body, config, observed)

    updated = apply_and_report(kube, store, KIND, body, plan, observed.now)
    if updated is STALE:
        return 1.0
    for _, reason, _ in plan.events:
        if reason in ("ExportSucceeded", "ExportFailed", "ResultMissing"):
            metrics.EXPORTS.labels(result="succeeded" if reason == "ExportSucceeded" else "failed").inc()
    return None
