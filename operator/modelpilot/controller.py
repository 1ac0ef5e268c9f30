"""Level-triggered reconcile machinery: an in-memory store of watched objects and a work queue.

Kopf's watch streams feed `Store` (every ADDED/MODIFIED/DELETED event) and enqueue the owning
custom resource. Workers take keys from `WorkQueue` and run a reconcile that derives everything
from the whole observed state, so a missed event or a restart changes nothing (Kopf's own docs
warn against edge-triggered handler chains). A key is never reconciled twice at once; a key that
changes while it is being reconciled runs again right after. Failures are retried with capped
exponential backoff. This is the controller-runtime work queue, in a page of asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from typing import Any, Awaitable, Callable, Hashable, Iterable, Mapping

from . import constants as c
from . import metrics

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)


class Store:
    """Latest body of every watched object, indexed by owner for quick lookups. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_owner: dict[tuple[str, str, str], set[Key]] = defaultdict(set)  # (kind, ns, "label=owner") -> keys
        self.nodes_synced = False

    @staticmethod
    def _owner(body: Mapping[str, Any]) -> str | None:
        labels = (body.get("metadata") or {}).get("labels") or {}
        for key in (c.LABEL_DEPLOYMENT, c.LABEL_EXPORT):
            if labels.get(key):
                return f"{key}={labels[key]}"
        return None

    def put(self, kind: str, body: Mapping[str, Any]) -> None:
        body = slim(kind, body)
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace") or "", meta.get("name") or "")
        with self._lock:
            old = self._objects.get(key)
            # Never go back in time: a write's response can be newer than a queued watch event.
            if old is not None and _rv(old) > _rv(body):
                return
            self._objects[key] = body
            owner = self._owner(body)
            if owner:
                self._by_owner[(kind, key[1], owner)].add(key)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace or "", name)
        with self._lock:
            body = self._objects.pop(key, None)
            owner = self._owner(body) if body else None
            if owner:
                index = (kind, key[1], owner)
                keys = self._by_owner.get(index)
                if keys is not None:
                    keys.discard(key)
                    if not keys:  # an owner with no children left: no entry (owners come and go for ever)
                        del self._by_owner[index]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((kind, namespace or "", name))

    def owned(self, kind: str, namespace: str, owner: str, label: str = c.LABEL_DEPLOYMENT) -> list[dict[str, Any]]:
        """Objects of `kind` labelled `label=owner` (a ModelDeployment's, or with LABEL_EXPORT a ModelExport's)."""
        with self._lock:
            keys = self._by_owner.get((kind, namespace, f"{label}={owner}"), ())
            return [self._objects[k] for k in keys if k in self._objects]

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [v for k, v in self._objects.items() if k[0] == kind]


# What reconciles read of each kind; everything else is dropped to keep memory flat at scale
# (managedFields alone are most of a Deployment's size).
_KEEP: dict[str, tuple[str, ...]] = {
    "Deployment": ("metadata", "spec", "status"),
    "Service": ("metadata", "spec"),
    "ConfigMap": ("metadata",),
    "HorizontalPodAutoscaler": ("metadata",),
    "PodDisruptionBudget": ("metadata",),
    "NetworkPolicy": ("metadata",),
    "Job": ("metadata", "status"),
    "Pod": ("metadata", "status"),
    "Node": ("metadata", "spec", "status"),
}


def slim(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    keep = _KEEP.get(kind)
    out = {k: v for k, v in body.items() if keep is None or k in keep or k in ("apiVersion", "kind")}
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    if kind == "Deployment":
        spec = out.get("spec") or {}
        out["spec"] = {"replicas": spec.get("replicas")}
    elif kind == "Node":
        st = out.get("status") or {}
        out["status"] = {"allocatable": st.get("allocatable")}
        meta.pop("annotations", None)
    return out


def _rv(body: Mapping[str, Any] | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 1, 2, 4 ... capped at 60."""
    return min(60.0, 0.5 * 2 ** min(failures, 7))


class WorkQueue:
    """Deduplicating async queue with per-key exclusivity and backoff."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._pending: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = defaultdict(int)
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.put_nowait(key)
        metrics.QUEUE_DEPTH.set(len(self._pending))

    def add_after(self, key: Hashable, delay: float) -> None:
        loop = asyncio.get_running_loop()
        old = self._timers.pop(key, None)
        if old:
            old.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def run(self, worker: Callable[[Hashable], Awaitable[float | None]], concurrency: int) -> None:
        async def loop() -> None:
            while True:
                key = await self._queue.get()
                self._pending.discard(key)
                self._active.add(key)
                metrics.QUEUE_DEPTH.set(len(self._pending))
                try:
                    requeue = await worker(key)
                    self._failures.pop(key, None)
                    if requeue:
                        self.add_after(key, requeue)
                except Exception as e:  # retried with backoff; the reconcile already reported it
                    n = self._failures[key] = self._failures[key] + 1
                    delay = backoff(n)
                    log.warning("reconcile of %s failed (%s: %s); retry %d in %.1fs", key, type(e).__name__, e, n, delay)
                    self.add_after(key, delay)
                finally:
                    self._active.discard(key)
                    if key in self._dirty:
                        self._dirty.discard(key)
                        self.add(key)

        await asyncio.gather(*(loop() for _ in range(concurrency)))


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def keys_of(kind: str, bodies: Iterable[Mapping[str, Any]]) -> list[Key]:
    return [(kind, (b.get("metadata") or {}).get("namespace") or "", (b.get("metadata") or {}).get("name") or "") for b in bodies]
