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
import signal
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

    from .server import Settings
    from .watch import AccessError, check_access

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
    try:
        asyncio.run(_serve(settings, api_client))
    except OSError as e:
        print(f"kubectl-modelpilot dashboard: cannot listen on {args.address}:{args.port}: {e.strerror}; "
              "pick another --port", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(settings: Any, api_client: Any) -> None:
    """Listen first, then start the watches: a port in use fails before any thread runs."""
    from aiohttp import web

    from .server import make_app
    from .views import KINDS
    from .watch import Hub, Watcher

    hub = Hub()
    runner = web.AppRunner(make_app(settings, hub), shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.address, settings.port).start()
        for kind in KINDS:
            Watcher(api_client, kind, settings.namespace, hub, asyncio.get_running_loop()).start()
        where = f"namespace {settings.namespace}" if settings.namespace else "all namespaces"
        host = settings.address if ":" not in settings.address else f"[{settings.address}]"
        print(f"modelpilot dashboard for {where}{' (read-only)' if settings.read_only else ''}: "
              f"http://{host}:{settings.port}/  (Ctrl-C to stop)", flush=True)
        await _until_stopped()
    finally:
        await runner.cleanup()


async def _until_stopped() -> None:
    """Return on SIGINT or SIGTERM. Handlers of our own: a process started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    (Ctrl-C, or `kill -INT` from a script, did nothing until a SIGKILL)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows' event loop: Ctrl-C raises KeyboardInterrupt there
            pass
    await stop.wait()
