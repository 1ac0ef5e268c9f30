#!/usr/bin/env bash
# Build the test control plane from pinned Go modules into a cache outside the repo.
#
#   hack/build-testbed.sh [--help] [component...]
#
# Components: etcd kubernetes kwok helm kube-score toxiproxy gateway-api istio (default: these),
# and for the real node (hack/local-up.sh --real-node): node (kubelet, kube-proxy, crictl) and traefik,
# and for bench/peers.py: peers (= argo-rollouts flagger kserve, each with its CRDs).
# Versions come from hack/versions.env. Each component is built in its own throwaway wrapper
# module into a temporary directory and moved into the cache only when every binary of it built
# and printed its version, so a failed or interrupted build never leaves a half-written binary
# behind. A second run finds the cache and rebuilds nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
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
    [[ -f "$b" && -x "$b" ]] || continue
    local v
    case "$(basename "$b")" in
      kubectl) v="$("$b" version --client 2>&1 | sed -n 1p)" ;;
      helm) v="$("$b" version --short 2>&1 | sed -n 1p)" ;;
      kwok) v="$("$b" --version 2>&1 | sed -n 1p)" ;;
      kube-score|traefik) v="$("$b" version 2>&1 | sed -n 1p)" ;;
      *) v="$("$b" --version 2>&1 | sed -n 1p || true)" ;;
    esac
    log "  $(basename "$b"): $v"
  done
  rm -rf "$dest.tmp" && mv "$stage" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

wrapper_module() { # DIR NAME: a fresh go.mod for a wrapper module
  mkdir -p "$1" && (cd "$1" && printf 'module modelpilot.local/testbed/%s\n\ngo 1.26\n' "$2" > go.mod)
}

