"""metav1.Condition helpers and phase derivation. Status is changed by pure functions on copies.

`set_condition` keeps lastTransitionTime when the status did not flip, so that recomputing the same
state twice produces identical bytes: that is what makes an idle resync write nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from . import constants as c

Condition = dict[str, Any]

#: Longest condition, Event or status message: a message is for a human, and the CRD (like
#: metav1.Condition) refuses a condition message over 32 KiB, which would fail the write forever.
MAX_MESSAGE = 1024
#: Status budget: etcd refuses objects over 1.5 MiB, and every watcher gets the whole object on
#: every write. `fit_status` keeps status under it, dropping detail that can be re-measured.
MAX_STATUS_BYTES = 32 * 1024


def cap_message(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text`, cut to `limit` characters with a note of how much was cut."""
    if len(text) <= limit:
        return text
    note = f" ... ({len(text) - limit} more characters)"
    return text[: limit - len(note)] + note


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
        "message": cap_message(message),
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    })
    order = {t: i for i, t in enumerate([c.COND_READY, c.COND_SPEC_VALID, c.COND_SCHEDULABLE, c.COND_WORKLOAD_READY,
                                         c.COND_ROUTING_READY, c.COND_JOB_COMPLETE, c.COND_EXPORT_READY])}
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


def status_bytes(status: Any) -> int:
    return len(json.dumps(status, separators=(",", ":"), default=str))


def fit_status(status: dict[str, Any], budget: int = MAX_STATUS_BYTES) -> dict[str, Any]:
    """A copy of `status` that fits `budget` bytes of JSON, dropping the most re-creatable detail
    first: the analysis runs' measurement records, then every long string. Conditions, revisions,
    the rollout's state (an abort) and a pending control action always stay, so that a status write
    can never fail for size. Deterministic: the same status fits to the same bytes (no write loop)."""
    if status_bytes(status) <= budget:
        return status
    out = copy.deepcopy(status)
    runs = ((out.get("analysis") or {}).get("runs") or {})
    for keep in (3, 1, 0):
        for run in runs.values():
            if isinstance(run, dict) and isinstance(run.get("latest"), list):
                run["latest"] = run["latest"][-keep:] if keep else []
        if status_bytes(out) <= budget:
            return out
    for limit in (256, 64):
        out = _cap_strings(out, limit)
        if status_bytes(out) <= budget:
            return out
    return out


def _cap_strings(node: Any, limit: int) -> Any:
    if isinstance(node, str):
        return cap_message(node, max(limit, 48))
    if isinstance(node, dict):
        return {k: _cap_strings(v, limit) for k, v in node.items()}
    if isinstance(node, list):
        return [_cap_strings(v, limit) for v in node]
    return node


def foreign_owner(live: dict[str, Any] | None, owner_uid: str) -> str | None:
    """Who holds `live` if not the owner with `owner_uid`: "<Kind> <name>", "no owner" for an object
    someone created by hand, or None when it is ours (or does not exist)."""
    if live is None:
        return None
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    ctrl = next((r for r in refs if r.get("controller")), None)
    if ctrl is None:
        return "no owner (created outside modelpilot)"
    if ctrl.get("uid") == owner_uid:
        return None
    return f"{ctrl.get('kind')} {ctrl.get('name')}"


def with_apply_failure(status: dict[str, Any], events: list[tuple[str, str, str]], old_status: dict[str, Any],
                       reason: str, message: str, generation: int, now: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The planned status and Events of a reconcile whose children the apiserver refused: Ready is
    False with `reason` and the apiserver's message (which names the field). The planned condition
    transitions are replaced by that one, reported once: a retry that fails the same way writes and
    posts nothing. Every other planned Event (an abort, a manual action) stays."""
    planned = status.get("conditions") or []
    derived = {(x.get("reason"), x.get("message")) for x in planned}
    kept = [e for e in events if (e[1], e[2]) not in derived]
    conds = set_condition(planned, c.COND_READY, False, reason, message, generation, now)
    out = {**status, "conditions": conds}
    if get_condition(old_status.get("conditions") or [], c.COND_READY) != get_condition(conds, c.COND_READY):
        kept.append(("Warning", reason, cap_message(message)))
    return out, kept
