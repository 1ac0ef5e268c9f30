#!/usr/bin/env bash
# Stop exactly the processes hack/local-up.sh started (found by their recorded pids, checked
# against the command they were started with) and remove the local state in .local/.
#
#   hack/local-down.sh [--keep-state] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KEEP=0
for a in "$@"; do
  case "$a" in
    --keep-state) KEEP=1 ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$a' (try --help)" ;;
  esac
done
PIDS="$LOCAL_DIR/pids"
# The demo's gateway (hack/gateway.sh), then the real node (its pods, mounts, interfaces and
# iptables rules), while the apiserver is up.
"$HACK_DIR/gateway.sh" stop
[[ -d "$LOCAL_DIR/node" ]] && { "$HACK_DIR/real-node.sh" down || log "real node clean-up reported an error (see above)"; }
# Stop in reverse start order, so nothing reconnects to a vanished apiserver.
for name in operator kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$PIDS/$name.pid"; [[ -f "$f" ]] || continue
  pid="$(cat "$f")"
  bin="$name"; [[ "$name" == operator ]] && bin=modelpilot-operator
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$bin"; then
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  else
    log "$name: pid $pid is not running $bin any more; leaving it alone"
  fi
  rm -f "$f"
done
if (( ! KEEP )); then
  rm -rf "$LOCAL_DIR/etcd" "$LOCAL_DIR/pki" "$LOCAL_DIR"/*.kubeconfig "$LOCAL_DIR/kubeconfig" "$LOCAL_DIR/pids"
  log "removed local state in $LOCAL_DIR (logs kept in $LOCAL_DIR/logs)"
fi
