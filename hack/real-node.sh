#!/usr/bin/env bash
# One real node beside the kwok nodes: containerd 1.6 (Debian), a kubelet and kube-proxy (1.35),
# runc, the CNI bridge, and modelpilot's images loaded into containerd.
#
#   hack/real-node.sh up [--help]      (hack/local-up.sh --real-node calls it; root needed)
#   hack/real-node.sh down             (hack/local-down.sh calls it)
#   hack/real-node.sh load IMAGE...    import images from podman into the node's containerd
#
# The node is "mp-real-0", labelled modelpilot.io/pool=real-cpu and type=real, and tainted
# modelpilot.io/real-node=true:NoSchedule (only pods that ask for it land there). Its address is
# 10.211.0.1 on an interface of its own (mpnode0, a bridge without ports) that this script creates; pods get 10.212.0.0/24 from
# the CNI bridge mpcni0. The kubelet authenticates as system:node:mp-real-0 (Node authorizer),
# kube-proxy as system:kube-proxy. Pods reach the apiserver through the `kubernetes` Service:
# its EndpointSlice points at 10.211.0.1:<apiserver port>, where socat forwards to the apiserver
# on 127.0.0.1. No cluster DNS: pods use IPs and the Service environment variables.
# State: .local/node (sockets, kubelet root, logs); images: $MODELPILOT_CACHE/containerd, kept
# across clones so that an unchanged image is not imported again. `down` removes the pods (and
# their CNI networks), stops every process by recorded pid, unmounts, and deletes the interfaces
# and kube-proxy's iptables rules.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
[[ "${1:-}" == "--help" || "${1:-}" == "-h" || $# -eq 0 ]] && { usage; exit 0; }

NODE_NAME=mp-real-0 NODE_IP=10.211.0.1 NODE_DEV=mpnode0 POD_CIDR=10.212.0.0/24 BRIDGE=mpcni0
APISERVER_PORT="${MODELPILOT_APISERVER_PORT:-16443}"
KUBELET_PORT="${MODELPILOT_KUBELET_PORT:-10350}"
NODE="$LOCAL_DIR/node" PKI="$LOCAL_DIR/pki" LOGS="$LOCAL_DIR/logs" PIDS="$LOCAL_DIR/pids"
CTRD_ROOT="$MODELPILOT_CACHE/containerd" SOCK="$LOCAL_DIR/node/containerd.sock"
PAUSE_IMAGE=localhost/modelpilot/pause:1
export PATH="$(node_bin_dir):$(crictl_bin_dir):$(k8s_bin_dir):$PATH"
K() { kubectl --kubeconfig "$LOCAL_DIR/kubeconfig" "$@"; }
CTR() { ctr --address "$SOCK" -n k8s.io "$@"; }

# fail PART WHY LOG: the part that did not start, why, and the log lines that show it.
fail() {
  log "the real node cannot start: $1 $2"
  [[ -f "$3" ]] && { log "last lines of $3:"; tail -n 15 "$3" | sed 's/^/    /' >&2; }
  exit 1
}
# put FILE: write stdin to FILE only if it differs (kube-proxy exits when its config file changes,
# and a running node must survive a second `up`).
put() { local tmp; tmp="$(mktemp)"; cat >"$tmp"; if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi; }
need() { command -v "$1" >/dev/null || fail "$1" "is not installed ($2)" /dev/null; }
started() { local f="$PIDS/$1.pid"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; }
start() { # NAME CMD...
  local name="$1"; shift
  started "$name" && { log "$name: already running"; return; }
  log "$name: starting (log: $LOGS/$name.log)"
  setsid nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}
wait_until() { # PART SECONDS LOG CMD...
  local part="$1" secs="$2" logf="$3"; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    started "$part" || [[ "$part" == - ]] || fail "$part" "exited" "$logf"
    (( SECONDS < deadline )) || fail "$part" "did not become ready in ${secs}s" "$logf"
    sleep 1
  done
}

gen_cert() { # NAME CN ORG [SAN]
  local name="$1" subj="/CN=$2"
  [[ -f "$PKI/$name.crt" ]] && return
  [[ -n "$3" ]] && subj="/O=$3/CN=$2"
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  local ext=()
  [[ -n "${4:-}" ]] && { printf 'subjectAltName=%s\n' "$4" >"$PKI/$name.ext"; ext=(-extfile "$PKI/$name.ext"); }
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    "${ext[@]}" -out "$PKI/$name.crt" 2>/dev/null
}
node_kubeconfig() { # NAME CERT -> $NODE/NAME.kubeconfig
  put "$NODE/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$2.crt", client-key: "$PKI/$2.key"}
contexts:
- name: local
  context: {cluster: local, user: $1}
current-context: local
KC
}

network_up() {
  # A bridge without ports holds the node's address (this kernel has no dummy interfaces).
  ip link show "$NODE_DEV" >/dev/null 2>&1 || ip link add "$NODE_DEV" type bridge \
    || fail network "cannot create the interface $NODE_DEV (root needed)" /dev/null
  [[ "$(ip -4 -o addr show dev "$NODE_DEV")" == *" $NODE_IP/"* ]] || ip addr add "$NODE_IP/32" dev "$NODE_DEV"
  ip link set "$NODE_DEV" up
  sysctl -qw net.ipv4.ip_forward=1 || true
  mkdir -p "$NODE/cni/net.d"
  put "$NODE/cni/net.d/10-modelpilot.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "modelpilot", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$NODE/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
}

containerd_up() {
  mkdir -p "$CTRD_ROOT" "$NODE/containerd-state"
  put "$NODE/containerd.toml" <<TOML
version = 2
root = "$CTRD_ROOT"
state = "$NODE/containerd-state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$SOCK.debug"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This host refuses lower oom_score_adj values: without it runc fails with "can't get final
  # child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni/net.d"
TOML
  start containerd containerd --config "$NODE/containerd.toml"
  wait_until containerd 60 "$LOGS/containerd.log" CTR version
}

# load IMAGE...: podman -> OCI archive -> containerd, skipped when containerd holds this build of
# the image already (the image ID and the ref are recorded next to containerd's store). A new tag of
# an image containerd holds under another tag (every commit tags the images anew; most builds change
# nothing) is only tagged there: saving and importing the 6 GB torchserve image takes minutes.
load_images() {
  local ref id mark tmp same
  ENGINE="$(container_engine)" || fail images "podman is not installed" /dev/null
  mkdir -p "$CTRD_ROOT-loaded"
  # One load at a time: .ci/run starts one in the background while the first tests run, and
  # tests/realnode's own load then waits here and finds every image loaded. The lock's descriptor
  # is closed on return: daemons started later (kubelet, kube-proxy) must not inherit and hold it.
  exec 9>"$CTRD_ROOT-loaded.lock"
  flock 9
  for ref in "$@"; do
    id="$(engine image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" || fail images "$ref is not built (hack/build-images.sh)" /dev/null
    mark="$CTRD_ROOT-loaded/$(echo "$ref" | tr '/:@' '___')"
    if [[ "$(cut -d' ' -f1 "$mark" 2>/dev/null)" == "$id" ]] && CTR images ls -q "name==$ref" 2>/dev/null | grep -qx "$ref"; then
      echo "$id $ref" >"$mark"; log "node images: $ref is loaded"; continue
    fi
    same="$(cat "$CTRD_ROOT-loaded"/* 2>/dev/null | awk -v id="$id" '$1 == id && NF == 2 {print $2}' | while read -r r; do
      CTR images ls -q "name==$r" 2>/dev/null | grep -qx "$r" && { echo "$r"; break; }; done || true)"
    if [[ -n "$same" ]] && CTR images tag --force "$same" "$ref" >/dev/null; then
      log "node images: $ref is $same (same image ID): tagged"
    else
      tmp="$(mktemp -d "$MODELPILOT_CACHE/node-image.XXXXXX")"
      log "node images: loading $ref"
      engine save -q --format oci-archive -o "$tmp/image.tar" "$ref" >/dev/null
      if ! CTR images import "$tmp/image.tar" >"$tmp/import.log" 2>&1; then
        cat "$tmp/import.log" >>"$LOGS/containerd.log"; rm -rf "$tmp"
        fail images "ctr could not import $ref" "$LOGS/containerd.log"
      fi
      rm -rf "$tmp"
    fi
    echo "$id $ref" >"$mark"
  done
  exec 9>&-
}

