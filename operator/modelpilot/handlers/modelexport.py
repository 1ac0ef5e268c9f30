"""Reconcile one ModelExport: observe its Jobs and pods, plan (export/, pure), apply, report."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from .. import constants as c
from .. import metrics
from ..config import OperatorConfig
from ..controller import Store, now_rfc3339
from ..export import ExportObserved, plan_model_export
from ..kube import KubeClient
from .modeldeployment import _live

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

    for obj in plan.apply:
        meta = obj["metadata"]
        result = kube.apply(obj, _live(kube, store, obj["kind"], meta["namespace"], meta["name"]))
        if result is not None:
            store.put(obj["kind"], result)
    for kind, ns, child in plan.delete:
        if kube.delete(kind, ns, child):
            store.remove(kind, ns, child)
    try:
        updated = kube.patch_status(KIND, namespace, name, body.get("status") or {}, plan.status,
                                    (body.get("metadata") or {}).get("resourceVersion"))
    except ApiException as e:
        if e.status == 409:
            return 1.0
        if e.status == 404:
            return None
        raise
    if updated is not None:
        store.put(KIND, updated)
    for etype, reason, message in plan.events:
        kube.event(updated or body, etype, reason, message, observed.now)
        if reason in ("ExportSucceeded", "ExportFailed", "ResultMissing"):
            metrics.EXPORTS.labels(result="succeeded" if reason == "ExportSucceeded" else "failed").inc()
    return None
