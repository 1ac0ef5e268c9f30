"""What the dashboard shows, computed from the objects alone (pure: no API calls, no clock).

The browser gets each ModelDeployment and ModelExport as `trim(body)` (spec and status, no
annotations or managed fields) plus an overview row, and per ModelDeployment the traffic weights
over time (`WeightHistory`): seeded from the status (when the canary revision was created, when the
current step started) and extended from every watch event whose weights differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..api.errors import SpecError
from ..api.modeldeployment import parse_model_deployment
from ..clock import to_epoch
from ..rollout.steps import compile_steps

#: Points kept per ModelDeployment (a rollout of 40 steps, ten times over).
MAX_POINTS: Final = 400

KINDS: Final = {"ModelDeployment": "modeldeployments", "ModelExport": "modelexports"}


def key(body: Mapping[str, Any]) -> str:
    """`Kind/namespace/name`: how the page and the server name an object."""
    md = body["metadata"]
    return f"{body['kind']}/{md['namespace']}/{md['name']}"


def trim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object the page renders: identity, spec and status."""
    md = body.get("metadata") or {}
    meta = {k: md[k] for k in ("name", "namespace", "uid", "generation", "creationTimestamp", "resourceVersion") if k in md}
    return {"kind": body.get("kind"), "metadata": meta, "spec": body.get("spec") or {}, "status": body.get("status") or {}}


def latest_verdict(status: Mapping[str, Any]) -> str | None:
    """`metric: verdict` of the newest analysis measurement over all runs, or None."""
    newest: Mapping[str, Any] | None = None
    for run in ((status.get("analysis") or {}).get("runs") or {}).values():
        for m in run.get("latest") or []:
            if newest is None or str(m.get("at", "")) >= str(newest.get("at", "")):
                newest = m
    return f"{newest.get('metric')}: {newest.get('verdict')}" if newest else None


def _message(status: Mapping[str, Any]) -> str:
    """The status message, or else the Ready condition's (an export keeps its outcome there)."""
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return status.get("message") or ready.get("message") or ""


def deployment_row(body: Mapping[str, Any]) -> dict[str, Any]:
    spec, st = body.get("spec") or {}, body.get("status") or {}
    w = st.get("weights") or {}
    return {"key": key(body), "kind": "ModelDeployment", "namespace": body["metadata"]["namespace"],
            "name": body["metadata"]["name"], "phase": st.get("phase") or "Unknown",
            "strategy": (spec.get("rollout") or {}).get("strategy", "direct"),
            "stable": st.get("stableRevision"), "canary": st.get("canaryRevision"),
            "weights": {k: w.get(k) for k in ("stable", "canary", "mirror")},
            "ready": st.get("readyReplicas", 0), "replicas": st.get("replicas", 0),
            "verdict": latest_verdict(st), "message": _message(st)}


def export_row(body: Mapping[str, Any]) -> dict[str, Any]:
    spec, st = body.get("spec") or {}, body.get("status") or {}
    return {"key": key(body), "kind": "ModelExport", "namespace": body["metadata"]["namespace"],
            "name": body["metadata"]["name"], "phase": st.get("phase") or "Pending",
            "targets": [t.get("name") or t.get("format") for t in spec.get("targets") or []],
            "artifacts": len(st.get("artifacts") or []), "job": st.get("jobName"), "message": _message(st)}


def steps(body: Mapping[str, Any]) -> list[str]:
    """The rollout's steps as the operator compiles them, one label each ([] for direct or a bad spec,
    which the status conditions explain)."""
    try:
        return [s.label for s in compile_steps(parse_model_deployment(body))]
    except SpecError:
        return []


def row(body: Mapping[str, Any]) -> dict[str, Any]:
    return deployment_row(body) if body.get("kind") == "ModelDeployment" else export_row(body)


def _seconds(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return to_epoch(ts)
    except ValueError:
        return None


def weights_of(status: Mapping[str, Any]) -> tuple[int, int, int]:
    w = status.get("weights") or {}
    return int(w.get("stable") or 0), int(w.get("canary") or 0), int(w.get("mirror") or 0)


class WeightHistory:
    """Traffic weights over time of one ModelDeployment: `[[unix seconds, stable, canary, mirror], ...]`."""

    def __init__(self) -> None:
        self.points: list[list[float]] = []

    def observe(self, body: Mapping[str, Any], now: float) -> bool:
        """Record the object's weights if they changed; True when a point was added."""
        st = body.get("status") or {}
        if not st.get("weights"):
            return False
        if not self.points:
            self._seed(st, now)
            if self.points:
                return True
        current = weights_of(st)
        if self.points and tuple(self.points[-1][1:]) == current:
            return False
        self.points.append([now, *current])
        del self.points[:-MAX_POINTS]
        return True

    def _seed(self, st: Mapping[str, Any], now: float) -> None:
        """What the status tells of the time before the dashboard watched: the rollout started with
        all traffic on stable when the canary revision was created, and the current weights hold
        since the current step started."""
        canary = st.get("canaryRevision")
        created = next((_seconds(r.get("created")) for r in st.get("revisions") or [] if r.get("revision") == canary), None)
        if canary and created is not None and created < now:
            self.points.append([created, 100, 0, 0])
        started = _seconds((st.get("rollout") or {}).get("stepStartedAt"))
        if canary and started is not None and started < now and (not self.points or started > self.points[-1][0]):
            self.points.append([started, *weights_of(st)])
        if not self.points:
            self.points.append([now, *weights_of(st)])
