"""A real Prometheus for the analysis integration tests, started by hack/prometheus.sh.

It scrapes live targets (one per revision, twice a second) and is backfilled with ten minutes of
known history. State, pid and logs go to a temporary MODELPILOT_LOCAL_DIR, so the tests never touch
a Prometheus a developer runs from .local/; the session stops it at the end.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelpilot.analysis import PrometheusClient

from .targets import Target, start_target, write_backfill

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "hack" / "prometheus.sh")


@dataclass
class Prom:
    url: str
    client: PrometheusClient
    backfill_end: int  # unix seconds: evaluate backfill queries here for fixed answers
    stable: Target
    canary: Target

    def at_end(self, promql: str):
        return self.client.query(promql, at=self.backfill_end)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    local = tmp_path_factory.mktemp("prometheus-local")
    env = {**os.environ, "MODELPILOT_LOCAL_DIR": str(local)}
    end = int(time.time()) - 5
    backfill = local / "backfill.om"
    write_backfill(backfill, end)
    stable = start_target(1, median=0.100, seed=1)
    canary = start_target(2, median=0.150, seed=2)
    try:
        r = subprocess.run([SCRIPT, "start", "--port", "0", "--scrape-interval", "500ms", "--backfill", str(backfill),
                            "--target", f"stable={stable.address}", "--target", f"canary={canary.address}"],
                           env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"hack/prometheus.sh start failed ({r.returncode}):\n{r.stderr}{r.stdout}")
        url = r.stdout.strip().splitlines()[-1]
        try:
            yield Prom(url, PrometheusClient(url, timeout=5), end, stable, canary)
        finally:
            subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, timeout=30)
    finally:
        stable.stop()
        canary.stop()
