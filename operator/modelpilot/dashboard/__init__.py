"""`kubectl modelpilot dashboard`: a local web app to watch and steer rollouts and exports.

    kubectl modelpilot dashboard [--port 3100] [--namespace N | --all-namespaces] [--read-only] [--address 127.0.0.1]

It talks to the apiserver with the user's kubeconfig (RBAC applies exactly as for kubectl), watches
ModelDeployments and ModelExports and pushes every change to the page as a server-sent event.
`views` computes what the page shows, `watch` keeps the objects current, `server` serves them.
The server and the Kubernetes client are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from typing import Any

DEFAULT_PORT = 3100


def add_dashboard_parser(sub: Any) -> None:
    d = sub.add_parser("dashboard", help="serve a local web app: every rollout and export, live, with the same actions")
    d.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    d.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    scope = d.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="show this namespace (default: the kubeconfig context's namespace)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="show every namespace you may list")
    d.add_argument("--read-only", action="store_true", help="no action buttons; the server refuses actions")
    d.set_defaults(func=run)


def _context_namespace() -> str:
    import kubernetes
    _, active = kubernetes.config.list_kube_config_contexts()
    return (active or {}).get("context", {}).get("namespace") or "default"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def run(args: argparse.Namespace) -> int:
    import kubernetes
    from aiohttp import web

    from .server import Settings, make_app
    from .watch import AccessError, Hub, Watcher, check_access
    from .views import KINDS

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        kubernetes.config.load_kube_config()
        namespace = None if args.all_namespaces else (args.namespace or _context_namespace())
    except (kubernetes.config.ConfigException, OSError) as e:
        print(f"kubectl-modelpilot dashboard: cannot load the kubeconfig: {e}", file=sys.stderr)
        return 1
    api_client = kubernetes.client.ApiClient()
    try:
        check_access(api_client, namespace)
    except AccessError as e:
        print(f"kubectl-modelpilot dashboard: {e}", file=sys.stderr)
        return 1
    if not _is_loopback(args.address):
        print(f"kubectl-modelpilot dashboard: WARNING: listening on {args.address}: anyone who can reach this port "
              "sees what your kubeconfig may see" + ("" if args.read_only else " and can press its buttons")
              + "; the default 127.0.0.1 keeps it on this machine", file=sys.stderr)
    settings = Settings(port=args.port, address=args.address, namespace=namespace, read_only=args.read_only)
    hub = Hub()

    async def start_watches(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        for kind in KINDS:
            Watcher(api_client, kind, namespace, hub, loop).start()

    app = make_app(settings, hub)
    app.on_startup.append(start_watches)
    where = f"namespace {namespace}" if namespace else "all namespaces"
    url = f"http://{args.address if ':' not in args.address else f'[{args.address}]'}:{args.port}/"
    print(f"modelpilot dashboard for {where}{' (read-only)' if args.read_only else ''}: {url}  (Ctrl-C to stop)", flush=True)
    try:
        web.run_app(app, host=args.address, port=args.port, print=None, handle_signals=True, shutdown_timeout=1)
    except OSError as e:
        print(f"kubectl-modelpilot dashboard: cannot listen on {args.address}:{args.port}: {e.strerror}; "
              "pick another --port", file=sys.stderr)
        return 1
    return 0
