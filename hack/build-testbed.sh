#!/usr/bin/env bash
# Build the test control plane from pinned Go modules into a cache outside the repo.
#
#   hack/build-testbed.sh [--help] [component...]
#
# Components: etcd kubernetes kwok helm toxiproxy gateway-api istio (default: all).
# Versions come from hack/versions.env. Each component is built in its own throwaway wrapper
# module into a temporary directory and moved into the cache only when every binary of it built
# and printed its version, so a failed or interrupted build never leaves a half-written binary
# behind. A second run finds the cache and rebuilds nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { usage; exit 0; }

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
command -v go >/dev/null || die "go is not on PATH: the test bed is built from Go modules"
mkdir -p "$MODELPILOT_CACHE/bin" "$MODELPILOT_CACHE/crds" "$MODELPILOT_CACHE/logs"
WORK="$(mktemp -d "$MODELPILOT_CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# run_step COMPONENT LOGFILE CMD...: run a build step; on failure name the component, show the
# tail of its log, and stop.
run_step() {
  local component="$1" logfile="$2"; shift 2
  if ! "$@" >>"$logfile" 2>&1; then
    log "FAILED building $component: '$*'"
    tail -n 25 "$logfile" | sed 's/^/    /' >&2
    die "$component did not build (full log: $logfile)"
  fi
}

