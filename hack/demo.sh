#!/usr/bin/env bash
# The main job, on a new machine: a model from training artifact to a canary-promoted service.
#
#   hack/demo.sh [--help]
#
# 1. builds (or reuses) the local control plane: etcd, kube-apiserver with RBAC, controller-manager,
#    scheduler, kwok fake nodes (a CPU pool and GPU pools); no Docker;
# 2. installs modelpilot with Helm (charts/modelpilot: CRDs, RBAC, the operator Deployment);
# 3. runs the operator here, authenticated as the chart's ServiceAccount with the chart's arguments
#    and configuration (kwok pods never really run, so the in-cluster replica is a stand-in);
# 4. exports a small real ONNX model: the ModelExport's Job container runs for real, in the
#    exporter-onnx image (hack/build-images.sh) under its rendered securityContext, with podman
#    (hack/testbed/kubelet_run.py --image plays the kubelet); its status carries the verified artifact;
# 5. serves it (a ModelDeployment with exportRef), then "retrains": a new model version, a new export,
#    and a canary (20% for 5s, 60% for 5s) to promotion;
# 6. shows `kubectl modelpilot status`;
# 7. where the real node can run (root, its kubelet and Traefik built by `hack/build-testbed.sh node
#    traefik`, which the tests do): TorchServe serves a TorchScript model on the real node, Traefik
#    implements the Gateway, a new version goes to a 20% canary, and the demo calls the model through
#    the gateway, printing real answers and the canary share it measured, then promotes. Elsewhere
#    it says why and stops after step 6. MODELPILOT_DEMO_REAL_NODE=0 skips it.
#
# Logs: .local/logs/demo-operator.log. Clean up: hack/local-down.sh (stops the operator, Traefik,
# the real node and the cluster), or keep the cluster and remove only the demo (printed at the end).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
t0=$SECONDS
NS=demo
SYSTEM_NS=modelpilot-system
RELEASE=modelpilot
METRICS_PORT="${MODELPILOT_DEMO_METRICS_PORT:-18180}"
GATEWAY_PORT="${MODELPILOT_DEMO_GATEWAY_PORT:-18280}"
DEMO_DIR="$LOCAL_DIR/demo"
PVC_ROOT="$DEMO_DIR/pvc"   # stands in for the PersistentVolume: one directory per claim
stage() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*" >&2; }
k() { kubectl "$@"; }
real_node_missing() { # why the real node cannot run here (status 0), or nothing (status 1) when it can try
  if [[ "${MODELPILOT_DEMO_REAL_NODE:-1}" == 0 ]]; then echo "MODELPILOT_DEMO_REAL_NODE=0"
  elif [[ $EUID -ne 0 ]]; then echo "it needs root (containerd, the kubelet, interfaces and iptables rules)"
  elif [[ ! -x "$(node_bin_dir)/kubelet" || ! -x "$(traefik_bin_dir)/traefik" ]]; then
    echo "its kubelet and Traefik are not built (hack/build-testbed.sh node traefik, about 20 minutes; hack/test.sh builds them)"
  else return 1; fi
}

stage "1/10 Python environment (the operator, the exporter and the kubectl plugin)"
VENV="$("$HACK_DIR/venv.sh" export,test | tail -n1)"
PY="$VENV/bin/python"

stage "2/10 control-plane binaries (built once from pinned Go modules, then cached) and the exporter image"
"$HACK_DIR/build-testbed.sh"
"$HACK_DIR/build-images.sh" exporter-onnx | tail -n1
IMAGE_REGISTRY="$(image_registry)" IMAGE_TAG="$(image_tag)"

stage "3/10 local control plane, and the real node where this machine can run one"
mkdir -p "$LOCAL_DIR/logs"
REAL=0
if why="$(real_node_missing)"; then
  log "no real node: $why; the demo stops after step 9 (kwok nodes only)"
  "$HACK_DIR/local-up.sh" >/dev/null
elif "$HACK_DIR/local-up.sh" --real-node >/dev/null 2>"$LOCAL_DIR/logs/demo-real-node.log"; then
  REAL=1
