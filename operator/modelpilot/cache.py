"""The cache of watched objects: the latest body of every object the operator watches, slimmed to
what reconciles read (the fields kept per kind come from kinds.py) and indexed by owner.

Kopf's watch streams feed `Store` (every ADDED/MODIFIED/DELETED event) and enqueue the owning
custom resource (handlers/wiring.py); reconciles read only from here, so a reconcile derives
everything from the whole observed state and a missed event or a restart changes nothing.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from . import constants as c
from .kinds import BY_KIND

Key = tuple[str, str, str]  # (kind, namespace, name)


class Store:
    """Latest body of every watched object, indexed by owner for quick lookups. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per kind, so that `all(kind)` does not walk every object of every kind: a reconcile reads
        # all Nodes, and at N=1000 that walk over ~5,000 objects was quadratic in the fleet.
        self._kinds: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
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
            objects = self._kinds[kind]
            old = objects.get(key[1:])
            # Never go back in time: a write's response can be newer than a queued watch event.
            if old is not None and _rv(old) > _rv(body):
                return
            objects[key[1:]] = body
            owner = self._owner(body)
            if owner:
                self._by_owner[(kind, key[1], owner)].add(key)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace or "", name)
        with self._lock:
            body = self._kinds[kind].pop(key[1:], None)
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
            return self._kinds[kind].get((namespace or "", name))

    def owned(self, kind: str, namespace: str, owner: str, label: str = c.LABEL_DEPLOYMENT) -> list[dict[str, Any]]:
        """Objects of `kind` labelled `label=owner` (a ModelDeployment's, or with LABEL_EXPORT a ModelExport's)."""
        with self._lock:
            keys = self._by_owner.get((kind, namespace, f"{label}={owner}"), ())
            objects = self._kinds[kind]
            return [objects[k[1:]] for k in keys if k[1:] in objects]

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._kinds[kind].values())


# What reconciles read of each kind (kinds.Kind.keep); everything else is dropped to keep memory
# flat at scale (managedFields alone are most of a Deployment's size).
def slim(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    keep = BY_KIND[kind].keep if kind in BY_KIND else None
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
    return _interned(out)


def _interned(value: Any) -> Any:
    """The same data with its keys and short strings shared: every cached object repeats the same
    label keys and values, owner references and annotation names, and a parsed JSON document holds
    its own copy of each (tens of bytes apiece, thousands of objects)."""
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, str) and len(value) <= 64:
        return sys.intern(value)
    return value


def _rv(body: Mapping[str, Any] | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def keys_of(kind: str, bodies: Iterable[Mapping[str, Any]]) -> list[Key]:
    return [(kind, (b.get("metadata") or {}).get("namespace") or "", (b.get("metadata") or {}).get("name") or "") for b in bodies]
