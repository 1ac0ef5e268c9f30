"""Kubernetes watches of ModelDeployments and ModelExports, fanned out to the dashboard's browsers.

One thread per kind lists, then watches from the list's resourceVersion (relisting after a 410 Gone
or a dropped connection), with the user's kubeconfig: the official client is synchronous, so the
threads hand each event to the asyncio loop, where `Hub` keeps the latest objects and their weight
histories and pushes every change to each subscriber's queue at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .. import constants as c
from . import views

log = logging.getLogger(__name__)

GROUP, VERSION = c.API_VERSION.split("/")
#: Seconds before a watch is reopened after an error that is not a 410 (apiserver restart, network).
RETRY_SECONDS = 1.0


class AccessError(Exception):
    """The kubeconfig's user may not list what the dashboard would show; the message says what to do."""


class Hub:
    """The latest trimmed objects, by key, and the queues of the connected browsers. Loop thread only."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, views.WeightHistory] = {}
        self.subscribers: set[asyncio.Queue] = set()
        self.watch_errors: dict[str, str] = {}  # kind -> why its watch is down (the page says it is not live)

    def message(self, k: str) -> dict[str, Any]:
        body = self.objects[k]
        hist = self.histories.get(k)
        extra = {"steps": views.steps(body), "history": hist.points if hist else []} if body["kind"] == "ModelDeployment" else {}
        return {"type": "upsert", "key": k, "row": views.row(body), "object": body, **extra}

    def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "items": [self.message(k) for k in sorted(self.objects)], "watchErrors": dict(self.watch_errors)}

    def watch_failed(self, kind: str, why: str | None) -> None:
        """Record that the watch of `kind` broke (`why`) or works again (None), and tell the pages."""
        if self.watch_errors.get(kind) != why:
            if why is None:
                self.watch_errors.pop(kind, None)
            else:
                self.watch_errors[kind] = why
            self.publish({"type": "watchErrors", "watchErrors": dict(self.watch_errors)})

    def upsert(self, body: dict[str, Any], now: float) -> None:
        k = views.key(body)
        self.objects[k] = views.trim(body)
        if body["kind"] == "ModelDeployment":
            self.histories.setdefault(k, views.WeightHistory()).observe(body, now)
        self.publish(self.message(k))

    def delete(self, k: str) -> None:
        if self.objects.pop(k, None) is not None:
            self.histories.pop(k, None)
            self.publish({"type": "delete", "key": k})

    def relisted(self, kind: str, bodies: list[dict[str, Any]], now: float) -> None:
        """A fresh list of `kind`: what it lacks was deleted while the watch was down."""
        keep = {views.key(b) for b in bodies}
        for k in [k for k in self.objects if k.startswith(kind + "/") and k not in keep]:
            self.delete(k)
        for b in bodies:
            self.upsert(b, now)

    def publish(self, msg: dict[str, Any]) -> None:
        for q in self.subscribers:
            q.put_nowait(msg)


def _lister(api: kubernetes.client.CustomObjectsApi, plural: str, namespace: str | None) -> Callable[..., Any]:
    if namespace:
        return lambda **kw: api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kw)
    return lambda **kw: api.list_cluster_custom_object(GROUP, VERSION, plural, **kw)


def check_access(api_client: kubernetes.client.ApiClient, namespace: str | None) -> None:
    """Raise AccessError, naming the kind, the scope and the fix, unless the user may list both kinds."""
    api = kubernetes.client.CustomObjectsApi(api_client)
    where = f"namespace {namespace!r}" if namespace else "all namespaces"
    for plural in views.KINDS.values():
        try:
            _lister(api, plural, namespace)(limit=1)
        except ApiException as e:
            hint = ("pick a namespace you may read with --namespace" if e.status in (401, 403)
                    else "is the modelpilot CRD installed? (kubectl apply -f crds/)" if e.status == 404 else "check the cluster")
            raise AccessError(f"cannot list {plural}.{GROUP} in {where}: {e.status} {e.reason}; {hint}") from None


class Watcher(threading.Thread):
    """List-then-watch of one kind, forever, delivering to the hub on `loop`."""

    def __init__(self, api_client: kubernetes.client.ApiClient, kind: str, namespace: str | None, hub: Hub,
                 loop: asyncio.AbstractEventLoop):
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.kind, self.hub, self.loop = kind, hub, loop
        self.list = _lister(kubernetes.client.CustomObjectsApi(api_client), views.KINDS[kind], namespace)

    def run(self) -> None:
        while True:
            try:
                self._list_and_watch()
            except ApiException as e:
                if e.status != 410:
                    self._failed(f"{e.status} {e.reason}")
            except Exception as e:  # the apiserver restarted, the connection dropped: relist
                self._failed(str(e) or type(e).__name__)

    def _failed(self, why: str) -> None:
        log.warning("watching %s: %s; again in %ss", self.kind, why, RETRY_SECONDS)
        self._deliver(self.hub.watch_failed, self.kind, f"watching {views.KINDS[self.kind]}: {why}; retrying")
        time.sleep(RETRY_SECONDS)

    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def _list_and_watch(self) -> None:
        listed = self.list()
        items = [{**b, "kind": self.kind} for b in listed.get("items") or []]
        self._deliver(self.hub.relisted, self.kind, items, time.time())
        self._deliver(self.hub.watch_failed, self.kind, None)
        rv = listed["metadata"]["resourceVersion"]
        for ev in kubernetes.watch.Watch().stream(self.list, resource_version=rv, timeout_seconds=300,
                                                  allow_watch_bookmarks=True):
            body = ev["object"]
            if ev["type"] == "DELETED":
                self._deliver(self.hub.delete, views.key({**body, "kind": self.kind}))
            elif ev["type"] in ("ADDED", "MODIFIED"):
                self._deliver(self.hub.upsert, {**body, "kind": self.kind}, time.time())
