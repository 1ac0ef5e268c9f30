#!/usr/bin/env bash
# Start a real Kubernetes control plane on loopback, with kwok fake nodes (a CPU pool, two GPU
# pools, one MIG node), the modelpilot CRDs, the Gateway API CRDs and the Istio CRDs.
#
#   hack/local-up.sh [--with-operator] [--real-node] [--help]
#
# Processes: etcd, kube-apiserver (secure port, RBAC, service-account keys, generated
# certificates), kube-controller-manager, kube-scheduler, kwok. State and logs live in .local/;
# the admin kubeconfig is .local/kubeconfig. Running it again while the cluster is up is harmless:
# running processes are kept, missing ones are started. --with-operator also starts the operator
# in the background (log: .local/logs/operator.log). hack/local-down.sh stops exactly what this
# started. Ports: MODELPILOT_APISERVER_PORT (16443), MODELPILOT_ETCD_PORT (12379).
# --real-node also starts one real node (containerd, kubelet, kube-proxy; root needed) next to the
# kwok nodes and loads modelpilot's images into it: see hack/real-node.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WITH_OPERATOR=0 REAL_NODE=0
for a in "$@"; do
  case "$a" in
    --with-operator) WITH_OPERATOR=1 ;;
    --real-node) REAL_NODE=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$a' (try --help)" ;;
  esac
done

APISERVER_PORT="${MODELPILOT_APISERVER_PORT:-16443}"
ETCD_PORT="${MODELPILOT_ETCD_PORT:-12379}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
PKI="$LOCAL_DIR/pki"; LOGS="$LOCAL_DIR/logs"; PIDS="$LOCAL_DIR/pids"
KUBECONFIG_FILE="$LOCAL_DIR/kubeconfig"
mkdir -p "$PKI" "$LOGS" "$PIDS"

"$HACK_DIR/build-testbed.sh" etcd kubernetes kwok gateway-api istio
export PATH="$(testbed_path)"

# ---- certificates and kubeconfigs (generated once per state dir) ----
gen_client() { # NAME CN ORG
  local name="$1" cn="$2" org="$3" subj="/CN=$2"
  [[ -f "$PKI/$name.crt" ]] && return
  [[ -n "$org" ]] && subj="/O=$org/CN=$cn"
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -out "$PKI/$name.crt" 2>/dev/null
}
kubeconfig_for() { # NAME -> writes $LOCAL_DIR/<name>.kubeconfig (admin -> kubeconfig)
  local name="$1" out="$LOCAL_DIR/$1.kubeconfig"
  [[ "$name" == admin ]] && out="$KUBECONFIG_FILE"
  cat >"$out" <<KC
apiVersion: v1
kind: Config
clusters:
- name: modelpilot-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $PKI/$name.crt
    client-key: $PKI/$name.key
contexts:
- name: modelpilot-local
  context: {cluster: modelpilot-local, user: $name}
current-context: modelpilot-local
KC
}
if [[ ! -f "$PKI/ca.crt" ]]; then
  log "generating certificates in $PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 \
    -subj "/CN=modelpilot-local-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/apiserver.key" -subj "/CN=kube-apiserver" -out "$PKI/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >"$PKI/apiserver.ext"
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
gen_client admin admin system:masters
# The apiserver's identity towards kubelets (kubectl logs/exec on the real node).
gen_client apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
gen_client controller-manager system:kube-controller-manager ""
gen_client scheduler system:kube-scheduler ""
# kwok plays every kubelet: it patches node and pod status for all fake nodes.
gen_client kwok kwok system:masters
# The operator's identity in the local bed (the Helm chart uses a least-privilege ServiceAccount).
gen_client operator modelpilot-operator system:masters
# The peers of bench/peers.py, each with its own identity so that the audit log tells their writes apart.
for n in argo-rollouts flagger kserve; do gen_client "$n" "$n" system:masters; done
for n in admin controller-manager scheduler kwok operator argo-rollouts flagger kserve; do kubeconfig_for "$n"; done