# module_dir COMPONENT MODULE@VERSION: the module's source directory in the Go module cache.
module_dir() {
  (cd "$WORK" && GOFLAGS= go mod download -json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') \
    || die "$1: cannot download $2 from the Go module proxy"
}

# go_install COMPONENT VERSION DEST BIN MODULE PKG [LDFLAGS]: `go get MODULE@VERSION` in a wrapper
# module and build PKG into DEST/BIN, unless DEST/BIN is cached. Hooks, named in the environment:
# PREPARE (called with the wrapper module's directory before `go get`) and EXTRA_LDFLAGS (called with
# it after `go get`; prints more -X flags).
go_install() {
  local component="$1" version="$2" dest="$3" bin="$4" module="$5" pkg="$6" ldflags="${7:-}"
  [[ -x "$dest/$bin" ]] && { log "$component $version: cached ($dest)"; return; }
  local t=$SECONDS mod="$WORK/$component" stage="$WORK/$component-out" logf="$MODELPILOT_CACHE/logs/$component.log"
  : >"$logf"; log "$component $version: building (log: $logf)"
  wrapper_module "$mod" "$component"; mkdir -p "$stage"
  [[ -z "${PREPARE:-}" ]] || "$PREPARE" "$mod"
  (cd "$mod" && run_step "$component" "$logf" go get "$module@$version")
  [[ -z "${EXTRA_LDFLAGS:-}" ]] || ldflags+=" $("$EXTRA_LDFLAGS" "$mod")" || die "$component: cannot compute its ldflags"
  (cd "$mod" && run_step "$component" "$logf" go build -trimpath -ldflags "-s -w $ldflags" -o "$stage/$bin" "$pkg")
  finish "$component" "$stage" "$dest"; log "$component: done in $((SECONDS - t))s"
}

build_etcd() {
  go_install etcd "$ETCD_VERSION" "$(etcd_bin_dir)" etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3
}

# build_k8s COMPONENT VERSION DEST CMD...: build commands of k8s.io/kubernetes at VERSION into DEST.
build_k8s() {
  local component="$1" version="$2" dest="$3"; shift 3
  local cmd missing=0
  for cmd in "$@"; do [[ -x "$dest/$cmd" ]] || missing=1; done
  (( missing )) || { log "$component $version: cached ($dest)"; return; }
  local t=$SECONDS mod="$WORK/$component" stage="$WORK/$component-out" logf="$MODELPILOT_CACHE/logs/$component.log"
  : >"$logf"; log "$component $version: resolving modules (log: $logf)"
  wrapper_module "$mod" "$component"; mkdir -p "$stage"
  local staging_version="v0${version#v1}" kmod minor
  kmod="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || die "$component: cannot download k8s.io/kubernetes@$version from the Go module proxy"
  # k8s.io/kubernetes replaces every staging module with a local path; point them at the
  # published staging modules of the same release instead.
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$kmod" | awk '{print $1}' | while read -r m; do
    echo "replace $m => $m $staging_version" >>"$mod/go.mod"
  done
  minor="${version#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && run_step "$component" "$logf" go get "k8s.io/kubernetes@$version")
  for cmd in "$@"; do
    local tc=$SECONDS; log "$component: building $cmd"
    (cd "$mod" && run_step "$component/$cmd" "$logf" go build -trimpath -ldflags "$ld" -o "$stage/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    log "$component: $cmd built in $((SECONDS - tc))s"
  done
  finish "$component" "$stage" "$dest"; log "$component: done in $((SECONDS - t))s"
}

build_kubernetes() {
  build_k8s kubernetes "$KUBERNETES_VERSION" "$(k8s_bin_dir)" kube-apiserver kube-controller-manager kube-scheduler kubectl
}

# The real node (local-up.sh --real-node): a kubelet and kube-proxy one minor below the apiserver
# (within the skew policy), because 1.35 is the last kubelet that runs on containerd 1.x.
build_node() {
  build_k8s node "$NODE_KUBERNETES_VERSION" "$(node_bin_dir)" kubelet kube-proxy
  go_install crictl "$CRICTL_VERSION" "$(crictl_bin_dir)" crictl sigs.k8s.io/cri-tools sigs.k8s.io/cri-tools/cmd/crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

# Traefik v3: the Gateway API implementation of the real-node test bed (HTTPRoute weights and
# RequestMirror), one Go binary run on the host.
build_traefik() {
  local v=github.com/traefik/traefik/v3
  PREPARE=traefik_replaces go_install traefik "$TRAEFIK_VERSION" "$(traefik_bin_dir)" traefik "$v" "$v/cmd/traefik" \
    "-X $v/pkg/version.Version=$TRAEFIK_VERSION"
}

# Traefik's own replace directives (its forks, and a local submodule) apply only to its main module:
# carry them over into the wrapper module DIR, the local one pointed into the module cache.
traefik_replaces() {
  local tdir; tdir="$(module_dir traefik "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")"
  python3 - "$tdir" >>"$1/go.mod" <<'PY'
import re, sys
tdir = sys.argv[1]
text = open(f"{tdir}/go.mod").read()
lines = re.findall(r"^replace\s+(\S+ => \S+(?: \S+)?)$", text, re.M)
for block in re.findall(r"^replace \((.*?)^\)", text, re.M | re.S):
    lines += [l.strip() for l in block.splitlines() if "=>" in l and not l.strip().startswith("//")]
for line in lines:
    old, new = (x.strip() for x in line.split("=>"))
    if new.startswith("./"):
        new = f"{tdir}/{new[2:]}"
    print(f"replace {old} => {new}")
PY
}

build_kwok() {
  go_install kwok "$KWOK_VERSION" "$(kwok_bin_dir)" kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
}

build_helm() {
  local v=helm.sh/helm/v3
  EXTRA_LDFLAGS=helm_kube_version go_install helm "$HELM_VERSION" "$(helm_bin_dir)" helm "$v" "$v/cmd/helm" \
    "-X $v/internal/version.version=$HELM_VERSION -X $v/internal/version.gitTreeState=clean"
}

# As helm's Makefile does: the Kubernetes version that `helm template` and `helm lint` assume
# (Capabilities.KubeVersion) comes from the client-go it is built with (in the wrapper module DIR).
# Without these ldflags it is 1.20, and every chart with a kubeVersion >= 1.21 fails unless
# --kube-version is given.
helm_kube_version() {
  local kminor v=helm.sh/helm/v3
  kminor="$(cd "$1" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
  [[ "$kminor" =~ ^[0-9]+$ ]] || { log "helm: cannot tell the client-go minor version of $HELM_VERSION"; return 1; }
  echo "-X $v/pkg/chartutil.k8sVersionMajor=1 -X $v/pkg/chartutil.k8sVersionMinor=$kminor" \
       "-X $v/pkg/lint/rules.k8sVersionMajor=1 -X $v/pkg/lint/rules.k8sVersionMinor=$kminor"
}

# kube-score lints the rendered samples and the chart (tests/chart/test_kube_score.py).
build_kube_score() {
  go_install kube-score "$KUBE_SCORE_VERSION" "$(kube_score_bin_dir)" kube-score github.com/zegl/kube-score \
    github.com/zegl/kube-score/cmd/kube-score "-X main.version=$KUBE_SCORE_VERSION"
}

build_toxiproxy() {
  go_install toxiproxy "$TOXIPROXY_VERSION" "$(toxiproxy_bin_dir)" toxiproxy-server github.com/Shopify/toxiproxy/v2 \
    github.com/Shopify/toxiproxy/v2/cmd/server "-X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION"
}

# build_from_module COMPONENT MODULE VERSION DEST PKG:BIN... : build a module's own commands with
# its own go.mod, go.sum and replace directives (a copy of its source out of the module cache; the
# peers pin forks and staging versions that a wrapper module would drop), and copy its CRDs
# (CRD_FILES: globs relative to the module root) into DEST/crds. LDFLAGS: the version -X flags.
build_from_module() {
  local component="$1" module="$2" version="$3" dest="$4"; shift 4
  [[ -d "$dest/crds" ]] && { log "$component $version: cached ($dest)"; return; }
  local t=$SECONDS src="$WORK/$component-src" stage="$WORK/$component-out" logf="$MODELPILOT_CACHE/logs/$component.log" dir
  : >"$logf"; log "$component $version: building (log: $logf)"
  dir="$(module_dir "$component" "$module@$version")"
  cp -r "$dir" "$src" && chmod -R u+w "$src" && mkdir -p "$stage/crds"
  local pair sub
  for pair in "$@"; do
    (cd "$src" && run_step "$component" "$logf" go build -trimpath -ldflags "-s -w ${LDFLAGS:-}" -o "$stage/${pair#*:}" "./${pair%%:*}")
  done
  # shellcheck disable=SC2086 # CRD_FILES are globs
  for sub in $CRD_FILES; do
    compgen -G "$src/$sub" >/dev/null || die "$component: $module@$version has no $sub"
    cp $src/$sub "$stage/crds/"
  done
  log "$component: $(ls "$stage/crds" | wc -l) CRD files"
  finish "$component" "$stage" "$dest"; log "$component: done in $((SECONDS - t))s"
}

build_argo_rollouts() {
  CRD_FILES=manifests/crds/*-crd.yaml LDFLAGS="-X github.com/argoproj/argo-rollouts/utils/version.version=${ARGO_ROLLOUTS_VERSION#v}" build_from_module argo-rollouts github.com/argoproj/argo-rollouts \
    "$ARGO_ROLLOUTS_VERSION" "$(argo_rollouts_bin_dir)" cmd/rollouts-controller:rollouts-controller
}

build_flagger() {
  CRD_FILES=artifacts/flagger/crd.yaml build_from_module flagger github.com/fluxcd/flagger \
    "$FLAGGER_VERSION" "$(flagger_bin_dir)" cmd/flagger:flagger
}

# KServe also needs, from the same module: its config map (bench/peers.py sets RawDeployment), its
# webhook configurations (pointed at the manager on loopback, with the test bed's CA) and the Triton
# runtime.
build_kserve() {
  CRD_FILES=config/crd/full/serving.kserve.io_*.yaml build_from_module kserve github.com/kserve/kserve \
    "$KSERVE_VERSION" "$(kserve_bin_dir)" cmd/manager:kserve-manager
  local dest dir f; dest="$(kserve_bin_dir)/config"
  [[ -d "$dest" ]] && return
  dir="$(module_dir kserve "github.com/kserve/kserve@$KSERVE_VERSION")"
  mkdir -p "$dest.tmp"
  for f in configmap/inferenceservice.yaml webhook/manifests.yaml runtimes/kserve-tritonserver.yaml; do
    cp "$dir/config/$f" "$dest.tmp/" || die "kserve: $KSERVE_VERSION has no config/$f"
  done
  chmod u+w "$dest.tmp"/* && mv "$dest.tmp" "$dest"
}

# fetch_crds COMPONENT MODULE@VERSION SUBDIR DEST: copy YAML out of a Go module.
fetch_crds() {
  local component="$1" modver="$2" sub="$3" dest="$4"
  [[ -d "$dest" ]] && { log "$component CRDs: cached ($dest)"; return; }
  local dir
  dir="$(module_dir "$component" "$modver")"
  [[ -d "$dir/$sub" ]] || die "$component: $modver has no $sub"
  mkdir -p "$dest.tmp" && cp "$dir/$sub"/*.yaml "$dest.tmp/" && chmod u+w "$dest.tmp"/* && mv "$dest.tmp" "$dest"
  log "$component CRDs: $(ls "$dest" | wc -l) files from $modver"
}

components=("$@")
[[ ${#components[@]} -eq 0 ]] && components=(etcd kubernetes kwok helm kube-score toxiproxy gateway-api istio)
for c in "${components[@]}"; do
  case "$c" in
    etcd) build_etcd ;;
    kubernetes) build_kubernetes ;;
    kwok) build_kwok ;;
    helm) build_helm ;;
    node) build_node ;;
    traefik) build_traefik ;;
    argo-rollouts) build_argo_rollouts ;;
    flagger) build_flagger ;;
    kserve) build_kserve ;;
    peers) build_argo_rollouts; build_flagger; build_kserve ;;
    kube-score) build_kube_score ;;
    toxiproxy) build_toxiproxy ;;
    gateway-api) fetch_crds gateway-api "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" config/crd/standard "$(gateway_crd_dir)" ;;
    istio) fetch_crds istio "istio.io/api@$ISTIO_API_VERSION" kubernetes "$(istio_crd_dir)" ;;
    *) die "unknown component '$c' (known: etcd kubernetes kwok helm kube-score toxiproxy gateway-api istio node traefik)" ;;
  esac
done
log "test bed ready under $MODELPILOT_CACHE/bin"
