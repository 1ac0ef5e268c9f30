"""`modelpilot-operator`: run the Kopf operator against any kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import kopf
from prometheus_client import start_http_server

if TYPE_CHECKING:
    from .leader import LeaderElector

# The Helm chart's Lease name for its default release name (charts/modelpilot: <fullname>-leader).
DEFAULT_LEASE = "modelpilot-leader"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="modelpilot-operator", description=__doc__)
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
    p.add_argument("--namespace", "-n", action="append", default=[], help="watch only this namespace (repeatable; default: all)")
    p.add_argument("--config", help="operator config YAML (default: $MODELPILOT_CONFIG)")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("MODELPILOT_METRICS_PORT", 8080)))
    p.add_argument("--health-port", type=int, default=int(os.environ.get("MODELPILOT_HEALTH_PORT", 8081)))
    p.add_argument("--workers", type=int, default=int(os.environ.get("MODELPILOT_WORKERS", 8)))
    p.add_argument("--resync-seconds", type=float, default=float(os.environ.get("MODELPILOT_RESYNC_SECONDS", 300)))
    p.add_argument("--log-format", choices=["text", "json"], default=os.environ.get("MODELPILOT_LOG_FORMAT", "text"))
    p.add_argument("--verbose", "-v", action="store_true")
    le = p.add_argument_group("leader election", "with several replicas, only the holder of a coordination.k8s.io Lease acts")
    # On by default: two operators started by hand (or one by hand next to the chart's) must not both act.
    le.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=os.environ.get("MODELPILOT_LEADER_ELECT", "1") == "1",
                    help="reconcile only while holding the Lease (default: on; --no-leader-elect for a single replica "
                         "that must not wait for a Lease)")
    le.add_argument("--leader-elect-lease", default=DEFAULT_LEASE, help=f"Lease name (default: {DEFAULT_LEASE}, the chart's)")
    le.add_argument("--leader-elect-namespace", default=os.environ.get("POD_NAMESPACE"),
                    help="Lease namespace (default: $POD_NAMESPACE, else the kubeconfig's namespace, else default)")
    le.add_argument("--leader-elect-identity", help="this candidate's identity (default: $POD_NAME or hostname, plus a random suffix)")
    le.add_argument("--leader-elect-lease-seconds", type=float, default=15.0, help="how long a Lease is valid without renewal")
    le.add_argument("--leader-elect-renew-seconds", type=float, default=10.0, help="a leader that cannot renew for this long stops")
    le.add_argument("--leader-elect-retry-seconds", type=float, default=2.0, help="how often to try to acquire or renew")
    return p.parse_args(argv)


def _lease_namespace(args: argparse.Namespace) -> str:
    if args.leader_elect_namespace:
        return args.leader_elect_namespace
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        pass
    import kubernetes
    try:
        _, ctx = kubernetes.config.list_kube_config_contexts()
        return (ctx.get("context") or {}).get("namespace") or "default"
    except (kubernetes.config.ConfigException, OSError):
        return "default"


def _elector(args: argparse.Namespace) -> LeaderElector:
    import kubernetes

    from . import kube
    from .leader import LeaderElector, default_identity
    identity = args.leader_elect_identity or default_identity()
    kube.USER_AGENT = f"modelpilot-operator/{identity}"
    # Its own API client (own connection pool): renewals never queue behind reconciles.
    api = kubernetes.client.CoordinationV1Api(kube.KubeClient.from_environment(pool_size=2).api)
    return LeaderElector(api, _lease_namespace(args), args.leader_elect_lease, identity,
                         lease_seconds=args.leader_elect_lease_seconds, renew_seconds=args.leader_elect_renew_seconds,
                         retry_seconds=args.leader_elect_retry_seconds)


def _limit_malloc_arenas() -> None:
    """Re-exec once with MALLOC_ARENA_MAX=2 unless the environment sets it.

    glibc gives each thread its own malloc arena; with the reconcile thread pool that fragments the
    heap and keeps peak memory resident (measured with bench/reconcile.py). It must be set before
    the process starts, hence the re-exec (same pid, so pid files stay valid).
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    os.environ["MALLOC_ARENA_MAX"] = "2"
    try:
        os.execv(sys.executable, [sys.executable, *sys.argv])
    except OSError:
        pass  # keep running with the default allocator


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        _limit_malloc_arenas()
    args = parse_args(argv)
    # `kill -USR1 <pid>` writes every thread's stack to stderr: what a stuck reconcile waits on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("kubernetes.client.rest").setLevel(logging.WARNING)
    # Kopf logs every event-handler call at INFO: with nodes heartbeating that drowns everything.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
        # The client library resolved its default kubeconfig path when Kopf imported it; Kopf's
        # login reads that default, so point it at --kubeconfig too.
        import kubernetes.config.kube_config as kube_config

        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = args.kubeconfig
    if args.config:
        os.environ["MODELPILOT_CONFIG"] = args.config

    from .config import ConfigError, load_config
    from .handlers import wiring  # registers the Kopf handlers

    try:
        load_config()
    except ConfigError as e:
        print(f"modelpilot-operator: {e}", file=sys.stderr)
        return 2
    wiring.RT.workers = args.workers
    wiring.RT.resync_seconds = args.resync_seconds
    wiring.RT.namespaces = list(args.namespace)
    if args.leader_elect:
        try:
            wiring.RT.elector = _elector(args)
        except ValueError as e:
            print(f"modelpilot-operator: {e}", file=sys.stderr)
            return 2
    from .leader import default_identity

    start_http_server(args.metrics_port)
    # standalone: no Kopf peering. Kopf's peering pauses its watch streams, but our work queue and
    # resync would keep running; the Lease gates exactly those (docs/design.md, "High availability").
    asyncio.run(kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,
        # Kopf's own default asks the password database for the user name, which fails for a uid
        # without an entry (any pod's runAsUser): the pod's name is the identity anyway.
        identity=wiring.RT.elector.identity if wiring.RT.elector is not None else default_identity(),
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
    ))
    if wiring.RT.elector is not None:
        # Let in-flight reconciles finish before a successor may start: then hand the Lease over.
        executor = getattr(wiring.RT, "executor", None)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        wiring.RT.elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
