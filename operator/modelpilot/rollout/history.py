"""The revision history (status.revisions): each revision's outcome, and the revisions beyond
revisionHistoryLimit deleted with their per-revision objects (kinds.PER_REVISION_KINDS)."""

from __future__ import annotations

from typing import Any

from .. import constants as c
from ..kinds import PER_REVISION_KINDS
from .decide import Decision
from .model import Reconcile
from .revisions import Revisions


def settle_history(rc: Reconcile, revs: Revisions, d: Decision) -> list[dict[str, Any]]:
    history = revs.history
    aborted = (rc.ro.get("aborted") or {}).get("revision")
    for r in history:
        rev = int(r["revision"])
        if rev == d.rolled_back:
            r["outcome"] = "RolledBack"
        if rev == d.stable:
            r["outcome"] = "Stable"
        elif rev == d.canary:
            r["outcome"] = "Progressing"
        elif aborted == rev:
            r["outcome"] = "Aborted"
        elif r.get("outcome") in ("Stable", "Progressing"):
            r["outcome"] = "Superseded"
    keep = sorted(history, key=lambda r: int(r["revision"]))
    protected = {d.stable, d.canary, revs.target, revs.spec_rev}
    kept_protected = len(protected & {int(x["revision"]) for x in keep})
    excess = [r for r in keep if int(r["revision"]) not in protected][: max(0, len(keep) - kept_protected - rc.md.revision_history_limit)]
    for r in excess:
        rev = int(r["revision"])
        if rev in rc.obs.deployments:
            for kind in PER_REVISION_KINDS:
                rc.plan.delete.append((kind, rc.md.namespace, c.revision_child_name(kind, rc.md.name, rev)))
    return [r for r in keep if r not in excess]