# finish COMPONENT STAGE_DIR DEST_DIR: check each binary answers --version, then move atomically.
finish() {
  local component="$1" stage="$2" dest="$3" b
  for b in "$stage"/*; do
    [[ -x "$b" ]] || continue
    local v
    case "$(basename "$b")" in
      kubectl) v="$("$b" version --client 2>&1 | head -n1)" ;;
      helm) v="$("$b" version --short 2>&1 | head -n1)" ;;
      kwok) v="$("$b" --version 2>&1 | head -n1)" ;;
      *) v="$("$b" --version 2>&1 | head -n1)" ;;
    esac
    log "  $(basename "$b"): $v"
  done
  rm -rf "$dest.tmp" && mv "$stage" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

wrapper_module() { # DIR NAME: a fresh go.mod for a wrapper module
  mkdir -p "$1" && (cd "$1" && printf 'module modelpilot.local/testbed/%s\n\ngo 1.26\n' "$2" > go.mod)
}

build_etcd() {
  local dest; dest="$(etcd_bin_dir)"
  [[ -x "$dest/etcd" ]] && { log "etcd $ETCD_VERSION: cached ($dest)"; return; }
  local t=$SECONDS mod="$WORK/etcd" stage="$WORK/etcd-out" logf="$MODELPILOT_CACHE/logs/etcd.log"
  : >"$logf"; log "etcd $ETCD_VERSION: building (log: $logf)"
  wrapper_module "$mod" etcd; mkdir -p "$stage"
  (cd "$mod" && run_step etcd "$logf" go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    && run_step etcd "$logf" go build -trimpath -o "$stage/etcd" go.etcd.io/etcd/server/v3)
  finish etcd "$stage" "$dest"; log "etcd: done in $((SECONDS - t))s"
}

build_kubernetes() {
  local dest; dest="$(k8s_bin_dir)"
  if [[ -x "$dest/kube-apiserver" && -x "$dest/kube-controller-manager" && -x "$dest/kube-scheduler" && -x "$dest/kubectl" ]]; then
    log "kubernetes $KUBERNETES_VERSION: cached ($dest)"; return
  fi
  local t=$SECONDS mod="$WORK/kubernetes" stage="$WORK/kubernetes-out" logf="$MODELPILOT_CACHE/logs/kubernetes.log"
  : >"$logf"; log "kubernetes $KUBERNETES_VERSION: resolving modules (log: $logf)"
  wrapper_module "$mod" kubernetes; mkdir -p "$stage"
  local staging_version="v0${KUBERNETES_VERSION#v1}" kmod minor
  kmod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || die "kubernetes: cannot download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
  # k8s.io/kubernetes replaces every staging module with a local path; point them at the
  # published staging modules of the same release instead.
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$kmod" | awk '{print $1}' | while read -r m; do
    echo "replace $m => $m $staging_version" >>"$mod/go.mod"
  done
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && run_step kubernetes "$logf" go get "k8s.io/kubernetes@$KUBERNETES_VERSION")
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    local tc=$SECONDS; log "kubernetes: building $cmd"
    (cd "$mod" && run_step "kubernetes/$cmd" "$logf" go build -trimpath -ldflags "$ld" -o "$stage/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    log "kubernetes: $cmd built in $((SECONDS - tc))s"
  done
  finish kubernetes "$stage" "$dest"; log "kubernetes: done in $((SECONDS - t))s"
}

build_kwok() {
  local dest; dest="$(kwok_bin_dir)"
  [[ -x "$dest/kwok" ]] && { log "kwok $KWOK_VERSION: cached ($dest)"; return; }
  local t=$SECONDS mod="$WORK/kwok" stage="$WORK/kwok-out" logf="$MODELPILOT_CACHE/logs/kwok.log"
  : >"$logf"; log "kwok $KWOK_VERSION: building (log: $logf)"
  wrapper_module "$mod" kwok; mkdir -p "$stage"
  (cd "$mod" && run_step kwok "$logf" go get "sigs.k8s.io/kwok@$KWOK_VERSION" \
    && run_step kwok "$logf" go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" -o "$stage/kwok" sigs.k8s.io/kwok/cmd/kwok)
  finish kwok "$stage" "$dest"; log "kwok: done in $((SECONDS - t))s"
}

build_helm() {
  local dest; dest="$(helm_bin_dir)"
  [[ -x "$dest/helm" ]] && { log "helm $HELM_VERSION: cached ($dest)"; return; }
  local t=$SECONDS mod="$WORK/helm" stage="$WORK/helm-out" logf="$MODELPILOT_CACHE/logs/helm.log"
  : >"$logf"; log "helm $HELM_VERSION: building (log: $logf)"
  wrapper_module "$mod" helm; mkdir -p "$stage"
  (cd "$mod" && run_step helm "$logf" go get "helm.sh/helm/v3@$HELM_VERSION" \
    && run_step helm "$logf" go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" -o "$stage/helm" helm.sh/helm/v3/cmd/helm)
  finish helm "$stage" "$dest"; log "helm: done in $((SECONDS - t))s"
}

build_toxiproxy() {
  local dest; dest="$(toxiproxy_bin_dir)"
  [[ -x "$dest/toxiproxy-server" ]] && { log "toxiproxy $TOXIPROXY_VERSION: cached ($dest)"; return; }
  local t=$SECONDS mod="$WORK/toxiproxy" stage="$WORK/toxiproxy-out" logf="$MODELPILOT_CACHE/logs/toxiproxy.log"
  : >"$logf"; log "toxiproxy $TOXIPROXY_VERSION: building (log: $logf)"
  wrapper_module "$mod" toxiproxy; mkdir -p "$stage"
  (cd "$mod" && run_step toxiproxy "$logf" go get "github.com/Shopify/toxiproxy/v2@$TOXIPROXY_VERSION" \
    && run_step toxiproxy "$logf" go build -trimpath -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" -o "$stage/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server)
  finish toxiproxy "$stage" "$dest"; log "toxiproxy: done in $((SECONDS - t))s"
}

# fetch_crds COMPONENT MODULE@VERSION SUBDIR DEST: copy YAML out of a Go module.
fetch_crds() {
  local component="$1" modver="$2" sub="$3" dest="$4"
  [[ -d "$dest" ]] && { log "$component CRDs: cached ($dest)"; return; }
  local dir
  dir="$(cd "$WORK" && GOFLAGS= go mod download -json "$modver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
    || die "$component: cannot download $modver from the Go module proxy"
  [[ -d "$dir/$sub" ]] || die "$component: $modver has no $sub"
  mkdir -p "$dest.tmp" && cp "$dir/$sub"/*.yaml "$dest.tmp/" && chmod u+w "$dest.tmp"/* && mv "$dest.tmp" "$dest"
  log "$component CRDs: $(ls "$dest" | wc -l) files from $modver"
}

components=("$@")
[[ ${#components[@]} -eq 0 ]] && components=(etcd kubernetes kwok helm toxiproxy gateway-api istio)
for c in "${components[@]}"; do
  case "$c" in
    etcd) build_etcd ;;
    kubernetes) build_kubernetes ;;
    kwok) build_kwok ;;
    helm) build_helm ;;
    toxiproxy) build_toxiproxy ;;
    gateway-api) fetch_crds gateway-api "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" config/crd/standard "$(gateway_crd_dir)" ;;
    istio) fetch_crds istio "istio.io/api@$ISTIO_API_VERSION" kubernetes "$(istio_crd_dir)" ;;
    *) die "unknown component '$c' (known: etcd kubernetes kwok helm toxiproxy gateway-api istio)" ;;
  esac
done
log "test bed ready under $MODELPILOT_CACHE/bin"
