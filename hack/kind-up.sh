#!/usr/bin/env bash
# For users with Docker: a kind cluster whose nodes carry the node-pool labels modelpilot uses,
# plus the Gateway API CRDs and the modelpilot CRDs.
#
#   hack/kind-up.sh [--name NAME] [--delete] [--no-images] [--help]
#
# Nodes: one control plane; two workers in pool "cpu"; one worker in pool "gpu-l4", labelled and
# tainted like a GPU node (nvidia.com/gpu.product=NVIDIA-L4, nvidia.com/gpu=present:NoSchedule).
# kind nodes have no GPUs: a ModelDeployment asking for nvidia.com/gpu stays Schedulable=False
# there, which is the honest answer. Needs docker and kind (KIND=/path/to/kind, else `kind` on
# PATH, else built with `go install sigs.k8s.io/kind@$KIND_VERSION`). Not exercised in CI here (no
# Docker): hack/local-up.sh is the tested path. Unless --no-images, it builds modelpilot's images
# (hack/build-images.sh, with docker) and loads them into the kind nodes, then prints the
# `helm install` line that uses them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KIND_VERSION="${KIND_VERSION:-v0.29.0}"
NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"
NAME=modelpilot
DELETE=0 IMAGES=1
while (( $# )); do
  case "$1" in
    --name) NAME="$2"; shift ;;
    --delete) DELETE=1 ;;
    --no-images) IMAGES=0 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done

command -v docker >/dev/null || die "docker is not installed: use hack/local-up.sh (no Docker needed)"
docker info >/dev/null 2>&1 || die "docker is installed but the daemon does not answer"
KIND="${KIND:-$(command -v kind || true)}"
if [[ -z "$KIND" ]]; then
  KIND="$(bin_dir kind "$KIND_VERSION")/kind"
  if [[ ! -x "$KIND" ]]; then
    command -v go >/dev/null || die "neither kind nor go found: install kind $KIND_VERSION"
    log "building kind $KIND_VERSION into $(dirname "$KIND")"
    GOBIN="$(dirname "$KIND")" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
fi

if (( DELETE )); then
  "$KIND" delete cluster --name "$NAME"
  exit 0
fi

if "$KIND" get clusters 2>/dev/null | grep -qx "$NAME"; then
  log "kind cluster '$NAME' exists; reusing it"
else
  log "creating kind cluster '$NAME' ($NODE_IMAGE)"
  "$KIND" create cluster --name "$NAME" --image "$NODE_IMAGE" --wait 120s --config - <<'YAML'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
    labels: {modelpilot.io/pool: cpu}
  - role: worker
    labels: {modelpilot.io/pool: cpu}
  - role: worker
    labels: {modelpilot.io/pool: gpu-l4, nvidia.com/gpu.product: NVIDIA-L4}
YAML
fi
CTX="kind-$NAME"
K() { kubectl --context "$CTX" "$@"; }
# kind cannot set taints in its config; the GPU worker gets the NVIDIA device plugin's usual taint.
for node in $(K get nodes -l modelpilot.io/pool=gpu-l4 -o name); do
  K taint --overwrite "$node" nvidia.com/gpu=present:NoSchedule >/dev/null
done
GW="$(gateway_crd_dir)"
if [[ -d "$GW" ]]; then
  K apply --server-side -f "$GW" >/dev/null
else
  K apply --server-side -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml" >/dev/null
fi
K apply --server-side -f "$REPO_ROOT/crds/" >/dev/null
K wait --for condition=established --timeout=60s -f "$REPO_ROOT/crds/" >/dev/null
K get nodes -L modelpilot.io/pool,nvidia.com/gpu.product
TAG="$(image_tag)" REG="$(image_registry)"
if (( IMAGES )); then
  ENGINE=docker "$HACK_DIR/build-images.sh" --base "${KIND_BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}" operator storage-init exporter-onnx exporter-pytorch exporter-tensorflow torchserve
  for img in operator storage-init exporter-onnx exporter-pytorch exporter-tensorflow torchserve; do
    "$KIND" load docker-image "$REG/$img:$TAG" --name "$NAME"
  done
fi
cat <<MSG

kind cluster '$NAME' is up (context $CTX). Install modelpilot with pools that match its nodes:
  helm install modelpilot charts/modelpilot -n modelpilot-system --create-namespace --kube-context $CTX \\
    --set image.registry=$REG --set image.tag=$TAG --set image.pullPolicy=IfNotPresent \\
    --set-json 'config.nodePools={"cpu":{"nodeSelector":{"modelpilot.io/pool":"cpu"}},"gpu-l4":{"nodeSelector":{"modelpilot.io/pool":"gpu-l4"},"tolerations":[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]}}'
Delete it with: hack/kind-up.sh --delete
MSG
