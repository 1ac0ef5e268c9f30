#!/usr/bin/env bash
# Traefik (hack/build-testbed.sh traefik) as the local cluster's Gateway API implementation.
#
#   hack/gateway.sh start --namespace NS --port PORT [--class NAME]
#   hack/gateway.sh stop | --help
#
# start creates the GatewayClass NAME (default modelpilot-traefik), the Gateway `web` in NS with one
# HTTP listener `http` on PORT, and a ServiceAccount `traefik` in NS bound to a ClusterRole that
# reads what Traefik's Gateway API provider watches and writes the routes' status; then runs
# Traefik on 127.0.0.1:PORT with that identity, watching NS only, waits until the Gateway is
# Programmed and prints its URL last. HTTPRoutes in NS that name the Gateway `web` are served there.
# Log: $LOCAL_DIR/logs/traefik.log; pid: $LOCAL_DIR/pids/traefik.pid (hack/local-down.sh stops it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
PID_FILE="$LOCAL_DIR/pids/traefik.pid"
export KUBECONFIG="$LOCAL_DIR/kubeconfig" PATH="$(testbed_path)"

alive() { [[ -f "$PID_FILE" && -r "/proc/$(cat "$PID_FILE")/cmdline" ]] && tr '\0' '\n' <"/proc/$(cat "$PID_FILE")/cmdline" | head -n1 | grep -q '/traefik$'; }

rbac() { # NS CLASS
  cat <<YAML
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: traefik, namespace: $1}}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: $2}
  rules:
  - {apiGroups: [""], resources: [namespaces, services, secrets, configmaps], verbs: [get, list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
  - {apiGroups: [gateway.networking.k8s.io], resources: [gatewayclasses, gateways, httproutes, grpcroutes, referencegrants, backendtlspolicies], verbs: [get, list, watch]}
  - {apiGroups: [gateway.networking.k8s.io], resources: [gatewayclasses/status, gateways/status, httproutes/status, grpcroutes/status, backendtlspolicies/status], verbs: [update, patch]}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: $2}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: $2}
  subjects: [{kind: ServiceAccount, name: traefik, namespace: $1}]
- apiVersion: gateway.networking.k8s.io/v1
  kind: GatewayClass
  metadata: {name: $2}
  spec: {controllerName: traefik.io/gateway-controller}
YAML
}

gateway() { # NS CLASS PORT
  cat <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: $1}
spec:
  gatewayClassName: $2
  listeners: [{name: http, port: $3, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}]
YAML
}

cmd_start() {
  local ns="" port="" class=modelpilot-traefik
  while (($#)); do
    case "$1" in
      --namespace) ns="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      --class) class="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) die "start: unknown argument '$1' (try --help)" ;;
    esac
  done
  [[ -n "$ns" && "$port" =~ ^[0-9]+$ ]] || die "start needs --namespace NS and --port PORT (try --help)"
  alive && die "Traefik already runs (pid $(cat "$PID_FILE")): run '$0 stop' first"
  local exe; exe="$(traefik_bin_dir)/traefik"
  [[ -x "$exe" ]] || die "no $exe: run hack/build-testbed.sh traefik"
  rbac "$ns" "$class" | kubectl apply -f - >/dev/null
  gateway "$ns" "$class" "$port" | kubectl apply -f - >/dev/null
  local token; token="$(kubectl -n "$ns" create token traefik --duration=8h)"
  mkdir -p "$LOCAL_DIR/pids" "$LOCAL_DIR/logs"
  setsid nohup "$exe" --entryPoints.web.address="127.0.0.1:$port" --providers.kubernetesgateway=true \
    --providers.kubernetesgateway.endpoint="https://127.0.0.1:${MODELPILOT_APISERVER_PORT:-16443}" \
    --providers.kubernetesgateway.token="$token" --providers.kubernetesgateway.certAuthFilePath="$LOCAL_DIR/pki/ca.crt" \
    --providers.kubernetesgateway.namespaces="$ns" --log.level=INFO --global.checknewversion=false \
    --global.sendanonymoususage=false >"$LOCAL_DIR/logs/traefik.log" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 180); do
    if [[ "$(kubectl -n "$ns" get gateway web -o jsonpath='{.status.conditions[?(@.type=="Programmed")].status}')" == True ]]; then
      log "Traefik programs Gateway $ns/web on 127.0.0.1:$port (pid $(cat "$PID_FILE"), log $LOCAL_DIR/logs/traefik.log)"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    alive || die "Traefik exited: $(tail -5 "$LOCAL_DIR/logs/traefik.log")"
    sleep 0.5
  done
  die "Gateway $ns/web not Programmed after 90s: $(tail -5 "$LOCAL_DIR/logs/traefik.log")"
}

cmd_stop() {
  alive || { rm -f "$PID_FILE"; return 0; }
  stop_pid_file Traefik "$PID_FILE"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
