"""metav1.Condition helpers and phase derivation. Status is changed by pure functions on copies.

`set_condition` keeps lastTransitionTime when the status did not flip, so that recomputing the same
state twice produces identical bytes: that is what makes an idle resync write nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from . import constants as c

Condition = dict[str, Any]


def get_condition(conditions: list[Condition], ctype: str) -> Condition | None:
    return next((x for x in conditions if x.get("type") == ctype), None)


def set_condition(
    conditions: list[Condition], ctype: str, status: bool, reason: str, message: str, generation: int, now: str
) -> list[Condition]:
    """Return a new list with the condition set. lastTransitionTime moves only when status flips."""
    value = "True" if status else "False"
    out = [copy.deepcopy(x) for x in conditions if x.get("type") != ctype]
    old = get_condition(conditions, ctype)
    transition = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") else now
    out.append({
        "type": ctype,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    })
    order = {t: i for i, t in enumerate([c.COND_READY, c.COND_SPEC_VALID, c.COND_SCHEDULABLE, c.COND_WORKLOAD_READY, c.COND_ROUTING_READY, c.COND_JOB_COMPLETE, c.COND_EXPORT_READY])}
    return sorted(out, key=lambda x: (order.get(x["type"], 99), x["type"]))


def is_true(conditions: list[Condition], ctype: str) -> bool:
    cond = get_condition(conditions, ctype)
    return bool(cond and cond.get("status") == "True")


def changed_conditions(old: list[Condition], new: list[Condition]) -> list[Condition]:
    """Conditions whose status or reason changed: each is a state transition worth an Event."""
    out = []
    for cond in new:
        prev = get_condition(old, cond["type"])
        if prev is None or prev.get("status") != cond["status"] or prev.get("reason") != cond["reason"]:
            out.append(cond)
    return out
