#!/usr/bin/env bash
# Run every test: unit, integration (real apiserver) and e2e (operator on the local control plane).
#
#   hack/test.sh [--help] [pytest args...]      e.g. hack/test.sh -m unit
#
# Installs what is missing (virtualenv, control-plane binaries), starts the local control plane if
# it is not up and stops it afterwards. Exits non-zero on any failure, and when no test ran.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
VENV="$("$HACK_DIR/venv.sh" export,test | tail -n1)"
"$HACK_DIR/build-testbed.sh"
"$HACK_DIR/build-testbed.sh" node traefik   # the real node's kubelet, kube-proxy, crictl and gateway
cd "$REPO_ROOT"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  log "pytest collected no tests: that is a failure here"
  exit 1
fi
exit $rc