else
  log "the real node did not start (the demo goes on with kwok nodes only):"; tail -n 8 "$LOCAL_DIR/logs/demo-real-node.log" >&2
  "$HACK_DIR/local-up.sh" >/dev/null
fi
export KUBECONFIG="$LOCAL_DIR/kubeconfig" PATH="$(testbed_path):$VENV/bin:$PATH"
k get nodes -L modelpilot.io/pool,nvidia.com/gpu.product

stage "4/10 helm install modelpilot (charts/modelpilot) into namespace $SYSTEM_NS, watching namespace $NS"
mkdir -p "$DEMO_DIR" "$LOCAL_DIR/logs" "$LOCAL_DIR/pids"
if k get namespace "$NS" >/dev/null 2>&1; then
  log "removing the previous demo namespace"
  k delete namespace "$NS" --wait=true --timeout=120s >/dev/null
fi
k delete pv demo-models --ignore-not-found >/dev/null
rm -rf "$PVC_ROOT"
k create namespace "$NS" >/dev/null
# The test bed's node pools, as a user would put theirs into values.yaml. watchNamespaces keeps the
# operator (and its RBAC) to the demo's namespace: least privilege, and nothing else on a shared
# cluster is touched.
"$PY" - "$HACK_DIR/testbed/operator-config.yaml" "$NS" "$IMAGE_REGISTRY" "$IMAGE_TAG" "$REAL" >"$DEMO_DIR/values.yaml" <<'PY'
import sys, yaml
pools = yaml.safe_load(open(sys.argv[1]))["nodePools"]
if sys.argv[5] == "1":  # the real node's pool: pods there must tolerate its taint
    pools["real-cpu"] = {"nodeSelector": {"modelpilot.io/pool": "real-cpu"},
                         "tolerations": [{"key": "modelpilot.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]}
print(yaml.safe_dump({"replicaCount": 2, "logFormat": "text", "watchNamespaces": [sys.argv[2]], "config": {"nodePools": pools},
                      "image": {"registry": sys.argv[3], "repository": "operator", "tag": sys.argv[4]}}))
PY
helm upgrade --install "$RELEASE" "$REPO_ROOT/charts/modelpilot" --namespace "$SYSTEM_NS" --create-namespace \
  -f "$DEMO_DIR/values.yaml" --wait --timeout 180s >/dev/null
helm status "$RELEASE" -n "$SYSTEM_NS" | sed -n '1,6p'
k -n "$SYSTEM_NS" get deployment,serviceaccount,lease -l app.kubernetes.io/instance="$RELEASE" 2>/dev/null || true
echo "RBAC: $(helm get manifest "$RELEASE" -n "$SYSTEM_NS" | "$PY" -c 'import sys,yaml; print(sum(len(d.get("rules") or []) for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] in ("ClusterRole","Role")))') rules, no wildcards; bound in namespace $NS only (plus read-only nodes, CRDs, namespaces)"

stage "5/10 the operator, as the chart's ServiceAccount (log: .local/logs/demo-operator.log)"
SA="$RELEASE"
TOKEN="$(k -n "$SYSTEM_NS" create token "$SA" --duration=8h)"
OP_KUBECONFIG="$LOCAL_DIR/demo-operator.kubeconfig"
k config view --raw --minify -o json | "$PY" -c '
import json, sys
cfg = json.load(sys.stdin)
cluster = cfg["clusters"][0]
print(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
                  "users": [{"name": "sa", "user": {"token": sys.argv[1]}}],
                  "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
                  "current-context": "sa"}))' "$TOKEN" >"$OP_KUBECONFIG"
chmod 600 "$OP_KUBECONFIG"
# Exactly what the chart's pod would run: its arguments and its ConfigMap.
k -n "$SYSTEM_NS" get configmap "$RELEASE-config" -o jsonpath='{.data.config\.yaml}' >"$DEMO_DIR/operator-config.yaml"
mapfile -t OP_ARGS < <(k -n "$SYSTEM_NS" get deployment "$RELEASE" -o json |
  "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]["args"]))')
pidfile="$LOCAL_DIR/pids/operator.pid"
if [[ -f "$pidfile" ]] && tr '\0' ' ' <"/proc/$(cat "$pidfile")/cmdline" 2>/dev/null | grep -q modelpilot-operator; then
  log "stopping the previous local operator (pid $(cat "$pidfile"))"
  kill "$(cat "$pidfile")"  # and wait until it has let go of its ports and its Lease
  for _ in $(seq 1 60); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.5; done
fi
POD_NAME=demo-operator POD_NAMESPACE="$SYSTEM_NS" KUBECONFIG="$OP_KUBECONFIG" \
  setsid nohup "$VENV/bin/modelpilot-operator" "${OP_ARGS[@]}" --config="$DEMO_DIR/operator-config.yaml" \
  --metrics-port="$METRICS_PORT" --health-port=$((METRICS_PORT + 1)) >>"$LOCAL_DIR/logs/demo-operator.log" 2>&1 </dev/null &
echo $! >"$pidfile"
echo "modelpilot-operator ${OP_ARGS[*]}"
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null | grep -q '^modelpilot_leader 1' && break
  kill -0 "$(cat "$pidfile")" 2>/dev/null || die "the operator exited: see $LOCAL_DIR/logs/demo-operator.log"
  sleep 0.5
done
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q '^modelpilot_leader 1' || die "the operator did not become leader in 60s"
echo "leader: $(k -n "$SYSTEM_NS" get lease "$RELEASE-leader" -o jsonpath='{.spec.holderIdentity}')"

stage "6/10 export a small real model (ModelExport -> Job -> the exporter runs for real)"
make_model() { # VERSION SEED: a tiny ONNX classifier (MatMul + Add + Softmax) at models/tiny/vN
  "$PY" - "$PVC_ROOT/models/tiny/v$1/model.onnx" "$2" <<'PY'
import sys, numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
path, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
w = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w")
b = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b")
graph = helper.make_graph(
    [helper.make_node("MatMul", ["features", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["logits"]),
     helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
    "tiny", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
    [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])], initializer=[w, b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
import os; os.makedirs(os.path.dirname(path), exist_ok=True)
onnx.save(model, path)
print(f"model v{path.split('/v')[-1].split('/')[0]}: {path} ({os.path.getsize(path)} bytes)")
PY
}
make_model 1 1
# A statically provisioned volume, as a platform team provides one (no provisioner here).
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: demo-models}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $PVC_ROOT/models}
  claimRef: {namespace: $NS, name: models}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: demo-models
  resources: {requests: {storage: 1Gi}}
YAML
apply_export() { # VERSION
  k -n "$NS" apply -f - <<YAML
apiVersion: modelpilot.io/v1alpha1
kind: ModelExport
metadata: {name: tiny}
spec:
  source: {uri: "pvc://models/tiny/v$1/model.onnx", format: onnx}
  inputs: [{name: features, dtype: float32, shape: [-1, 16]}]
  targets:
    - {name: optimized, format: onnx, optimization: {level: extended}}
    - {name: int8, format: onnx, quantization: {mode: dynamic}}
  validation: {samples: 8}
  output: {uri: "pvc://models/exports/tiny-v$1"}
  nodePool: cpu
YAML
}
run_export() { # GENERATION
  local job="tiny-export-g$1"
  log "the operator creates Job $job; playing the kubelet: its container runs in its image (podman), for real"
  "$PY" "$HACK_DIR/testbed/kubelet_run.py" -n "$NS" "$job" --pvc-root "$PVC_ROOT" --timeout 120 --image
  log "Job $job ran in $(k -n "$NS" get job "$job" -o jsonpath='{.spec.template.spec.containers[0].image}') as uid $(k -n "$NS" get job "$job" -o jsonpath='{.spec.template.spec.securityContext.runAsUser}'), read-only root filesystem"
  for _ in $(seq 1 120); do
    [[ "$(k -n "$NS" get modelexport tiny -o jsonpath='{.status.observedGeneration}/{.status.phase}')" == "$1/Succeeded" ]] && break
    [[ "$(k -n "$NS" get modelexport tiny -o jsonpath='{.status.phase}')" == Failed ]] && die "export failed: $(k -n "$NS" get modelexport tiny -o jsonpath='{.status.message}')"
    sleep 0.5
  done
  { echo "TARGET FORMAT BYTES MAX_ABS_ERROR LATENCY_MS SHA256"
    k -n "$NS" get modelexport tiny -o jsonpath='{range .status.artifacts[*]}{.name} {.format} {.sizeBytes} {.maxAbsError} {.latencyMs} {.sha256}{"\n"}{end}'
  } | awk '{printf "  %-10s %-7s %6s %-14s %-11s %s\n", $1, $2, $3, $4, $5, $6}'
}
apply_export 1
run_export 1

stage "7/10 serve it: a ModelDeployment (Triton, CPU pool, Gateway API) referencing the export"
k -n "$NS" apply -f - <<'YAML'
apiVersion: modelpilot.io/v1alpha1
kind: ModelDeployment
metadata: {name: tiny}
spec:
  model:
    exportRef: {name: tiny, target: optimized}
  runtime: {kind: triton}
  replicas: 2
  placement: {nodePool: cpu}
  traffic:
    router: gatewayAPI
    gateway:
      parentRefs: [{name: inference-gateway}]
      hostnames: [tiny.models.example.com]
  rollout:
    strategy: canary
    canary:
      steps:
        - setWeight: 20
        - pause: {duration: 5s}
        - setWeight: 60
        - pause: {duration: 5s}
    # kwok runs no Triton that could answer the export's recorded inputs, so the served-model
    # parity check before the first weight is off here (docs/rollouts.md#served-model-parity).
    parityCheck: {enabled: false}
YAML
k -n "$NS" wait modeldeployment/tiny --for=jsonpath='{.status.phase}'=Ready --timeout=120s >/dev/null
k -n "$NS" get modeldeployment,deployments,pods -o wide

stage "8/10 a new model version: export it, then a canary to promotion"
make_model 2 2
apply_export 2
run_export 2
log "canary of revision 2 (weights from status; the HTTPRoute carries the same):"
last=""
for _ in $(seq 1 240); do
  now="$(k -n "$NS" get modeldeployment tiny -o jsonpath='{.status.phase} step={.status.currentStep} stable=r{.status.stableRevision}:{.status.weights.stable}% canary=r{.status.canaryRevision}:{.status.weights.canary}%')"
  [[ "$now" != "$last" ]] && { printf '  [%s] %s\n' "$(date +%H:%M:%S)" "$now"; last="$now"; }
  [[ "$(k -n "$NS" get modeldeployment tiny -o jsonpath='{.status.stableRevision}/{.status.phase}')" == "2/Ready" ]] && break
  sleep 0.5
done
[[ "$(k -n "$NS" get modeldeployment tiny -o jsonpath='{.status.stableRevision}')" == 2 ]] || die "revision 2 was not promoted"
k -n "$NS" get httproute tiny -o jsonpath='HTTPRoute backends: {range .spec.rules[-1:].backendRefs[*]}{.name}={.weight} {end}{"\n"}'

stage "9/10 kubectl modelpilot status"
kubectl modelpilot status tiny -n "$NS"
echo
k -n "$NS" get events --field-selector involvedObject.kind=ModelDeployment --sort-by=.lastTimestamp \
  -o custom-columns=TIME:.lastTimestamp,REASON:.reason,MESSAGE:.message | tail -n 12

if (( REAL )); then
  stage "10/10 real traffic: TorchServe on the real node, Traefik as the Gateway, a canary measured by its answers"
  "$HACK_DIR/demo-real.sh" "$NS" "$GATEWAY_PORT" "$PVC_ROOT/models" "$PY"
fi

cat <<MSG

Demo finished in $((SECONDS - t0))s. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$(k8s_bin_dir):$VENV/bin:\$PATH
  kubectl -n $NS get modelexports,modeldeployments,httproutes
  kubectl modelpilot undo tiny -n $NS --to-revision 1   # serve revision 1 again, without editing spec
  curl -s localhost:$METRICS_PORT/metrics | grep ^modelpilot_
Clean up:
  everything (operator + cluster):   hack/local-down.sh
  only the demo:                     kubectl delete namespace $NS && kubectl delete pv demo-models &&
                                     helm uninstall $RELEASE -n $SYSTEM_NS && kill \$(cat $pidfile)$( ((REAL)) && printf ' &&\n                                     hack/gateway.sh stop')
MSG
