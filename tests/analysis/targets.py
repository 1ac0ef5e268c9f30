"""Test data for the real Prometheus: live metric targets, and an OpenMetrics file to backfill.

Live targets are tiny prometheus-client HTTP servers on 127.0.0.1, one per revision, that Prometheus
scrapes twice a second. Each scrape draws a fresh latency from the target's own distribution
(seeded), so a range selector over a target returns a real sample of that distribution.

The backfill holds ten minutes of history for several revisions, with known error ratios and
seeded latency samples; queries evaluated at its end time (`at=`) give the same answer on every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

NAMESPACE = "analysis-test"


class _Latency:
    """A collector whose gauge is redrawn on every scrape: lognormal around `median`."""

    def __init__(self, revision: int, median: float, seed: int):
        self.revision, self.median, self.rng = revision, median, random.Random(seed)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("mp_live_latency_seconds", "Request latency seen at this scrape",
                              labels=["namespace", "revision"])
        g.add_metric([NAMESPACE, str(self.revision)], self.rng.lognormvariate(math.log(self.median), 0.1))
        yield g


@dataclass
class Target:
    revision: int
    port: int
    server: object

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_target(revision: int, median: float, seed: int) -> Target:
    registry = CollectorRegistry()
    registry.register(_Latency(revision, median, seed))
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    return Target(revision, server.server_port, server)


# Revisions in the backfill: (requests/s, errors/s, latency median in seconds).
#   1: the stable revision; 2: a canary with 5 % errors and 30 % slower; 3: a canary that gets no
#   traffic (its error ratio is 0/0 = NaN); 4: a healthy canary, like the stable one.
BACKFILL_REVISIONS = {1: (100.0, 0.05, 0.100), 2: (100.0, 5.0, 0.130), 3: (0.0, 0.0, 0.100), 4: (100.0, 0.05, 0.100)}
BACKFILL_STEP = 5  # seconds between samples
BACKFILL_SPAN = 600  # seconds of history


def write_backfill(path: Path, end: int) -> None:
    """OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`, ending at `end`."""
    requests = ["# TYPE mp_requests counter"]
    latency = ["# TYPE mp_latency_seconds gauge"]
    for rev, (rps, eps, median) in BACKFILL_REVISIONS.items():
        rng = random.Random(1000 + rev)
        for i in range(BACKFILL_SPAN // BACKFILL_STEP + 1):
            t = end - BACKFILL_SPAN + i * BACKFILL_STEP
            elapsed = i * BACKFILL_STEP
            base = f'namespace="{NAMESPACE}",revision="{rev}"'
            requests.append(f'mp_requests_total{{{base},code="200"}} {(rps - eps) * elapsed:.3f} {t}')
            requests.append(f'mp_requests_total{{{base},code="500"}} {eps * elapsed:.3f} {t}')
            latency.append(f"mp_latency_seconds{{{base}}} {rng.lognormvariate(math.log(median), 0.25):.6f} {t}")
    path.write_text("\n".join(requests + latency + ["# EOF"]) + "\n")