pause_image() {
  ENGINE="$(container_engine)" || fail images "podman is not installed" /dev/null
  if ! engine image exists "$PAUSE_IMAGE" 2>/dev/null; then
    local dir; dir="$(mktemp -d)"
    (cd "$HACK_DIR/testbed/pause" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$dir/pause" .) \
      || fail pause "the pause binary did not build" /dev/null
    cp "$HACK_DIR/testbed/pause/Containerfile" "$dir/"
    engine build -q -t "$PAUSE_IMAGE" "$dir" >/dev/null || fail pause "the pause image did not build" /dev/null
    rm -rf "$dir"
  fi
  load_images "$PAUSE_IMAGE"
}

kubelet_up() {
  gen_cert "kubelet-$NODE_NAME" "system:node:$NODE_NAME" system:nodes
  gen_cert kubelet-serving "$NODE_NAME" "" "IP:$NODE_IP,DNS:$NODE_NAME"
  node_kubeconfig kubelet "kubelet-$NODE_NAME"
  mkdir -p "$NODE/kubelet"
  put "$NODE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host's cgroups are v1 (hybrid): 1.35 needs failCgroupV1 false, and no QoS cgroup tree.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT + 8))
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
# A shared machine: never evict or garbage-collect images because the host's disk fills up.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
resolvConf: /etc/resolv.conf
YAML
  start kubelet kubelet --config="$NODE/kubelet.yaml" --kubeconfig="$NODE/kubelet.kubeconfig" \
    --root-dir="$NODE/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --node-labels="modelpilot.io/pool=real-cpu,type=real" --register-with-taints=modelpilot.io/real-node=true:NoSchedule --v=1
  wait_until kubelet 120 "$LOGS/kubelet.log" bash -c "kubectl --kubeconfig '$LOCAL_DIR/kubeconfig' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
}

proxy_up() {
  gen_cert kube-proxy system:kube-proxy ""
  node_kubeconfig kube-proxy kube-proxy
  put "$NODE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
metricsBindAddress: 127.0.0.1:$((KUBELET_PORT + 6))
healthzBindAddress: 127.0.0.1:$((KUBELET_PORT + 7))
conntrack: {maxPerCore: 0, min: 0}
YAML
  start kube-proxy kube-proxy --config="$NODE/kube-proxy.yaml"
  wait_until kube-proxy 60 "$LOGS/kube-proxy.log" curl -sf "http://127.0.0.1:$((KUBELET_PORT + 7))/healthz"
}

# Pods reach the apiserver at the `kubernetes` Service (10.96.0.1:443): its endpoints are the
# node address, where socat forwards to the apiserver on loopback.
apiserver_for_pods() {
  start apiserver-proxy socat "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_IP,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT"
  K apply --server-side --force-conflicts -f - >/dev/null <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-real-node
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: modelpilot-testbed}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
YAML
}

