"""Carry out a plan: the one apply/report path shared by every reconciler.

Children first (server-side apply, replica patches, deletions), so that status never claims what
does not exist yet; then the status merge patch with the observed resourceVersion as a
precondition; then one Event per transition the planner reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from kubernetes.client.exceptions import ApiException

from .. import constants as c
from ..cache import Store
from ..conditions import fit_status, foreign_owner, with_apply_failure
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


class ApplyError(Exception):
    """Children the apiserver refused, or that another owner holds: reported as a condition and an
    Event, then retried with the work queue's backoff (never hot)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _refused(e: ApiException) -> str:
    """The apiserver's own message (it names the field), else its reason."""
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except ValueError:
        return str(e.body or e.reason)


def _permanent(e: ApiException) -> bool:
    """A refusal that a retry cannot change. Server-side apply answers 500 "failed to create typed
    patch object" for an object its schema cannot merge (duplicate list-map keys, such as two Service
    ports with one number): that is the object's fault, not the server's."""
    return e.status in (400, 403, 422) or (e.status == 500 and "failed to create typed patch object" in (e.body or ""))


def apply_children(kube: KubeClient, store: Store, owner: Mapping[str, Any], apply: Iterable[dict[str, Any]],
                   scale: Iterable[tuple[str, str, int]] = (), delete: Iterable[tuple[str, str, str]] = ()) -> None:
    """Apply, scale and delete what a plan asks for. Every child is tried (a refused canary must not
    stop the routes going back to stable); the first refusal is raised afterwards as ApplyError."""
    owner_uid = (owner.get("metadata") or {}).get("uid") or ""
    failures: list[ApplyError] = []
    for obj in apply:
        try:
            result = _apply_one(kube, store, obj, owner_uid)
        except ApplyError as err:
            failures.append(err)
            continue
        if result is not None:
            store.put(obj["kind"], result)
    for ns, name, replicas in scale:
        result = kube.scale("Deployment", ns, name, replicas)
        if result is not None:
            store.put("Deployment", result)
    for kind, ns, name in delete:
        holder = foreign_owner(live(kube, store, kind, ns, name), owner_uid)
        if holder is not None:  # a generated name another object owns (history cleanup): never ours to delete
            log.warning("not deleting %s %s/%s: it belongs to %s", kind, ns, name, holder)
            continue
        if kube.delete(kind, ns, name):
            store.remove(kind, ns, name)
    if failures:
        raise failures[0]


def _apply_one(kube: KubeClient, store: Store, obj: dict[str, Any], owner_uid: str) -> dict[str, Any] | None:
    """Apply one child, never over an object another owner holds (ApplyError NameConflict).

    A child the watch cache lacks is nearly always one not created yet: it is applied without
    force, in the one request, and the apiserver itself refuses the name if it is taken, atomically.
    A second controller ownerReference is invalid (422), and a field someone else set to another
    value is a conflict (409). Only then a GET says who holds it (ours, but not cached yet, is
    applied again with force). No GET for every new child: that was 40 % of a busy operator's time."""
    meta = obj["metadata"]
    current = store.get(obj["kind"], meta["namespace"], meta["name"])
    if current is None:
        try:
            return kube.apply(obj, None, force=False)
        except ApiException as e:
            if not _name_taken(e):
                _refuse(obj, e)
        current = kube.get(obj["kind"], meta["namespace"], meta["name"])
    holder = foreign_owner(current, owner_uid)
    if holder is not None:
        raise ApplyError(c.REASON_NAME_CONFLICT, f"{obj['kind']} {meta['name']} already exists and belongs to "
                         f"{holder}: modelpilot never takes it over; rename this object or that one")
    try:
        return kube.apply(obj, current)
    except ApiException as e:
        _refuse(obj, e)


def _name_taken(e: ApiException) -> bool:
    """The refusal of an apply without force on an existing object that is not (only) ours."""
    return e.status == 409 or (e.status == 422 and "Only one reference can have Controller set to true" in (e.body or ""))


def _refuse(obj: Mapping[str, Any], e: ApiException) -> NoReturn:
    """ApplyError for a refusal a retry cannot change; the ApiException itself (a plain retry) otherwise."""
    if not _permanent(e):  # transient (5xx, timeouts)
        raise e
    raise ApplyError(c.REASON_APPLY_FAILED, f"the API server refused {obj['kind']} {obj['metadata']['name']}: {_refused(e)}") from e


def apply_and_report(kube: KubeClient, store: Store, kind: str, body: Mapping[str, Any], plan: Any, now: str,
                     write_status: bool = True) -> Any:
    """apply_children, then report the plan's status and Events (write_status=False: nothing to report
    yet); on ApplyError, report Ready=False with the refusal (once) and raise it, so that the work
    queue backs off."""
    try:
        apply_children(kube, store, body, plan.apply, getattr(plan, "scale", ()), plan.delete)
    except ApplyError as err:
        gen = int((body.get("metadata") or {}).get("generation") or 0)
        status, events = with_apply_failure(plan.status, plan.events, dict(body.get("status") or {}), err.reason, err.message, gen, now)
        report(kube, store, kind, body, status, events, now)
        raise
    return report(kube, store, kind, body, plan.status, plan.events, now) if write_status else None


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
