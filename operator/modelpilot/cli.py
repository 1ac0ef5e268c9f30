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
import json
import sys
import time
from typing import Any

import yaml

from .actions import NOT_CONSUMED, kubectl, request_control
from .config import ConfigError, load_config
from .dashboard import add_dashboard_parser
from .rollout import Observed, plan_model_deployment


def _load_documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise SystemExit(f"kubectl-modelpilot: cannot read {path}: {e.strerror}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise SystemExit(f"kubectl-modelpilot: {path} is not valid YAML: {e}") from None


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


def _get(args: argparse.Namespace) -> dict[str, Any] | None:
    r = kubectl(args.namespace, "get", "modeldeployment", args.name, "-o", "json")
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
        return None
    return json.loads(r.stdout)


def _comparison(body: dict[str, Any]) -> dict[str, Any] | None:
    """The shadow comparator's /comparison, through the apiserver's service proxy (the user's own
    RBAC: `get` on services/proxy), while a compared shadow rollout runs; None otherwise."""
    sh = ((body.get("spec") or {}).get("rollout") or {}).get("shadow") or {}
    st = body.get("status") or {}
    if not (sh.get("compare") and st.get("canaryRevision") and (st.get("weights") or {}).get("mirror")):
        return None
    meta = body["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}-comparator:metrics/proxy/comparison"
    r = kubectl(None, "get", "--raw", path)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[:200] or "the comparator did not answer"}
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"error": f"the comparator answered: {r.stdout[:200]}"}


def format_comparison(cmp: dict[str, Any]) -> list[str]:
    if cmp.get("error"):
        return [f"  comparison: not available ({cmp['error']})"]
    s = cmp.get("summary") or {}

    def num(key: str, fmt: str) -> str:
        return "-" if s.get(key) is None else format(s[key], fmt)

    lines = [f"  comparison: {s.get('requestsCompared', 0)} compared, agreement {num('agreement', '.2%')}, "
             f"max |diff| {num('maxAbsDiff', '.4g')}, mean |diff| {num('meanAbsDiff', '.4g')}, "
             f"latency x{num('latencyRatio', '.2f')}, shadow errors {num('shadowErrorRate', '.2%')}"]
    latest = cmp.get("latest") or {}
    if latest:
        detail = latest.get("error") or latest.get("mismatch") or (
            f"{latest.get('agreedRows')}/{latest.get('rows')} rows agree, max |diff| {latest.get('maxAbsDiff', 0):.4g}")
        lines.append(f"    latest {latest.get('at', '')} {latest.get('path', '')}: {latest.get('outcome')} - {detail}")
    return lines


def format_status(body: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
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
    parity = ro.get("parity") or {}
    if parity and parity.get("revision") == st.get("canaryRevision"):
        lines.append(f"  parity:    revision {parity['revision']} passed: {parity.get('message', '')}")
    if comparison is not None:
        lines.extend(format_comparison(comparison))
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
        text = format_status(body, _comparison(body))
        if not args.watch:
            print(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text + f"\n\n(refreshing every {args.interval}s; Ctrl-C to stop)\n")
        sys.stdout.flush()
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


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
