"""bench/peers.py --smoke on the local control plane: the reconcile scenario at N=10, for modelpilot
and for each peer that hack/build-testbed.sh peers has built (none in CI, which builds no peer).

Runs before tests/e2e (pyproject's testpaths): the e2e suite's session-wide operator would reconcile
the bench's ModelDeployments too, and its writes would count as the bench operator's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.integration

sys.path.insert(0, str(REPO / "bench"))
import peers  # noqa: E402


def test_smoke_measures_modelpilot_and_every_built_peer(kubeconfig: str) -> None:
    r = subprocess.run([sys.executable, str(REPO / "bench" / "peers.py"), "--smoke"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    table, line = r.stdout.rsplit("\n", 2)[0], r.stdout.strip().splitlines()[-1]
    result = json.loads(line)
    rows = {row["system"]: row for row in result["reconcile"]}
    mp = rows["modelpilot"]
    assert mp["n"] == 10 and mp["seconds"] > 0 and mp["floor_seconds"] > 0
    assert mp["ratio"] == pytest.approx(mp["seconds"] / mp["floor_seconds"], abs=0.01)  # both rounded
    assert mp["idle_writes"] == 0, "the operator wrote during an idle resync"
    assert 0 < mp["rss_mb"] < 500
    assert "| N=10 | modelpilot |" in table
    # A built peer is measured or its failure recorded with the error; one not built is named as such.
    if peers.built("kserve"):
        assert "kserve" in rows or any(k.startswith("reconcile/") for k in result["not_run"]), result["not_run"]
    else:
        assert "kserve" in result["not_run"] and "kserve" not in rows
