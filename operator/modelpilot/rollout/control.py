"""`kubectl modelpilot promote|pause|resume|abort|undo`: the request the plugin writes to
status.control, taken once (status.rollout.lastAction remembers which) and turned into rollout
state and an Event."""

from __future__ import annotations

from typing import Any

from .. import constants as c
from ..clock import to_rfc3339
from ..conditions import cap_message
from .model import Reconcile
from .steps import Step

ABORT_SCALE_DOWN_SECONDS = 30


def abort(rc: Reconcile, revision: int, reason: str, message: str) -> None:
    """All traffic back to stable; the aborted revision scales down after a short delay."""
    message = cap_message(message)  # an abort must always fit in status
    rc.ro["aborted"] = {"revision": revision, "reason": reason, "message": message, "at": rc.now_s}
    rc.ro.setdefault("scaleDown", {})[str(revision)] = to_rfc3339(rc.now + ABORT_SCALE_DOWN_SECONDS)
    rc.event("Warning", c.EVENT_ROLLOUT_ABORTED, f"revision {revision}: {message}; all traffic back to stable")


def consume_control(rc: Reconcile, stable: int | None, target: int) -> None:
    ctl = rc.status.pop("control", None)
    if not ctl or ctl.get("requestedAt") == rc.ro.get("lastAction"):
        return
    rc.ro["lastAction"] = ctl.get("requestedAt")
    action, who = ctl.get("action"), ctl.get("requestedBy") or "kubectl modelpilot"
    if action in ("promote", "resume") and (rc.ro.get("aborted") or {}).get("revision") == target:
        _retry(rc, action, who, target)
    elif action in ("promote", "promoteFull"):
        _promote(rc, action, who, rc.steps)
    elif action in ("pause", "resume"):
        rc.ro["paused"] = action == "pause"
        rc.event("Normal", c.EVENT_PAUSED if action == "pause" else "Resumed", f"{action}d by {who}")
    elif action == "abort":
        if stable is not None and target != stable:
            abort(rc, target, c.ABORT_BY_USER, f"aborted by {who}")
    elif action == "undo":
        _undo(rc, ctl, who, stable, target)


def _retry(rc: Reconcile, action: str, who: str, target: int) -> None:
    rc.ro.pop("aborted", None)
    rc.ro.pop("revision", None)  # restart the steps from the beginning
    rc.ro["paused"] = False
    rc.analysis = {}
    rc.event("Normal", c.EVENT_ROLLOUT_RETRIED, f"{action} by {who}: revision {target} rolls out again from step 0")


def _promote(rc: Reconcile, action: str, who: str, steps: list[Step]) -> None:
    rc.ro["paused"] = False
    if action == "promote":
        rc.ro["skip"] = int(rc.status.get("currentStep") or 0)
        rc.event("Normal", c.EVENT_PROMOTED, f"promote by {who}: step {rc.ro['skip']} skipped")
    else:
        rc.ro["skip"] = len(steps)
        rc.event("Normal", c.EVENT_PROMOTED, f"full promotion by {who}: remaining steps skipped")


def _undo(rc: Reconcile, ctl: dict[str, Any], who: str, stable: int | None, target: int) -> None:
    history = {int(r["revision"]) for r in rc.status.get("revisions") or []}
    to = ctl.get("toRevision") or _previous_stable(rc, stable)
    if to is None or to not in history or to not in rc.obs.deployments:
        rc.event("Warning", c.EVENT_UNDO_REJECTED, f"undo by {who}: revision {to} is not in the history with a Deployment "
                 f"(known: {sorted(r for r in history if r in rc.obs.deployments)})")
        return
    rc.ro["pinned"] = {"revision": int(to), "generation": rc.gen}
    rc.event("Normal", c.EVENT_UNDO, f"undo by {who}: rolling back to revision {to}; the spec still describes "
             f"revision {target}: revert it in git to make this permanent")


def _previous_stable(rc: Reconcile, stable: int | None) -> int | None:
    older = [int(r["revision"]) for r in rc.status.get("revisions") or []
             if int(r["revision"]) != stable and r.get("outcome") in ("Superseded", "Stable", "RolledBack")]
    return max(older) if older else None
