"""Manual actions (`kubectl modelpilot promote|pause|resume|abort|undo`, and the dashboard's
buttons) written to a ModelDeployment's `status.control` with kubectl, as the user. The one write
path of the CLI and the dashboard; the operator takes each action once (rollout/control.py).
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

KUBECTL = os.environ.get("KUBECTL", "kubectl")


def kubectl(namespace: str | None, *cmd: str) -> subprocess.CompletedProcess:
    full = [KUBECTL, *cmd]
    if namespace:
        full[1:1] = ["-n", namespace]
    return subprocess.run(full, capture_output=True, text=True)


def _requester() -> str:
    r = subprocess.run([KUBECTL, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else getpass.getuser()


#: status.control actions, as the CLI's subcommands and the dashboard's buttons request them.
CONTROL_ACTIONS = ("promote", "promoteFull", "pause", "resume", "abort", "undo")
NOT_CONSUMED = "that the operator has not consumed"


def pending_control(body: dict[str, Any]) -> dict[str, Any] | None:
    """The manual action the operator has not consumed yet (it removes status.control when it does)."""
    ctl = (body.get("status") or {}).get("control")
    if not ctl or ctl.get("requestedAt") == ((body.get("status") or {}).get("rollout") or {}).get("lastAction"):
        return None
    return ctl


def request_control(name: str, namespace: str | None, action: str, to_revision: int | None = None,
                    wait: float = 0.0) -> tuple[bool, str]:
    """Write a manual action to the ModelDeployment's `status.control` with kubectl (the user's own
    kubeconfig and RBAC): (done, what happened). The one write path of the CLI and the dashboard.
    Never over an action the operator has not consumed yet: wait for it up to `wait` seconds, and
    send with the resourceVersion read, so that of two writers racing one gets a conflict and tries
    again instead of replacing the other's action (an abort) unseen."""
    if action not in CONTROL_ACTIONS:
        return False, f"unknown action {action!r}: use one of {', '.join(CONTROL_ACTIONS)}"
    control = {"action": action, "requestedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "requestedBy": _requester(), **({"toRevision": to_revision} if to_revision else {})}
    deadline = time.monotonic() + wait
    while True:
        found = kubectl(namespace, "get", "modeldeployment", name, "-o", "json")
        if found.returncode != 0:
            return False, found.stderr.strip()
        body = json.loads(found.stdout)
        pending = pending_control(body)
        if pending is None:
            patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": {"control": control}}
            r = kubectl(namespace, "patch", "modeldeployment", name, "--subresource=status", "--type=merge",
                         "-p", json.dumps(patch))
            if r.returncode == 0:
                return True, f"modeldeployment/{name}: {action} requested"
            if "Conflict" not in r.stderr and "has been modified" not in r.stderr:
                return False, r.stderr.strip()
        if time.monotonic() >= deadline:
            what = (f"{pending['action']} requested by {pending.get('requestedBy', '?')} at {pending.get('requestedAt', '?')}"
                    if pending else "a write")
            return False, (f"kubectl-modelpilot: modeldeployment/{name} still has {what} {NOT_CONSUMED} after "
                           f"{wait:g}s (is the operator running?); {action} was not sent: try again once it is done, "
                           "or raise --wait")
        time.sleep(0.5)
