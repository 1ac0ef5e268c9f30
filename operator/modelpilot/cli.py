"""`kubectl modelpilot` (console script kubectl-modelpilot; kubectl finds it as a plugin).

  render -f FILE     print the exact objects the operator would apply for a ModelDeployment
  status NAME        phase, revisions, weights and conditions of a ModelDeployment

`render` uses the operator's own planning code with no cluster observations, so what it prints is
what a first reconcile applies: review it in a GitOps pull request, or diff it while debugging.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import yaml

from .api.errors import SpecError
from .config import ConfigError, load_config
from .rollout import Observed, plan_model_deployment


def _load_documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise SystemExit(f"kubectl-modelpilot: cannot read {path}: {e.strerror}")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise SystemExit(f"kubectl-modelpilot: {path} is not valid YAML: {e}")
    return docs


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


def cmd_status(args: argparse.Namespace) -> int:
    cmd = ["kubectl", "get", "modeldeployment", args.name, "-o", "json"]
    if args.namespace:
        cmd[2:2] = ["-n", args.namespace]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
        return r.returncode
    body = json.loads(r.stdout)
    st = body.get("status") or {}
    w = st.get("weights") or {}
    print(f"{body['metadata']['namespace']}/{args.name}: {st.get('phase', 'Unknown')}")
    print(f"  strategy:  {(body['spec'].get('rollout') or {}).get('strategy', 'direct')}")
    print(f"  stable:    revision {st.get('stableRevision', '-')}   canary: revision {st.get('canaryRevision', '-')}")
    print(f"  weights:   stable {w.get('stable', '-')}%  canary {w.get('canary', '-')}%  mirror {w.get('mirror', '-')}%")
    print(f"  replicas:  {st.get('readyReplicas', 0)}/{st.get('replicas', 0)} ready")
    print(f"  endpoint:  {st.get('endpoint', '-')}")
    print("  revisions:")
    for rev in st.get("revisions") or []:
        print(f"    r{rev['revision']:<3} {rev.get('outcome', ''):<12} {rev.get('created', '')}  {rev.get('modelDigest', '')}")
    print("  conditions:")
    for c in st.get("conditions") or []:
        print(f"    {c['type']:<14} {c['status']:<6} {c['reason']}: {c['message']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubectl modelpilot", description="modelpilot kubectl plugin")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the objects the operator would apply for a ModelDeployment")
    r.add_argument("-f", "--file", required=True, help="ModelDeployment manifest ('-' for stdin)")
    r.add_argument("-n", "--namespace", default="default")
    r.add_argument("--config", help="operator config YAML (node pools, images); default $MODELPILOT_CONFIG")
    r.set_defaults(func=cmd_render)
    s = sub.add_parser("status", help="show a ModelDeployment's rollout state")
    s.add_argument("name")
    s.add_argument("-n", "--namespace")
    s.set_defaults(func=cmd_status)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
