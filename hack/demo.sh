#!/usr/bin/env bash
# The main job, on a new machine: build (or reuse) the local control plane, start the operator,
# apply the sample ModelDeployments, and print their status.
#
#   hack/demo.sh [--help]
#
# Everything runs on loopback; nothing needs Docker. Clean up with hack/local-down.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
t0=$SECONDS
log "1/5 Python environment"
VENV="$("$HACK_DIR/venv.sh" export,test | tail -n1)"
log "2/5 control-plane binaries (built once from pinned Go modules, then cached)"
"$HACK_DIR/build-testbed.sh"
log "3/5 local control plane + operator"
MODELPILOT_VENV="$VENV" "$HACK_DIR/local-up.sh" --with-operator
export KUBECONFIG="$LOCAL_DIR/kubeconfig" PATH="$(testbed_path):$VENV/bin:$PATH"
log "4/5 applying the sample ModelDeployments into namespace 'demo'"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for f in "$REPO_ROOT"/docs/samples/modeldeployment-triton-*.yaml "$REPO_ROOT"/docs/samples/modeldeployment-t*serving.yaml; do
  kubectl -n demo apply -f "$f"
done
log "5/5 waiting for them to become Ready"
for name in $(kubectl -n demo get modeldeployments -o name); do
  kubectl -n demo wait "$name" --for=jsonpath='{.status.phase}'=Ready --timeout=120s >/dev/null || die "$name did not become Ready"
done
echo
kubectl get nodes -L modelpilot.io/pool,nvidia.com/gpu.product
echo
kubectl -n demo get modeldeployments,deployments,pods -o wide
echo
kubectl modelpilot status -n demo resnet50-gpu
cat <<MSG

Demo finished in $((SECONDS - t0))s. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$(k8s_bin_dir):$VENV/bin:\$PATH
  kubectl explain modeldeployment.spec.rollout
  kubectl modelpilot render -f docs/samples/modeldeployment-triton-gpu.yaml --config hack/testbed/operator-config.yaml
Clean up with: hack/local-down.sh
MSG
