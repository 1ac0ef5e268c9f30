#!/usr/bin/env bash
# The demo's last step (hack/demo.sh runs it when the real node is up): real pods, real traffic.
#
#   hack/demo-real.sh NAMESPACE GATEWAY_PORT MODELS_DIR PYTHON
#
# Loads the torchserve and storage-init images into the real node, starts Traefik as the Gateway
# `web` in NAMESPACE (hack/gateway.sh), serves a TorchScript model (version 1) with TorchServe on the
# real node's pool, then rolls version 2 out as a 20% canary and calls the model through the
# gateway: real answers, and the share the canary answered. Promotes, and calls it again. MODELS_DIR
# is the directory behind the demo's `models` claim; KUBECONFIG and PATH come from hack/demo.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $# -eq 4 ]] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
NS="$1" PORT="$2" MODELS="$3" PY="$4"
k() { kubectl "$@"; }
export PYTHONWARNINGS=ignore::FutureWarning  # torch.jit's deprecation notices, once per call

"$HACK_DIR/build-images.sh" torchserve storage-init | tail -n1
"$HACK_DIR/real-node.sh" load "$(image_registry)/torchserve:$(image_tag)" "$(image_registry)/storage-init:$(image_tag)" >/dev/null
GATEWAY="$("$HACK_DIR/gateway.sh" start --namespace "$NS" --port "$PORT" | tail -n1)"

# Two versions of a small TorchScript model; each answers the demo's input differently, so every
# answer says which version served it.
"$PY" - "$MODELS/lin" <<'PY'
import sys, torch
for version, seed in (("v1", 1), ("v2", 2)):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3).eval()
    path = f"{sys.argv[1]}/{version}"
    __import__("os").makedirs(path, exist_ok=True)
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 4)), f"{path}/model.pt")
PY
deploy() { # VERSION
  k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: modelpilot.io/v1alpha1
kind: ModelDeployment
metadata: {name: lin}
spec:
  model: {uri: "pvc://models/lin/$1/model.pt", format: torchscript, name: lin}
  runtime: {kind: torchserve}
  replicas: 1
  placement: {nodePool: real-cpu}
  traffic: {router: gatewayAPI, gateway: {parentRefs: [{name: web, sectionName: http}]}}
  rollout:
    strategy: canary
    canary: {steps: [{setWeight: 20}, {pause: {}}]}
YAML
}
# N requests through the gateway: the answers, and which version gave them (compared with the
# versions' own outputs, computed here with torch).
call() { # N
  "$PY" - "$GATEWAY/predictions/lin" "$MODELS/lin" "$1" <<'PY'
import collections, concurrent.futures as cf, json, sys, torch, urllib.request
url, models, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = [[0.5, -1.0, 2.0, 0.25]]
ref = {v: torch.jit.load(f"{models}/{v}/model.pt")(torch.tensor(x))[0].tolist() for v in ("v1", "v2")}
def one(_):
    req = urllib.request.Request(url, json.dumps(x).encode(), {"Content-Type": "application/json"})
    try:
        out = json.load(urllib.request.urlopen(req, timeout=10))["outputs"]["output0"][0]
    except Exception as e:
        return f"failed ({e})", None
    return next((v for v, r in ref.items() if all(abs(a - b) < 1e-4 for a, b in zip(out, r))), "unknown"), out
with cf.ThreadPoolExecutor(4) as pool:
    answers = list(pool.map(one, range(n)))
counts = collections.Counter(v for v, _ in answers)
for v in sorted(counts):
    print(f"  {v}: {counts[v]:4d}/{n} = {counts[v] / n:6.1%}   e.g. {next(o for w, o in answers if w == v)}")
PY
}
wait_phase() { # WHAT JSONPATH VALUE
  for _ in $(seq 1 300); do
    [[ "$(k -n "$NS" get modeldeployment lin -o jsonpath="$2")" == "$3" ]] && return 0
    sleep 1
  done
  die "$1: not reached in 300s ($(k -n "$NS" get modeldeployment lin -o jsonpath='{.status.message}'))"
}

deploy v1
log "ModelDeployment lin: TorchServe on the real node (the storage initializer archives the model; ready once it answers)"
wait_phase "version 1 Ready" '{.status.phase}' Ready
k -n "$NS" get pods -l modelpilot.io/model-deployment=lin -o wide
log "100 requests through the gateway ($GATEWAY/predictions/lin):"
call 100
deploy v2
wait_phase "the canary at 20%" '{.status.weights.canary}' 20
k -n "$NS" get httproute lin -o jsonpath='HTTPRoute backends: {range .spec.rules[-1:].backendRefs[*]}{.name}={.weight} {end}{"\n"}'
log "version 2 as a 20% canary: 1000 requests through the gateway, each answer classified by the version that gave it:"
call 1000
kubectl modelpilot promote --full lin -n "$NS" >/dev/null
wait_phase "version 2 promoted" '{.status.phase}/{.status.weights.canary}' Ready/0
log "promoted: 100 requests through the gateway:"
call 100