up() {
  [[ $EUID -eq 0 ]] || fail node "needs root (containerd, the kubelet and CNI change the host's network and mounts)" /dev/null
  need containerd "apt-get install containerd"; need runc "apt-get install runc"; need socat "apt-get install socat"
  need iptables "apt-get install iptables"
  [[ -x /usr/lib/cni/bridge ]] || fail cni "no CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)" /dev/null
  "$HACK_DIR/build-testbed.sh" node >/dev/null || fail kubelet "did not build" "$MODELPILOT_CACHE/logs/node.log"
  mkdir -p "$NODE" "$LOGS" "$PIDS"
  network_up
  containerd_up
  pause_image
  kubelet_up
  proxy_up
  apiserver_for_pods
  log "real node $NODE_NAME is Ready ($NODE_IP; pods $POD_CIDR)"
}

down() {
  [[ -d "$NODE" ]] || return 0
  if [[ -S "$SOCK" ]] && command -v crictl >/dev/null; then
    # Stop the kubelet first, so that it does not restart what crictl removes.
    stop kubelet
    crictl --runtime-endpoint "unix://$SOCK" rmp -af >/dev/null 2>&1 || true
  fi
  local p
  for p in kubelet kube-proxy apiserver-proxy; do stop "$p"; done
  stop containerd
  # Shims (and their containers) outlive containerd: end the ones of this node's socket.
  pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io -address $SOCK" 2>/dev/null || true
  command -v kube-proxy >/dev/null && kube-proxy --cleanup >/dev/null 2>&1 || true
  grep -oE " $NODE[^ ]*|$CTRD_ROOT/[^ ]*(/rootfs|/shm)" /proc/mounts | tr -d ' ' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$NODE_DEV" 2>/dev/null || true
  K delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true
  K -n default delete endpointslice kubernetes-real-node >/dev/null 2>&1 || true
  rm -rf "$NODE"
  log "real node removed"
}
stop() { # NAME: stop the recorded process (TERM, then KILL)
  local f="$PIDS/$1.pid" pid i
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

case "$1" in
  up) up ;;
  down) down ;;
  load) shift; load_images "$@" ;;
  *) usage; exit 1 ;;
esac
