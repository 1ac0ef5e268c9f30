"""`modelpilot-operator`: run the Kopf operator against any kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

import kopf
from prometheus_client import start_http_server


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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("kubernetes.client.rest").setLevel(logging.WARNING)
    # Kopf logs every event-handler call at INFO: with nodes heartbeating that drowns everything.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
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
    start_http_server(args.metrics_port)
    asyncio.run(kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
