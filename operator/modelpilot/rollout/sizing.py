"""Phase 4, size revisions: the scale-downs that are due, and what to apply, scale and delete.

Only the revision the spec describes is rendered and server-side applied; every other revision's
Deployment is only scaled (the stable one during a rollout, old ones down to zero and kept for
`kubectl modelpilot undo`, up to revisionHistoryLimit).
"""

from __future__ import annotations

from typing import Any

from .. import constants as c
from ..clock import to_epoch
from ..comparator.objects import build_comparator_objects, comparator_name
from ..render import build_network_policy, build_revision_objects
from .decide import Decision
from .model import Reconcile, spec_replicas
from .objects import build_revision_service
from .revisions import Revisions


def apply_scale_downs(rc: Reconcile, d: Decision) -> None:
    """Aborted rollouts and earlier revisions go to zero when their delay is over; a revision
    that serves again (undo, retry) is taken off the list."""
    due: dict[str, str] = dict(rc.ro.get("scaleDown") or {})
    for rev_s, at in list(due.items()):
        rev = int(rev_s)
        if rev in (d.stable, d.canary) and rev in d.replicas_for:
            due.pop(rev_s)
            continue
        if rc.now >= to_epoch(at):
            d.replicas_for[rev] = 0
            if spec_replicas(rc.dep(rev)) == 0:
                due.pop(rev_s)
        else:
            d.replicas_for.setdefault(rev, spec_replicas(rc.dep(rev)))
            rc.plan.wake(to_epoch(at) - rc.now)
    if due:
        rc.ro["scaleDown"] = due
    else:
        rc.ro.pop("scaleDown", None)
    for rev in rc.obs.deployments:
        d.replicas_for.setdefault(rev, 0)


def plan_revisions(rc: Reconcile, revs: Revisions, d: Decision) -> None:
    """Render the spec's revision at its size; scale every other revision that exists."""
    md, spec_rev = rc.md, revs.spec_rev
    if spec_rev in d.replicas_for or spec_rev == revs.target:
        want = d.replicas_for.get(spec_rev, 0)
        objs = build_revision_objects(md, spec_rev, rc.config, None if md.autoscaling and want else want,
                                      export=rc.export.artifact, mount_pvc_sources=rc.config.mount_pvc_sources)
        rc.plan.apply.extend(objs)
        rc.plan.apply.append(build_revision_service(md, spec_rev))
        if spec_rev in rc.obs.disruption_budgets and not any(o["kind"] == "PodDisruptionBudget" for o in objs):
            rc.plan.delete.append(("PodDisruptionBudget", md.namespace, c.revision_name(md.name, spec_rev)))
    for rev, n in sorted(d.replicas_for.items()):
        dep = rc.dep(rev)
        if rev == spec_rev or dep is None:
            continue
        if md.autoscaling and n > 0:
            continue  # the revision's HPA owns its size
        if spec_replicas(dep) != n:
            rc.plan.scale.append((md.namespace, c.revision_name(md.name, rev), n))


def plan_shared_objects(rc: Reconcile, d: Decision) -> None:
    """The NetworkPolicy, and the autoscalers of revisions that no longer serve."""
    md = rc.md
    policy = build_network_policy(md, rc.config)
    if policy is not None:
        rc.plan.apply.append(policy)
    elif rc.obs.network_policy:
        rc.plan.delete.append(("NetworkPolicy", md.namespace, md.name))
    for rev in rc.obs.autoscalers:
        if not md.autoscaling or d.replicas_for.get(rev, 0) == 0:
            rc.plan.delete.append(("HorizontalPodAutoscaler", md.namespace, c.revision_name(md.name, rev)))


def plan_comparator(rc: Reconcile, d: Decision) -> None:
    """The shadow comparator while a compared mirror is in force (the routes mirror to it); gone after."""
    md = rc.md
    objs = build_comparator_objects(md, d.state.stable_revision, d.state.canary_revision, d.state.mirror_percent, rc.config)
    rc.plan.apply.extend(objs)
    if not objs and rc.obs.comparator:
        rc.plan.delete += [(kind, md.namespace, comparator_name(md)) for kind in ("Deployment", "Service", "NetworkPolicy")]


def plan_routes(rc: Reconcile, d: Decision) -> list[dict[str, Any]]:
    """Phase 3, traffic: the router's objects for the decided split; owned routing objects it no
    longer renders (the preview Service after the switch, a route of another router) go."""
    routes = rc.router.route_objects(rc.md, d.state)
    rc.plan.apply.extend(routes)
    wanted = {(o["kind"], o["metadata"]["name"]) for o in routes}
    for (kind, name) in rc.obs.routes:
        if (kind, name) not in wanted:
            rc.plan.delete.append((kind, rc.md.namespace, name))
    return routes
