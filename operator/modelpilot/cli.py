"""`kubectl modelpilot` (console script kubectl-modelpilot; kubectl finds it as a plugin).

  render -f FILE                 print the exact objects the operator would apply for a ModelDeployment
  status NAME [--watch]          steps, weights, analysis, history and conditions
  promote NAME [--full]          finish the current step (or every step) now
  abort NAME                     send all traffic back to stable and scale the canary down
  pause NAME / resume NAME       hold the rollout where it is / let it go on (resume also retries an aborted one)
  undo NAME [--to-revision N]    serve an earlier revision again (default: the previous stable one)
  dashboard [--port 3100]        a local web app: every rollout and export, live, with the same actions

Manual actions never edit spec, so Argo CD and Flux see no drift: they are written to the
ModelDeployment's status (`status.control`, through the status subresource), which the operator
consumes once and records. `render` uses the operator's own planning code with no cluster
observations, so what it prints is what a first reconcile applies.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import yaml

from .config import ConfigError, load_config
from .dashboard import add_dashboard_parser
from .rollout import Observed, plan_model_deployment

KUBECTL = os.environ.get("KUBECTL", "kubectl")


def _load_documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise SystemExit(f"kubectl-modelpilot: cannot read {path}: {e.strerror}")
    try:
        return [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise SystemExit(f"kubectl-modelpilot: {path} is not valid YAML: {e}")


def cmd_render(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"kubectl-modelpilot: {e}", file=sys.stderr)
        return 2
    out: list[dict[str, Any]] = []
    for doc in _load_documents(args.file):
        if doc.get("kind") != "ModelDeployment":
            print(f"kubectl-modelpilot: {args.file}: kind {doc.get('kind')!r} is not rendered (only ModelDeployment)", file=sys.stderr)
            return 2
        doc.setdefault("metadata", {}).setdefault("namespace", args.namespace)
        plan = plan_model_deployment(doc, config, Observed(deployments={}, nodes=None, now="1970-01-01T00:00:00Z"))
        invalid = [c for c in plan.status.get("conditions", []) if c["type"] == "SpecValid" and c["status"] == "False"]
        if invalid:
            print(f"kubectl-modelpilot: {doc['metadata'].get('name')}: {invalid[0]['message']}", file=sys.stderr)
            return 2
        out.extend(plan.apply)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)
    return 0


def _kubectl(namespace: str | None, *cmd: str) -> subprocess.CompletedProcess:
    full = [KUBECTL, *cmd]
    if namespace:
        full[1:1] = ["-n", namespace]
    return subprocess.run(full, capture_output=True, text=True)


def _get(args: argparse.Namespace) -> dict[str, Any] | None:
    r = _kubectl(args.namespace, "get", "modeldeployment", args.name, "-o", "json")
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
        return None
    return json.loads(r.stdout)


def format_status(body: dict[str, Any]) -> str:
    st = body.get("status") or {}
    spec = body.get("spec") or {}
    w = st.get("weights") or {}
    ro = st.get("rollout") or {}
    lines = [f"{body['metadata']['namespace']}/{body['metadata']['name']}: {st.get('phase', 'Unknown')}"
             + (f" - {st['message']}" if st.get("message") else "")]
    strategy = (spec.get("rollout") or {}).get("strategy", "direct")
    lines.append(f"  strategy:  {strategy} via {(spec.get('traffic') or {}).get('router', 'replicas')} router")
    lines.append(f"  stable:    revision {st.get('stableRevision', '-')}   canary: revision {st.get('canaryRevision', '-')}")
    approx = "" if w.get("achieved", True) else "  (approximate: what the router achieves)"
    lines.append(f"  weights:   stable {w.get('stable', '-')}%  canary {w.get('canary', '-')}%  mirror {w.get('mirror', '-')}%{approx}")
    if strategy == "canary" and st.get("canaryRevision"):
        steps = ((spec.get("rollout") or {}).get("canary") or {}).get("steps") or []
        lines.append("  steps:")
        for i, s in enumerate(steps):
            mark = "✓" if i < int(st.get("currentStep") or 0) else ("▶" if i == st.get("currentStep") else " ")
            lines.append(f"    {mark} {i}: {json.dumps(s, separators=(',', ':'))[:100]}")
    if st.get("pauseReason"):
        lines.append(f"  paused:    {st['pauseReason']}")
    if ro.get("aborted"):
        lines.append(f"  aborted:   revision {ro['aborted']['revision']}: {ro['aborted']['message']}")
    runs = (st.get("analysis") or {}).get("runs") or {}
    if runs:
        lines.append("  analysis:")
        for key, run in runs.items():
            lines.append(f"    {key}: {run.get('phase')}" + (f" - {run['message']}" if run.get("message") else ""))
            for m in (run.get("latest") or [])[-3:]:
                lines.append(f"      {m.get('at', '')} {m.get('metric')}: {m.get('verdict')} value={m.get('value')}")
    lines.append(f"  replicas:  {st.get('readyReplicas', 0)}/{st.get('replicas', 0)} ready   endpoint: {st.get('endpoint', '-')}")
    lines.append("  revisions:")
    for rev in st.get("revisions") or []:
        lines.append(f"    r{rev['revision']:<3} {rev.get('outcome', ''):<12} {rev.get('created', '')}  {rev.get('modelDigest', '')}")
    lines.append("  conditions:")
    for cnd in st.get("conditions") or []:
        lines.append(f"    {cnd['type']:<14} {cnd['status']:<6} {cnd['reason']}: {cnd['message']}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    while True:
        body = _get(args)
        if body is None:
            return 1
        text = format_status(body)
        if not args.watch:
            print(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text + f"\n\n(refreshing every {args.interval}s; Ctrl-C to stop)\n")
        sys.stdout.flush()
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


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
    control = {"action": action, "requestedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "requestedBy": _requester(), **({"toRevision": to_revision} if to_revision else {})}
    deadline = time.monotonic() + wait
    while True:
        found = _kubectl(namespace, "get", "modeldeployment", name, "-o", "json")
        if found.returncode != 0:
            return False, found.stderr.strip()
        body = json.loads(found.stdout)
        pending = pending_control(body)
        if pending is None:
            patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": {"control": control}}
            r = _kubectl(namespace, "patch", "modeldeployment", name, "--subresource=status", "--type=merge",
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


def _control(args: argparse.Namespace, action: str, to_revision: int | None = None) -> int:
    done, message = request_control(args.name, args.namespace, action, to_revision, wait=args.wait)
    if not done:
        print(message, file=sys.stderr)
        return 3 if NOT_CONSUMED in message else 1
    print(f"{message}; follow it with `kubectl modelpilot status {args.name} --watch`")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubectl modelpilot", description="modelpilot kubectl plugin",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the objects the operator would apply for a ModelDeployment")
    r.add_argument("-f", "--file", required=True, help="ModelDeployment manifest ('-' for stdin)")
    r.add_argument("-n", "--namespace", default="default")
    r.add_argument("--config", help="operator config YAML (node pools, images); default $MODELPILOT_CONFIG")
    r.set_defaults(func=cmd_render)

    def named(name: str, helptext: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("name")
        sp.add_argument("-n", "--namespace")
        if name != "status":
            sp.add_argument("--wait", type=float, default=30.0,
                            help="seconds to wait for an earlier action to be consumed before giving up (default 30)")
        return sp

    s = named("status", "show a ModelDeployment's rollout: steps, weights, analysis, history")
    s.add_argument("-w", "--watch", action="store_true")
    s.add_argument("--interval", type=float, default=2.0)
    s.set_defaults(func=cmd_status)
    pr = named("promote", "finish the current step now (--full: skip every remaining step)")
    pr.add_argument("--full", action="store_true")
    pr.set_defaults(func=lambda a: _control(a, "promoteFull" if a.full else "promote"))
    named("abort", "return all traffic to stable and scale the canary down").set_defaults(func=lambda a: _control(a, "abort"))
    named("pause", "hold the rollout where it is").set_defaults(func=lambda a: _control(a, "pause"))
    named("resume", "continue a paused rollout, or retry an aborted one").set_defaults(func=lambda a: _control(a, "resume"))
    u = named("undo", "serve an earlier revision again without editing spec")
    u.add_argument("--to-revision", type=int, dest="to_revision")
    u.set_defaults(func=lambda a: _control(a, "undo", a.to_revision))
    add_dashboard_parser(sub)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
