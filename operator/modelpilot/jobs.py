"""A Job's outcome as the operator reads it: the Job's own conditions, and the result its
container left in the kubelet's termination message (the export Job and the parity check Job)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def job_condition(job: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    """The Job's `ctype` condition (Complete, Failed) when it is True, else None."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == "True":
            return cond
    return None


def termination(pods: list[Mapping[str, Any]], want_phase: str, container: str) -> tuple[dict[str, Any] | None, str | None]:
    """(parsed JSON result, raw message) of `container` in the newest pod in `want_phase` that left one."""
    candidates = [p for p in pods if (p.get("status") or {}).get("phase") == want_phase]
    candidates.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
    for p in candidates:
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            msg = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if not msg:
                continue
            try:
                parsed = json.loads(msg)
                return (parsed if isinstance(parsed, dict) else None), msg
            except ValueError:
                return None, msg.strip().splitlines()[-1][:1024] if msg.strip() else None
    return None, None
