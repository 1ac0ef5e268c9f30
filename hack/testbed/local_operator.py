"""Stop the operator that `hack/local-up.sh --with-operator` started, found by its recorded pid.

Tests and benchmarks run their own operator process; a second one acting on the same cluster would
fight it. Shared by tests/e2e/conftest.py, bench/reconcile.py and bench/rollout.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def stop_local_up_operator(local_dir: Path) -> None:
    pidfile = local_dir / "pids" / "operator.pid"
    if not pidfile.exists():
        return
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    except (ProcessLookupError, ValueError):
        pass
    pidfile.unlink()
