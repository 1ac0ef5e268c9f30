"""The one path to the Kubernetes API: server-side apply with one field manager, deletes, status
patches and Events, on the official `kubernetes` client.

Every request goes through `KubeClient._call`, which counts it by verb (the `/metrics` figure the
zero-write tests and the benchmark read). `apply` skips the request entirely when the live object
already carries the hash of what we would send: a resync with nothing changed writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import constants as c
from . import metrics
from .hashing import object_hash
from .kinds import KINDS

log = logging.getLogger(__name__)

# kind -> (api prefix, plural, namespaced), from the one table of kinds
RESOURCES: dict[str, tuple[str, str, bool]] = {k.kind: (k.path_prefix, k.plural, k.namespaced) for k in KINDS}


def path_for(kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    prefix, plural, namespaced = RESOURCES[kind]
    p = prefix + (f"/namespaces/{namespace}" if namespaced and namespace else "") + f"/{plural}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning `old` into `new` (lists are replaced whole)."""
    patch: dict[str, Any] = {}
    for k in old:
        if k not in new:
            patch[k] = None
    for k, v in new.items():
        ov = old.get(k)
        if isinstance(v, dict) and isinstance(ov, dict):
            sub = merge_patch(ov, v)
            if sub:
                patch[k] = sub
        elif v != ov:
            patch[k] = v
    return patch


# Sent with every request: with leader election, main adds the replica's identity, so that the
# apiserver's audit log tells which replica wrote what (the fault campaign checks one acts at a time).
USER_AGENT = "modelpilot-operator"


class KubeClient:
    """Thread-safe: the official client's ApiClient keeps a urllib3 pool; calls run in worker threads."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None):
        self.api = api_client or kubernetes.client.ApiClient()
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, pool_size: int = 16) -> KubeClient:
        try:
            kubernetes.config.load_incluster_config()
            cfg = kubernetes.client.Configuration.get_default_copy()
        except kubernetes.config.ConfigException:
            cfg = kubernetes.client.Configuration()
            # Read $KUBECONFIG now: the client library reads it once, at import, before --kubeconfig sets it.
            kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg)
        cfg.connection_pool_maxsize = pool_size
        api = kubernetes.client.ApiClient(cfg)
        api.user_agent = USER_AGENT
        return cls(api)

    def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, Any]] | None = None,
              content_type: str = "application/json") -> Any:
        metrics.API_REQUESTS.labels(verb=method).inc()
        # kubernetes>=33 splits request building from sending; server-side apply needs the raw path.
        _, url, headers, body, _ = self.api.param_serialize(
            method, path, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        if body is not None and content_type.endswith("yaml"):
            # UTF-8, not the client's ASCII escapes: server-side apply is decoded as YAML, which refuses
            # the surrogate-pair escapes json.dumps writes for characters beyond U+FFFF. (The client
            # sends bytes as they are for YAML; for JSON it would encode them again.)
            body = json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
        resp = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=30)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=resp.reason, body=data.decode(errors="replace") if data else None)
        return json.loads(data) if data else None

    # ---- reads ----
    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", path_for(kind, namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        return (self._call("GET", path_for(kind, namespace), query=query) or {}).get("items") or []

    # ---- writes ----
    def apply(self, obj: dict[str, Any], live: Mapping[str, Any] | None, force: bool = True) -> dict[str, Any] | None:
        """Server-side apply `obj` unless `live` already carries its hash (and its replicas: `scale` changes
        them with a merge patch that leaves the hash alone). Returns the new live object or None.
        force=False: a field another manager holds with another value is a 409, not taken over."""
        desired = dict(obj)  # a copy deep enough for the one annotation added below
        h = object_hash(desired)
        live_hash = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_SPEC_HASH)
        want = (desired.get("spec") or {}).get("replicas")
        if live is not None and live_hash == h and (want is None or (live.get("spec") or {}).get("replicas") == want):
            return None
        meta = desired["metadata"] = dict(desired.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), c.ANNOTATION_SPEC_HASH: h}
        path = path_for(desired["kind"], meta.get("namespace"), meta["name"])
        return self._call("PATCH", path, body=desired, content_type="application/apply-patch+yaml",
                          query=[("fieldManager", c.FIELD_MANAGER), ("force", "true" if force else "false")])

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any] | None:
        """Set replicas through the main resource with a merge patch (a field no apply of ours sends for
        revisions other than the spec's own). Returns the live object, or None if it is gone."""
        try:
            return self._call("PATCH", path_for(kind, namespace, name), body={"spec": {"replicas": replicas}},
                              content_type="application/merge-patch+json")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        try:
            self._call("DELETE", path_for(kind, namespace, name), body={"propagationPolicy": "Background"})
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def patch_status(self, kind: str, namespace: str, name: str, old_status: Mapping[str, Any],
                     new_status: Mapping[str, Any], resource_version: str | None) -> dict[str, Any] | None:
        """Merge-patch status if it changed. The resourceVersion precondition turns a stale read into a 409."""
        patch = merge_patch(old_status or {}, new_status)
        if not patch:
            return None
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self._call("PATCH", path_for(kind, namespace, name, "status"), body=body,
                          content_type="application/merge-patch+json")

    def event(self, involved: Mapping[str, Any], etype: str, reason: str, message: str, now: str) -> None:
        meta = involved.get("metadata") or {}
        name = f"{meta.get('name')}.{object_hash({'r': reason, 'm': message, 't': now})}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": meta.get("namespace")},
            "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                               "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": etype, "reason": reason, "message": message[:1024],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": "modelpilot-operator"}, "reportingComponent": "modelpilot-operator",
        }
        try:
            self._call("POST", path_for("Event", meta.get("namespace")), body=body)
        except ApiException as e:  # an Event is best effort: never fail a reconcile for it
            if e.status == 409:  # the same transition was already reported (deterministic name)
                return
            log.warning("could not post event %s on %s/%s: %s", reason, meta.get("namespace"), meta.get("name"), e.reason)
