"""Kopf registrations: every watch only updates the store and enqueues the owning resource.

No Kopf change-handlers (on.create/update) are used, so Kopf writes no progress or diff-base
annotations and adds no finalizers: the operator's only writes are its children, status and Events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from .. import constants as c
from .. import kinds, metrics
from ..cache import Store
from ..config import OperatorConfig, load_config
from ..kinds import CARRIER_KINDS, CHILD_KINDS, CUSTOM_KINDS, SYNCED_KINDS
from ..kube import KubeClient
from ..leader import LEADER, LeaderElector
from ..workqueue import WorkQueue, backoff
from . import modeldeployment, modelexport

log = logging.getLogger(__name__)


class OperatorState:
    """Process-wide state, created at startup."""

    store: Store
    queue: WorkQueue
    kube: KubeClient
    config: OperatorConfig
    executor: concurrent.futures.ThreadPoolExecutor
    workers: int = 8
    resync_seconds: float = 300.0
    namespaces: list[str] = []  # empty: all namespaces
    elector: LeaderElector | None = None  # None: no leader election, always reconcile
    tasks: list[asyncio.Task[Any]] = []


RT = OperatorState()
RECONCILERS = {"ModelDeployment": modeldeployment.reconcile, "ModelExport": modelexport.reconcile}
MANAGED = {c.LABEL_MANAGED_BY: c.MANAGED_BY}


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's diff base serves on.create/on.update handlers, which diff an object's old and new
    essence. Only on.event handlers are registered here, yet Kopf built the essence (a deep copy of
    the whole body) for every watch event: 15 % of the operator's CPU at N=1000 (py-spy). Nothing
    is built, stored or read."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # we post our own Events, on transitions only
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.batching.batch_window = 0.01
    # Kopf keeps a worker task (and its queue) per object until it has been idle this long; at
    # thousands of objects the default 5 s holds a burst's memory for longer than it needs.
    settings.batching.idle_timeout = 1.0
    # Filter children on the apiserver, not in Kopf: a production cluster has thousands of Pods,
    # Services and ConfigMaps that are not ours, and each would cost a watch event and a worker.
    for child in CHILD_KINDS:
        settings.watching.label_selectors[child.group, child.plural] = child.label_selector
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    RT.store = Store()
    RT.queue = WorkQueue()
    RT.config = load_config()
    RT.kube = KubeClient.from_environment(pool_size=RT.workers * 2)
    RT.executor = concurrent.futures.ThreadPoolExecutor(max_workers=RT.workers, thread_name_prefix="reconcile")
    loop = asyncio.get_running_loop()
    if RT.elector is None:
        LEADER.set(1)
        await _start_reconciling()
        return
    # Standby replicas keep watching (a warm store, keys queued) but run no worker and no resync:
    # everything that writes is behind the Lease.
    elector = RT.elector

    def lost() -> None:
        # Reconciles in worker threads cannot be cancelled halfway; ending the process is the only
        # way to be sure this replica writes nothing more (controller-runtime does the same).
        log.critical("leader lease lost: exiting so that only the new leader acts")
        logging.shutdown()
        os._exit(1)

    elector.start(on_started=lambda: loop.call_soon_threadsafe(lambda: loop.create_task(_start_reconciling())), on_lost=lost)
    log.info("modelpilot operator started as a leader-election candidate (%s); waiting for lease %s/%s",
             elector.identity, elector.namespace, elector.name)


async def _start_reconciling() -> None:
    """Fill the cache, then run the work queue and the resync. Runs once, as soon as this replica may act."""
    # Fill the cache from one LIST per kind before any reconcile runs (controller-runtime's
    # WaitForCacheSync): a restarted operator must not mistake "not seen yet" for "missing" and
    # write a status that flips back a moment later.
    loop = asyncio.get_running_loop()
    counts = await _sync_cache(loop)
    log.info("cache synced: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    for kind in RECONCILERS:  # a new leader picks up whatever its predecessor left mid-way
        for body in RT.store.all(kind):
            meta = body.get("metadata") or {}
            RT.queue.add((kind, meta.get("namespace") or "", meta.get("name") or ""))
    # Keep references: the event loop holds only weak ones to running tasks.
    RT.tasks = [loop.create_task(RT.queue.run(_work, RT.workers)), loop.create_task(_resync_loop())]
    log.info("modelpilot operator started: %d workers, node pools: %s", RT.workers, ", ".join(sorted(RT.config.node_pools)) or "none")


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    """Stop the work queue and the resync as soon as Kopf stops. Kopf waits 5 s for every task it
    did not start itself before it cancels them, so each stop (a rolling update, a test's restart)
    took 5 s longer than it needed. A reconcile already running in its thread still finishes."""
    for task in RT.tasks:
        task.cancel()
    await asyncio.gather(*RT.tasks, return_exceptions=True)
    RT.tasks = []


async def _sync_cache(loop: asyncio.AbstractEventLoop) -> dict[str, int]:
    """`_initial_sync` until it succeeds. A LIST that fails once (an apiserver restart, a timeout)
    must not leave a leader that renews its Lease and never reconciles: retry with backoff, and
    say so in the log and in `modelpilot_cache_synced` (the ModelpilotCacheNotSynced alert)."""
    metrics.CACHE_SYNCED.set(0)
    failures = 0
    while True:
        try:
            counts = await loop.run_in_executor(RT.executor, _initial_sync)
        except Exception as e:  # noqa: BLE001 - whatever failed, the next attempt starts over
            failures += 1
            metrics.CACHE_SYNC_FAILURES.inc()
            delay = backoff(failures)
            log.error("cache sync failed (%s: %s); retry %d in %.1fs", type(e).__name__, getattr(e, "reason", None) or e, failures, delay)
            await asyncio.sleep(delay)
            continue
        metrics.CACHE_SYNCED.set(1)
        return counts


def _initial_sync() -> dict[str, int]:
    counts: dict[str, int] = {}
    carriers = {k.kind for k in CARRIER_KINDS}
    for kind in SYNCED_KINDS:
        own = kind in CUSTOM_KINDS or kind in carriers  # not filtered by our label
        items: list[dict[str, Any]] = []
        try:
            for ns in RT.namespaces or [None]:
                items += RT.kube.list(kind, ns, None if own else kinds.get(kind).label_selector)
        except ApiException as e:
            if e.status == 404:  # an optional API (Gateway API, Istio) that is not installed
                continue
            if e.status == 403 and kind in carriers:  # RBAC from before carriers: the mirror check says nothing
                log.warning("cannot list %s (403): grant get/list/watch on it (the chart does); until then a Gateway's "
                            "mirror support is not checked", kind)
                continue
            raise
        for item in items:
            item.setdefault("kind", kind)
            RT.store.put(kind, item)
        counts[kind] = len(items)
    for n in RT.kube.list("Node"):
        RT.store.put("Node", n)
    RT.store.nodes_synced = True
    return counts


async def _work(key: Any) -> float | None:
    kind, namespace, name = key
    loop = asyncio.get_running_loop()
    with metrics.RECONCILE_SECONDS.labels(kind=kind).time():
        try:
            handler = RECONCILERS[kind]
            result = await loop.run_in_executor(RT.executor, handler, RT.kube, RT.store, RT.config, namespace, name)
            metrics.RECONCILES.labels(kind=kind, result="ok").inc()
            return result
        except Exception as e:
            metrics.RECONCILES.labels(kind=kind, result="error").inc()
            metrics.RECONCILE_ERRORS.labels(kind=kind, error=type(e).__name__).inc()
            raise


async def _resync_loop() -> None:
    """Re-reconcile everything periodically: a missed event heals, and an idle resync must write nothing."""
    while True:
        await asyncio.sleep(RT.resync_seconds)
        metrics.RESYNCS.inc()
        for kind in RECONCILERS:
            for body in RT.store.all(kind):
                meta = body.get("metadata") or {}
                RT.queue.add((kind, meta.get("namespace") or "", meta.get("name") or ""))


def _track(kind: str, event: dict[str, Any], body: Any) -> dict[str, Any]:
    data = dict(body)
    meta = data.get("metadata") or {}
    if event.get("type") == "DELETED":
        RT.store.remove(kind, meta.get("namespace") or "", meta.get("name") or "")
    else:
        RT.store.put(kind, data)
    return data


@kopf.on.event(c.GROUP, c.VERSION, "modeldeployments")
async def on_model_deployment(event: dict[str, Any], body: Any, **_: Any) -> None:
    data = _track("ModelDeployment", event, body)
    meta = data["metadata"]
    # DELETED too: the reconcile of an object that is gone drops its metric series.
    RT.queue.add(("ModelDeployment", meta.get("namespace") or "", meta["name"]))


def _enqueue_owner(data: dict[str, Any]) -> None:
    meta = data.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(c.LABEL_DEPLOYMENT):
        RT.queue.add(("ModelDeployment", meta.get("namespace") or "", labels[c.LABEL_DEPLOYMENT]))
    if labels.get(c.LABEL_EXPORT):
        RT.queue.add(("ModelExport", meta.get("namespace") or "", labels[c.LABEL_EXPORT]))


@kopf.on.event(c.GROUP, c.VERSION, "modelexports")
async def on_model_export(event: dict[str, Any], body: Any, **_: Any) -> None:
    data = _track("ModelExport", event, body)
    meta = data["metadata"]
    if event.get("type") != "DELETED":
        RT.queue.add(("ModelExport", meta.get("namespace") or "", meta["name"]))
    # ModelDeployments serving this export roll out its new artifact (or learn that it is gone).
    for md in RT.store.all("ModelDeployment"):
        md_meta = md.get("metadata") or {}
        ref = (((md.get("spec") or {}).get("model") or {}).get("exportRef") or {}).get("name")
        if ref == meta["name"] and md_meta.get("namespace") == meta.get("namespace"):
            RT.queue.add(("ModelDeployment", md_meta.get("namespace") or "", md_meta["name"]))


# A change to any child kind re-queues the ModelDeployment or ModelExport that owns it (by label).


def _watch_child(group: str, version: str, plural: str, kind: str, labels: dict[str, Any]) -> None:
    async def on_child(event: dict[str, Any], body: Any, **_: Any) -> None:
        _enqueue_owner(_track(kind, event, body))

    on_child.__name__ = on_child.__qualname__ = f"on_{plural}"  # Kopf names handlers after the function
    kopf.on.event(group, version, plural, labels=labels)(on_child)


for _child in CHILD_KINDS:
    _watch_child(_child.group, _child.version, _child.plural, _child.kind, MANAGED)  # the watch's selector narrows further


def _watch_carrier(group: str, version: str, plural: str, kind: str) -> None:
    """Gateways and GatewayClasses are not ours: cached whole (slimmed), and a change re-queues the
    ModelDeployments held back because their Gateway could not mirror."""
    async def on_carrier(event: dict[str, Any], body: Any, **_: Any) -> None:
        _track(kind, event, body)
        _requeue_held(c.COND_READY, c.REASON_MIRROR_UNSUPPORTED)

    on_carrier.__name__ = on_carrier.__qualname__ = f"on_{plural}"
    kopf.on.event(group, version, plural)(on_carrier)


for _carrier in CARRIER_KINDS:
    _watch_carrier(_carrier.group, _carrier.version, _carrier.plural, _carrier.kind)


def _requeue_held(cond_type: str, reason: str | None = None) -> None:
    """Re-queue every ModelDeployment whose `cond_type` condition is False (for `reason`, when given)."""
    for md in RT.store.all("ModelDeployment"):
        conds = (md.get("status") or {}).get("conditions") or []
        if any(x.get("type") == cond_type and x.get("status") == "False" and reason in (None, x.get("reason")) for x in conds):
            meta = md["metadata"]
            RT.queue.add(("ModelDeployment", meta.get("namespace") or "", meta["name"]))


@kopf.on.event("", "v1", "nodes")
async def on_node(event: dict[str, Any], body: Any, **_: Any) -> None:
    old = RT.store.get("Node", "", (body.get("metadata") or {}).get("name") or "")
    data = _track("Node", event, body)
    # Only what decides schedulability matters: labels, taints, allocatable. Heartbeats do not.
    def shape(n: dict[str, Any] | None) -> Any:
        if not n:
            return None
        return ((n.get("metadata") or {}).get("labels"), (n.get("spec") or {}).get("taints"), (n.get("status") or {}).get("allocatable"))
    if event.get("type") == "DELETED" or shape(old) != shape(data):
        _requeue_held(c.COND_SCHEDULABLE)
