# Shared paths and helpers for hack/ scripts. Sourced, never run.
# shellcheck shell=bash
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=hack/versions.env
source "$HACK_DIR/versions.env"
MODELPILOT_CACHE="${MODELPILOT_CACHE:-$HOME/.cache/modelpilot}"
LOCAL_DIR="${MODELPILOT_LOCAL_DIR:-$REPO_ROOT/.local}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Where a component's binaries live once built: keyed by version.
bin_dir() { echo "$MODELPILOT_CACHE/bin/$1-$2"; }
k8s_bin_dir() { bin_dir kubernetes "$KUBERNETES_VERSION"; }
etcd_bin_dir() { bin_dir etcd "$ETCD_VERSION"; }
kwok_bin_dir() { bin_dir kwok "$KWOK_VERSION"; }
helm_bin_dir() { bin_dir helm "$HELM_VERSION"; }
toxiproxy_bin_dir() { bin_dir toxiproxy "$TOXIPROXY_VERSION"; }
gateway_crd_dir() { echo "$MODELPILOT_CACHE/crds/gateway-api-$GATEWAY_API_VERSION"; }
istio_crd_dir() { echo "$MODELPILOT_CACHE/crds/istio-api-$ISTIO_API_VERSION"; }

# PATH with every test-bed binary first.
testbed_path() {
  echo "$(k8s_bin_dir):$(etcd_bin_dir):$(kwok_bin_dir):$(helm_bin_dir):$PATH"
}
