"""`python -m modelpilot.comparator`: run the shadow comparator (see server.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .compare import PROTOCOLS
from .server import Settings, serve


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m modelpilot.comparator", description=__doc__)
    p.add_argument("--stable-url", required=True, help="base URL of the stable revision's Service")
    p.add_argument("--shadow-url", required=True, help="base URL of the shadow revision's Service")
    p.add_argument("--protocol", required=True, choices=PROTOCOLS, help="the runtime's HTTP inference protocol")
    p.add_argument("--namespace", required=True, help="metric label: the ModelDeployment's namespace")
    p.add_argument("--name", required=True, help="metric label: the ModelDeployment's name")
    p.add_argument("--stable-revision", required=True, help="metric label")
    p.add_argument("--shadow-revision", required=True, help="metric label")
    p.add_argument("--sample", type=float, default=1.0, help="fraction of mirrored requests to compare (0..1)")
    p.add_argument("--rate", type=float, default=20.0, help="at most this many comparisons per second")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each revision's answer")
    p.add_argument("--max-in-flight", type=int, default=16, help="concurrent comparisons; more are skipped")
    p.add_argument("--atol", type=float, default=1e-3, help="absolute tolerance for non-classifier outputs")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance for non-classifier outputs")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080, help="mirrored requests")
    p.add_argument("--metrics-port", type=int, default=9090, help="/metrics, /comparison, /healthz")
    a = p.parse_args(argv)
    if not 0 <= a.sample <= 1:
        p.error(f"--sample must be between 0 and 1, got {a.sample}")
    if a.rate <= 0 or a.timeout <= 0 or a.max_in_flight < 1:
        p.error("--rate and --timeout must be > 0 and --max-in-flight >= 1")
    s = Settings(a.stable_url, a.shadow_url, a.protocol, a.namespace, a.name, a.stable_revision, a.shadow_revision,
                 sample=a.sample, rate=a.rate, timeout=a.timeout, max_in_flight=a.max_in_flight, atol=a.atol, rtol=a.rtol)
    return s, a


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    runners = await serve(settings, args.host, args.port, args.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.info("comparing %s (stable) with %s (shadow) on :%d", settings.stable_url, settings.shadow_url, args.port)
    await stop.wait()
    for r in runners:
        await r.cleanup()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings, args = parse_args(argv)
    asyncio.run(_run(settings, args))


if __name__ == "__main__":
    main()
