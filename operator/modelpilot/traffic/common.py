"""What the routers share: the entry and preview Services, names, the cookie regex, A/B checks,
replica sizing for routers that split traffic in a proxy, and the rounding of observed shares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import constants as c
from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..comparator.objects import comparator_name, compares
from ..objectmeta import object_meta
from ..render import build_entry_service, labels, owner_reference
from .base import Achieved, HeaderMatch, ReplicaPlan, TrafficState
from .live import find_object, share_percent

# Characters with a meaning in RE2; everything else in a cookie name or value is literal.
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def service_name(md: ModelDeployment, revision: int) -> str:
    return c.revision_name(md.name, revision)


def mirror_service_name(md: ModelDeployment, canary_revision: int) -> str:
    """Where the mirror sends its copies: the shadow revision's Service, or with
    spec.rollout.shadow.compare the comparator's, which calls both revisions itself."""
    return comparator_name(md) if compares(md) else service_name(md, canary_revision)


def preview_service_name(md: ModelDeployment) -> str:
    return f"{md.name}-preview"


def service_host(md: ModelDeployment, name: str) -> str:
    return f"{name}.{md.namespace}.svc.cluster.local"


def entry_service(md: ModelDeployment, state: TrafficState, *, split_by_pods: bool) -> dict[str, Any]:
    """The entry Service `<name>`, selecting the revision that serves direct (unrouted) callers.

    With `split_by_pods` (the replica router) a weight of 1..99 selects every revision's pods, so
    the weight is realised by pod counts. Otherwise, and at 0 or 100, it selects one revision:
    the switch is atomic and a rollback instant, whatever pods are still running.
    """
    svc = build_entry_service(md)
    pinned = serving_revision(state, split_by_pods=split_by_pods)
    if pinned is not None:
        svc["spec"]["selector"] = {**svc["spec"]["selector"], c.LABEL_REVISION: str(pinned)}
    return svc


def serving_revision(state: TrafficState, *, split_by_pods: bool) -> int | None:
    """The one revision the entry Service selects, or None for all of them."""
    if state.canary_revision is None or state.canary_weight == 0:
        return state.stable_revision
    if state.canary_weight == 100:
        return state.canary_revision
    return None if split_by_pods else state.stable_revision


def preview_service(md: ModelDeployment, state: TrafficState) -> dict[str, Any] | None:
    """`<name>-preview`: the new revision, reachable in the cluster before a blue-green switch."""
    if not state.preview or state.canary_revision is None:
        return None
    entry = build_entry_service(md)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": preview_service_name(md),
            "namespace": md.namespace,
            "labels": labels(md, state.canary_revision, component="preview"),
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {**entry["spec"]["selector"], c.LABEL_REVISION: str(state.canary_revision)},
            "ports": entry["spec"]["ports"],
        },
    }


def route_metadata(md: ModelDeployment) -> dict[str, Any]:
    return object_meta(md.name, md.namespace, labels(md, None, component="router"), owner_reference(md))


def re2_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


def cookie_regex(name: str, value: str) -> str:
    """A regex on the Cookie header for `name=value`.

    Correct under both full-match (Envoy, Istio) and search (some Gateway API implementations)
    semantics: the pair is bounded by the start or `;` on the left, and by `;` or the end.
    """
    return rf"(^|.*;\s*){re2_escape(name)}={re2_escape(value)}(;.*|$)"


def header_matches_from_spec(md: ModelDeployment) -> tuple[tuple[HeaderMatch, ...], tuple[str, str] | None]:
    """spec.rollout.abTest.match as TrafficState fields: (header_matches, cookie_match)."""
    ab = md.rollout.ab_test
    return tuple(HeaderMatch(h.name, h.value, h.type) for h in ab.headers), ab.cookie


