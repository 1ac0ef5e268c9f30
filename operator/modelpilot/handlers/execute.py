"""Carry out a plan: the one apply/report path shared by every reconciler.

Children first (server-side apply, replica patches, deletions), so that status never claims what
does not exist yet; then the status merge patch with the observed resourceVersion as a
precondition; then one Event per transition the planner reported.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from kubernetes.client.exceptions import ApiException

from ..conditions import fit_status
from ..controller import Store
from ..kube import KubeClient, merge_patch

log = logging.getLogger(__name__)
STALE = object()  # the status write met a newer object: reconcile again when the watch brings it


def live(kube: KubeClient, store: Store, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The live child from the watch cache; a GET on a cache miss (a read, never a write)."""
    body = store.get(kind, namespace, name)
    if body is None:
        body = kube.get(kind, namespace, name)
        if body is not None:
            store.put(kind, body)
    return body


def apply_children(kube: KubeClient, store: Store, apply: Iterable[dict[str, Any]],
                   scale: Iterable[tuple[str, str, int]] = (), delete: Iterable[tuple[str, str, str]] = ()) -> None:
    for obj in apply:
        meta = obj["metadata"]
        result = kube.apply(obj, live(kube, store, obj["kind"], meta["namespace"], meta["name"]))
        if result is not None:
            store.put(obj["kind"], result)
    for ns, name, replicas in scale:
        result = kube.scale("Deployment", ns, name, replicas)
        if result is not None:
            store.put("Deployment", result)
    for kind, ns, name in delete:
        if kube.delete(kind, ns, name):
            store.remove(kind, ns, name)


def report(kube: KubeClient, store: Store, kind: str, body: Mapping[str, Any], status: Mapping[str, Any],
           events: Iterable[tuple[str, str, str]], now: str) -> Any:
    """Write status if it changed and post the Events. Returns the updated body, None when nothing was
    written or the object is gone, or STALE on a resourceVersion conflict."""
    meta = body.get("metadata") or {}
    status = fit_status(dict(status))  # a status too large to store would fail every write, an abort too
    try:
        updated = kube.patch_status(kind, meta.get("namespace") or "", meta["name"], body.get("status") or {}, status,
                                    meta.get("resourceVersion"))
    except ApiException as e:
        if e.status == 409:
            return STALE
        if e.status == 404:
            return None
        raise
    if updated is not None:
        store.put(kind, updated)
        pruned = merge_patch(updated.get("status") or {}, status)
        if pruned:  # the CRD schema dropped fields we write: every resync would write again
            log.error("status fields of %s %s/%s were pruned by the CRD schema (apply crds/ again): %s",
                      kind, meta.get("namespace"), meta["name"], sorted(pruned))
    for etype, reason, message in events:
        kube.event(updated or body, etype, reason, message, now)
    return updated
