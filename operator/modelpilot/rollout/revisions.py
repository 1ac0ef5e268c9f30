"""Phase 1, observe: which revision the spec describes, which one serves, which one is the target
(an undo pins an older one), whether a node can host it, and whether the router's live objects
are accepted by whoever carries them (a Gateway, the mesh)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import constants as c
from ..hashing import spec_hash
from ..placement import find_unschedulable_reason
from ..render import runtime_warnings
from ..traffic import RouteHealth
from ..uris import redact_uri
from .control import consume_control
from .model import Reconcile


@dataclass
class Revisions:
    history: list[dict[str, Any]]  # status.revisions, oldest first; phases update outcomes
    spec_rev: int  # the revision the spec describes
    stable: int | None  # the revision serving now; None before the first one is ready
    target: int  # the revision being rolled out to: spec_rev, or the one an undo pinned
    pinned: bool


def observe_revisions(rc: Reconcile) -> Revisions | None:
    """None when there is nothing to serve yet: an exportRef whose artifact is not ready, and no
    revision ever rolled out."""
    history = [dict(r) for r in rc.status.get("revisions") or []]
    if rc.export.problem and not history:
        return None
    spec_rev = _spec_revision(rc, history)
    rc.status["revisions"] = history
    stable = int(rc.status.get("stableRevision") or 0) or None
    pinned = rc.ro.get("pinned")
    if pinned and int(pinned.get("generation", -1)) != rc.gen:
        rc.ro.pop("pinned", None)  # the spec changed since the undo: the new spec wins
    consume_control(rc, stable, spec_rev)
    pinned = rc.ro.get("pinned")
    target = int(pinned["revision"]) if pinned else spec_rev
    return Revisions(history=history, spec_rev=spec_rev, stable=stable, target=target, pinned=bool(pinned))


def _spec_revision(rc: Reconcile, history: list[dict[str, Any]]) -> int:
    """The revision number of the spec's content hash; a new hash gets the next number."""
    md, digest = rc.md, rc.export.digest
    h = md.revision_hash if not digest else spec_hash({**md.serving_spec, "artifact": digest})
    if rc.export.problem:
        # Keep serving what runs; the spec's revision waits for its artifact.
        h = next((r["hash"] for r in history if int(r["revision"]) == int(rc.status.get("stableRevision") or 0)), h)
    cur = next((r for r in history if r.get("hash") == h), None)
    if cur is None:
        cur = {"revision": max([int(r["revision"]) for r in history] + [0]) + 1, "hash": h,
               "modelDigest": digest or redact_uri(md.model.uri or "") or f"export:{md.model.export_name}/{md.model.export_target or ''}",
               "created": rc.now_s, "outcome": "Progressing"}
        history.append(cur)
        for w in runtime_warnings(md, export=rc.export.artifact):
            rc.event("Warning", c.EVENT_RUNTIME_WARNING, f"revision {cur['revision']}: {w}")
    return int(cur["revision"])


def unschedulable(rc: Reconcile, revs: Revisions) -> str | None:
    """Why no node can host the spec's revision (then nothing is applied), or None."""
    if revs.target != revs.spec_rev or rc.obs.nodes is None:
        return None
    reason = find_unschedulable_reason(rc.scheduling, rc.obs.nodes)
    return f"revision {revs.spec_rev} cannot be scheduled: {reason} (spec.placement)" if reason else None


def observe_routes(rc: Reconcile) -> RouteHealth:
    """What the router's carrier says of the live routing objects (RoutingReady)."""
    return rc.router.observe(rc.md, [*rc.obs.routes.values(), *rc.obs.carriers])


def mirror_blocked(rc: Reconcile, revs: Revisions, routing: RouteHealth) -> str | None:
    """Why the rollout cannot start: its steps mirror requests and the carrier says it cannot
    (then nothing is applied: a gateway that cannot mirror may answer 500 to every request of a
    rule with the filter, Traefik does), or None."""
    rolling_out = revs.stable is not None and revs.target != revs.stable  # a first revision takes no steps
    if not routing.cannot_mirror or not rolling_out or not any(s.kind == "mirror" and s.mirror for s in rc.steps):
        return None
    return (f"revision {revs.target} mirrors requests (spec.rollout), but {routing.cannot_mirror}; use spec.traffic.router "
            "istio, a Gateway whose class supports HTTPRouteRequestMirror, or a strategy without mirroring")
