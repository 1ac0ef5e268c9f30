#!/usr/bin/env bash
# Create or update the Python virtualenv outside the repo and install modelpilot into it, editable.
#
#   hack/venv.sh [--help] [EXTRAS]      EXTRAS defaults to "export,test"
#
# The venv lives at $MODELPILOT_VENV (default ~/.cache/modelpilot/venv) so that a fresh clone reuses
# the installed wheels (torch and tensorflow are large); pip's own cache serves what is missing.
# Prints the venv path last.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
EXTRAS="${1:-export,test}"
VENV="${MODELPILOT_VENV:-$MODELPILOT_CACHE/venv}"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || die "Python 3.11+ is required ($PY is $("$PY" --version 2>&1))"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.modelpilot-$(cat "$REPO_ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${EXTRAS//,/_}"
if [[ -f "$stamp" && -f "$VENV/.modelpilot-src" && "$(cat "$VENV/.modelpilot-src")" == "$REPO_ROOT" ]]; then
  log "virtualenv $VENV is current"
else
  log "installing modelpilot[$EXTRAS] into $VENV (first run downloads torch and tensorflow: minutes)"
  t=$SECONDS
  "$VENV/bin/pip" install --progress-bar off -q -e "$REPO_ROOT[$EXTRAS]" || die "pip install failed"
  rm -f "$VENV"/.modelpilot-*-* && touch "$stamp" && echo "$REPO_ROOT" >"$VENV/.modelpilot-src"
  log "installed in $((SECONDS - t))s"
fi
echo "$VENV"