# ---- process management ----
alive() { # NAME: the recorded pid is running the recorded binary
  local f="$PIDS/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}
start() { # NAME MATCH CMD...: start in the background unless already running
  local name="$1" match="$2"; shift 2
  if alive "$name" "$match"; then log "$name: already running (pid $(cat "$PIDS/$name.pid"))"; return; fi
  log "$name: starting (log: $LOGS/$name.log)"
  setsid nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}
wait_for() { # WHAT SECONDS CMD...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "$what did not come up in ${secs}s (logs: $LOGS)"
    sleep 0.5
  done
}

start etcd "etcd --name modelpilot" etcd --name modelpilot --data-dir "$LOCAL_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "modelpilot=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 4294967296
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "kube-apiserver --etcd-servers=http://127.0.0.1:$ETCD_PORT" kube-apiserver \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --authorization-mode=Node,RBAC \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
  --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true --endpoint-reconciler-type=none \
  --enable-priority-and-fairness=false --profiling=false --event-ttl=1h \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --audit-policy-file="$HACK_DIR/testbed/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
  --audit-log-maxsize=200 --audit-log-maxbackup=1
wait_for kube-apiserver 90 kubectl --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz

start kube-controller-manager "kube-controller-manager --kubeconfig=$LOCAL_DIR/controller-manager" kube-controller-manager \
  --kubeconfig="$LOCAL_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$LOCAL_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$LOCAL_DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
  --use-service-account-credentials=true --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" --service-cluster-ip-range=10.96.0.0/16 \
  --controllers='*,-nodeipam,-cloud-node-lifecycle,-route,-service' --concurrent-deployment-syncs=10 \
  --concurrent-replicaset-syncs=10 --kube-api-qps=200 --kube-api-burst=400
start kube-scheduler "kube-scheduler --kubeconfig=$LOCAL_DIR/scheduler" kube-scheduler \
  --kubeconfig="$LOCAL_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$LOCAL_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig="$LOCAL_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false
start kwok "kwok --kubeconfig=$LOCAL_DIR/kwok" kwok \
  --kubeconfig="$LOCAL_DIR/kwok.kubeconfig" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 --cidr=10.0.0.1/16 --node-ip=10.0.0.1 \
  --config="$HACK_DIR/testbed/kwok-stages.yaml" \
  --server-address=127.0.0.1:0

K() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }
log "applying fake nodes, Gateway API CRDs, Istio CRDs and modelpilot CRDs"
K apply --server-side --force-conflicts -f "$HACK_DIR/testbed/nodes.yaml" >/dev/null
K apply --server-side --force-conflicts -f "$(gateway_crd_dir)" >/dev/null
# Istio's API module ships every Istio CRD in one generated file (VirtualService for the istio router).
K apply --server-side --force-conflicts -f "$(istio_crd_dir)" >/dev/null
if compgen -G "$REPO_ROOT/crds/*.yaml" >/dev/null; then
  K apply --server-side --force-conflicts -f "$REPO_ROOT/crds/" >/dev/null
  K wait --for condition=established --timeout=60s -f "$REPO_ROOT/crds/" >/dev/null
fi
wait_for "kwok nodes Ready" 60 bash -c "[[ \$(kubectl --kubeconfig '$KUBECONFIG_FILE' get nodes -l type=kwok --no-headers 2>/dev/null | grep -cw Ready) -ge 8 ]]"
wait_for "default service account" 60 K get serviceaccount default -n default

(( REAL_NODE )) && "$HACK_DIR/real-node.sh" up

if (( WITH_OPERATOR )); then
  VENV="${MODELPILOT_VENV:-$MODELPILOT_CACHE/venv}"
  [[ -x "$VENV/bin/modelpilot-operator" ]] || die "the operator is not installed in $VENV: run hack/venv.sh first"
  start operator "modelpilot-operator" env KUBECONFIG="$LOCAL_DIR/operator.kubeconfig" \
    MODELPILOT_CONFIG="$HACK_DIR/testbed/operator-config.yaml" \
    "$VENV/bin/modelpilot-operator" --metrics-port=18080 --health-port=18081
  wait_for "operator health" 60 curl -sf http://127.0.0.1:18081/healthz
fi

cat <<MSG
modelpilot local control plane is up.
  export KUBECONFIG=$KUBECONFIG_FILE
  export PATH=$(k8s_bin_dir):\$PATH
  kubectl get nodes -L modelpilot.io/pool,nvidia.com/gpu.product
Stop it with: hack/local-down.sh
MSG
