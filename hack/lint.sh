#!/usr/bin/env bash
# Lint: ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade; pyproject.toml [tool.ruff]) over the
# code, and mypy --strict over the pure core (pyproject.toml [tool.mypy]). tests/unit/test_lint.py
# runs it, so CI does.
#
#   hack/lint.sh [--fix]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV="${MODELPILOT_VENV:-$("$HACK_DIR/venv.sh" export,test | tail -n1)}"
cd "$REPO_ROOT"
"$VENV/bin/ruff" check ${1:+"$1"} operator exporters bench hack
"$VENV/bin/mypy"
