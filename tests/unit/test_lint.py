"""hack/lint.sh passes: ruff over the code and mypy --strict over the pure core (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_lint_passes() -> None:
    env = dict(os.environ, MODELPILOT_VENV=str(Path(sys.executable).parent.parent))
    r = subprocess.run([str(REPO / "hack" / "lint.sh")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"hack/lint.sh failed:\n{r.stdout}{r.stderr}"
