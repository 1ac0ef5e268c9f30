"""Plan one reconcile of a ModelDeployment. Pure: observations in; objects, scale changes,
deletions, the next status and Events out. The clock and the analysis queries come in through
`Observed`, so a unit test drives every transition without a cluster.

The walk, one module per phase (docs/design.md tells it in prose):

    check_spec          checks.py     validate once; keep the typed spec, router, export, steps
    observe_revisions   revisions.py  the spec's revision, stable, the target; kubectl actions
    observe_routes      revisions.py  does the Gateway or mesh accept the live routes?
    mirror_blocked      revisions.py  steps that mirror, through a Gateway that says it cannot
    decide_step         decide.py     interpret the steps: the split and each revision's size
    plan_routes         sizing.py     the router's objects for the split
    plan_comparator     sizing.py     the shadow comparator while a compared mirror is in force
    apply_scale_downs,  sizing.py     scale-downs that are due; what to apply, scale, delete
    plan_revisions ...
    settle_history      history.py    outcomes; revisions beyond the history limit deleted
    derive_status       status.py     the one place status and conditions are composed
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import constants as c
from ..api.errors import SpecError
from ..config import OperatorConfig
from .checks import check_spec
from .decide import decide_step
from .history import settle_history
from .model import AnalyzeFn, Observed, Plan, Reconcile
from .revisions import mirror_blocked, observe_revisions, observe_routes, unschedulable
from .sizing import apply_scale_downs, plan_comparator, plan_revisions, plan_routes, plan_shared_objects
from .status import derive_status, invalid_status, waiting_status

__all__ = ["AnalyzeFn", "Observed", "Plan", "completed_a_step", "plan_model_deployment"]


def plan_model_deployment(body: Mapping[str, Any], config: OperatorConfig, observed: Observed) -> Plan:
    try:
        checked = check_spec(body, config, observed)
    except SpecError as err:
        return invalid_status(body, err, observed.now)
    rc = Reconcile(body, checked, config, observed)
    revs = observe_revisions(rc)
    if revs is None:
        return waiting_status(rc, c.REASON_EXPORT_NOT_READY, rc.export.problem or "", unschedulable=False)
    blocked = unschedulable(rc, revs)
    if blocked:
        return waiting_status(rc, c.REASON_UNSCHEDULABLE, blocked, unschedulable=True)
    routing = observe_routes(rc)
    cannot_mirror = mirror_blocked(rc, revs, routing)
    if cannot_mirror:
        return waiting_status(rc, c.REASON_MIRROR_UNSUPPORTED, cannot_mirror, unschedulable=False)
    decision = decide_step(rc, revs, routing)
    apply_scale_downs(rc, decision)
    plan_revisions(rc, revs, decision)
    routes = plan_routes(rc, decision)
    plan_comparator(rc, decision)
    plan_shared_objects(rc, decision)
    history = settle_history(rc, revs, decision)
    return derive_status(rc, revs.target, decision, history, routes, routing)


def completed_a_step(status: Mapping[str, Any], plan: Plan) -> bool:
    """The plan moves the same revision's rollout from `status` to a later step (not aborted): the
    handler may apply it and plan again at once (handlers/modeldeployment.chain_steps)."""
    before, after = status.get("rollout") or {}, plan.status.get("rollout") or {}
    return (before.get("revision") is not None and before.get("revision") == after.get("revision")
            and int(after.get("step") or 0) > int(before.get("step") or 0) and "aborted" not in after)