def check_ab_headers(md: ModelDeployment) -> SpecError | None:
    """Header names are case-insensitive: two spellings of one name are one header twice."""
    seen: dict[str, str] = {}
    for h in md.rollout.ab_test.headers:
        name = h.name
        if name.lower() in seen:
            return SpecError("spec.rollout.abTest.match.headers",
                             f"{seen[name.lower()]!r} and {name!r} name the same header (header names are case-insensitive)",
                             "keep one of them")
        seen[name.lower()] = name
    return None


def routed_replicas(md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
    """Sizing for routers that split traffic in a proxy (Argo Rollouts' rule with traffic routing).

    Stable stays at `total` until the rollout ends, so an abort never waits for pods. The canary
    gets the share of `total` it serves, rounded up: its weight, or the mirrored share (shadow
    copies load too), at least one pod for an A/B match (the matching share is unknown), and
    `blueGreen.previewReplicas` (default: all) while previewing.
    """
    if total <= 0 or state.canary_revision is None:
        return ReplicaPlan(stable=max(total, 0), canary=0)
    if state.preview and state.canary_weight < 100:
        preview = md.rollout.blue_green.preview_replicas
        return ReplicaPlan(stable=total, canary=preview or total)
    share = max(state.canary_weight, state.mirror_percent)
    canary = -(-total * share // 100)
    if state.has_match:
        canary = max(canary, 1)
    return ReplicaPlan(stable=total, canary=canary)


def describe(state: TrafficState) -> str:
    parts = [f"stable {state.stable_weight}% / canary {state.canary_weight}%"]
    if state.mirror_percent:
        parts.append(f"mirror {state.mirror_percent}%")
    return ", ".join(parts)


class ProxyRouter:
    """What the routers whose split a proxy makes (Gateway API, Istio) share: the entry Service
    selects stable (in-cluster callers), the preview Service while previewing, the proxy's route
    object (`build_route`), the sizing of `routed_replicas`, and `achieved` read from the live route
    through the router's `split_of`, `signature` and `refusals`."""

    weights_by_pods = False
    route_kind = ""
    empty_refs = "no backends"
    no_weight_note = ""

    def build_route(self, md: ModelDeployment, state: TrafficState) -> dict[str, Any]:
        raise NotImplementedError

    def split_of(self, md: ModelDeployment, route: Mapping[str, Any], mirror_service: str | None) -> tuple[dict[str, int], int]:
        """(service -> weight, mirror percent to `mirror_service`) of the route's split rule."""
        raise NotImplementedError

    # What decides where a request goes, in a form where the apiserver's defaults do not differ.
    signature: Callable[[Mapping[str, Any]], Any]

    def refusals(self, route: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def achieved(self, md: ModelDeployment, state: TrafficState, ready: ReplicaPlan,
                 observed: Sequence[Mapping[str, Any]]) -> Achieved | None:
        route = find_object(observed, self.route_kind, md.name)
        if route is None:
            return None
        canary_service = service_name(md, state.canary_revision) if state.canary_revision is not None else None
        mirror_service = mirror_service_name(md, state.canary_revision) if state.canary_revision is not None else None
        weights, mirror = self.split_of(md, route, mirror_service)
        total = sum(weights.values())
        canary_weight = share_percent(weights.get(canary_service, 0), total) if canary_service else 0
        notes = []
        if self.signature(route) != self.signature(self.build_route(md, state)):
            refs = ", ".join(f"{name} weight {w}" for name, w in sorted(weights.items())) or self.empty_refs
            notes.append(f"{self.route_kind} {md.name} is not updated yet: it carries {refs}"
                         f"{f', mirror {mirror}%' if mirror else ''}; wanted {describe(state)}")
        if total == 0:
            notes.append(f"{self.route_kind} {md.name} {self.no_weight_note}")
        notes.extend(self.refusals(route))
        return Achieved(100 - canary_weight, canary_weight, mirror, exact=not notes, note="; ".join(notes))

    def route_objects(self, md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
        objs = [entry_service(md, state, split_by_pods=False), preview_service(md, state), self.build_route(md, state)]
        return [o for o in objs if o is not None]

    def replicas(self, md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
        return routed_replicas(md, state, total)
