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
# stop_pid_file WHAT FILE: TERM the process whose pid FILE holds, KILL it after 5 s, remove FILE.
stop_pid_file() {
  local pid; pid="$(cat "$2")"
  log "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$2"
}

# Where a component's binaries live once built: keyed by version.
bin_dir() { echo "$MODELPILOT_CACHE/bin/$1-$2"; }
k8s_bin_dir() { bin_dir kubernetes "$KUBERNETES_VERSION"; }
etcd_bin_dir() { bin_dir etcd "$ETCD_VERSION"; }
kwok_bin_dir() { bin_dir kwok "$KWOK_VERSION"; }
# "-release": built with the release ldflags (the Kubernetes version it assumes), see build-testbed.sh.
helm_bin_dir() { bin_dir helm "$HELM_VERSION-release"; }
node_bin_dir() { bin_dir node "$NODE_KUBERNETES_VERSION"; }
crictl_bin_dir() { bin_dir crictl "$CRICTL_VERSION"; }
traefik_bin_dir() { bin_dir traefik "$TRAEFIK_VERSION"; }
kube_score_bin_dir() { bin_dir kube-score "$KUBE_SCORE_VERSION"; }
toxiproxy_bin_dir() { bin_dir toxiproxy "$TOXIPROXY_VERSION"; }
# The peers of bench/peers.py: their binaries and the CRDs of the same module.
argo_rollouts_bin_dir() { bin_dir argo-rollouts "$ARGO_ROLLOUTS_VERSION"; }
flagger_bin_dir() { bin_dir flagger "$FLAGGER_VERSION"; }
kserve_bin_dir() { bin_dir kserve "$KSERVE_VERSION"; }
gateway_crd_dir() { echo "$MODELPILOT_CACHE/crds/gateway-api-$GATEWAY_API_VERSION"; }
istio_crd_dir() { echo "$MODELPILOT_CACHE/crds/istio-api-$ISTIO_API_VERSION"; }

# PATH with every test-bed binary first.
testbed_path() {
  echo "$(k8s_bin_dir):$(etcd_bin_dir):$(kwok_bin_dir):$(helm_bin_dir):$PATH"
}

# ---- container images (hack/build-images.sh, the image tests, the real node) ----
# podman, or docker where podman is absent. podman runs with runc and cgroupfs: crun fails on hosts
# whose cgroups are v1 in hybrid mode (MODELPILOT_PODMAN_FLAGS overrides).
container_engine() {
  if command -v podman >/dev/null; then echo podman; elif command -v docker >/dev/null; then echo docker; else return 1; fi
}
engine_cmd() { # the engine's command words (tests/images uses them too)
  if [[ "${ENGINE:-podman}" == podman ]]; then
    echo "podman ${MODELPILOT_PODMAN_FLAGS:---runtime $(command -v runc || echo runc) --cgroup-manager=cgroupfs}"
  else
    echo docker
  fi
}
# shellcheck disable=SC2046
engine() { $(engine_cmd) "$@"; }
# `run` flags that keep ulimits within the host's: without CAP_SYS_RESOURCE higher ones fail.
engine_run_flags() { [[ "${ENGINE:-podman}" == podman ]] && echo "--ulimit nofile=1024:20000 --ulimit nproc=4096:4096" || true; }
image_registry() { echo "${MODELPILOT_IMAGE_REGISTRY:-ghcr.io/modelpilot}"; }
# The tag of locally built images: $MODELPILOT_IMAGE_TAG, else `git describe` (a v-tag without its v).
image_tag() {
  [[ -n "${MODELPILOT_IMAGE_TAG:-}" ]] && { echo "$MODELPILOT_IMAGE_TAG"; return; }
  local d; d="$(git -C "$REPO_ROOT" describe --tags --always --dirty --match 'v*' 2>/dev/null || echo dev)"
  echo "${d#v}"
}
