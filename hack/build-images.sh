#!/usr/bin/env bash
# Build modelpilot's container images from images/Containerfile with podman (or docker).
#
#   hack/build-images.sh [--help] [--archive DIR] [--base IMAGE] [IMAGE...]
#
# Images (default: all): operator storage-init exporter-onnx exporter-pytorch exporter-tensorflow
# torchserve. Each is tagged $MODELPILOT_IMAGE_REGISTRY/<image>:<tag> (registry default
# ghcr.io/modelpilot; tag default from `git describe`, or $MODELPILOT_IMAGE_TAG).
# --base IMAGE   the base image (a Debian bookworm with python3 and python3-venv). Default: a
#                Debian base built here with mmdebstrap from Debian's packages (no registry needed),
#                cached in $MODELPILOT_CACHE/images/ and imported once.
# --archive DIR  also write DIR/<image>.oci.tar (podman save --format oci-archive, for
#                `ctr images import` or `kind load image-archive`) and DIR/<image>.cdx.json (SBOM).
# Every image carries its CycloneDX SBOM at /opt/modelpilot/sbom.cdx.json. Layers are cached by
# the container engine, so a second run with nothing changed rebuilds nothing. The report (size,
# build time, package count per image) is printed and written to $MODELPILOT_CACHE/images/report.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }

ALL_IMAGES=(operator storage-init exporter-onnx exporter-pytorch exporter-tensorflow torchserve)
ARCHIVE_DIR="" BASE_IMAGE="" IMAGES=()
while (( $# )); do
  case "$1" in
    --archive) ARCHIVE_DIR="${2:?--archive needs a directory}"; shift 2 ;;
    --base) BASE_IMAGE="${2:?--base needs an image}"; shift 2 ;;
    -*) die "unknown option '$1' (try --help)" ;;
    *) [[ " ${ALL_IMAGES[*]} " == *" $1 "* ]] || die "unknown image '$1': choose from ${ALL_IMAGES[*]}"
       IMAGES+=("$1"); shift ;;
  esac
done
(( ${#IMAGES[@]} )) || IMAGES=("${ALL_IMAGES[@]}")

ENGINE="$(container_engine)" || die "neither podman nor docker is installed: on Debian, apt-get install podman buildah"
CACHE="$MODELPILOT_CACHE/images"; LOGS="$MODELPILOT_CACHE/logs"
mkdir -p "$CACHE" "$LOGS"
REGISTRY="$(image_registry)"; TAG="$(image_tag)"
REVISION="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
CA_BUNDLE="${MODELPILOT_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

# torch's requirement (the same string in both images that hold torch: they share its layer).
TORCH_REQ="$(python3 "$REPO_ROOT/images/requirements.py" "$REPO_ROOT/pyproject.toml" serve-torchserve | grep '^torch[<>=~ ]' | head -n1)"
# Per image: Containerfile target, pyproject extras, and extra build arguments.
image_args() {
  case "$1" in
    operator) echo "operator --base --build-arg PRUNE=kubernetes/aio" ;;
    storage-init) echo "storage-init storage" ;;
    exporter-onnx) echo "exporter export-onnx" ;;
    exporter-pytorch) echo "exporter export-pytorch --build-arg TORCH=$TORCH_REQ" ;;
    exporter-tensorflow) echo "exporter export-tensorflow" ;;
    torchserve) echo "torchserve serve-torchserve --build-arg TORCH=$TORCH_REQ --build-arg APT_PACKAGES=openjdk-17-jre-headless" ;;
  esac
}

# The local Debian base: mmdebstrap from Debian's packages (docs, man pages and locales left out),
# keyed by its recipe so that a change of recipe builds a new one.
BASE_RECIPE=(--variant=minbase --include=python3,python3-venv,ca-certificates
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --aptopt='Acquire::Languages "none"'
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/apt "$1"/var/log/dpkg.log'
  bookworm)
local_base() {
  local key tar image
  key="$(printf '%s\n' "${BASE_RECIPE[@]}" | sha256sum | cut -c1-12)"
  image="localhost/modelpilot/debian-base:bookworm-$key"; tar="$CACHE/debian-base-bookworm-$key.tar"
  if engine image exists "$image" 2>/dev/null || engine image inspect "$image" >/dev/null 2>&1; then
    echo "$image"; return
  fi
  if [[ ! -s "$tar" ]]; then
    command -v mmdebstrap >/dev/null || die "no base image: mmdebstrap is not installed (apt-get install mmdebstrap), or pass --base IMAGE (e.g. docker.io/library/python:3.11-slim-bookworm where a registry can be reached)"
    log "base image: building a Debian bookworm base with mmdebstrap (about a minute; log: $LOGS/image-base.log)"
    mmdebstrap --format=tar "${BASE_RECIPE[@]}" "$tar.tmp" >"$LOGS/image-base.log" 2>&1 \
      || { tail -n 20 "$LOGS/image-base.log" >&2; rm -f "$tar.tmp"; die "mmdebstrap failed: the Debian base image was not built"; }
    mv "$tar.tmp" "$tar"
  fi
  log "base image: importing $tar as $image"
  engine import --change 'CMD ["/bin/bash"]' "$tar" "$image" >/dev/null || die "could not import the base image $tar"
  echo "$image"
}

# build NAME: build one image; on failure say which image and which step, with the log's tail.
build() {
  local name="$1" ref="$REGISTRY/$1:$TAG" logf="$LOGS/image-$1.log" t=$SECONDS target deps args secret=() reqs
  read -r target deps args <<<"$(image_args "$name")"
  reqs="$(python3 "$REPO_ROOT/images/requirements.py" "$REPO_ROOT/pyproject.toml" $deps | paste -sd';')" \
    || die "image $name: cannot read its requirements from pyproject.toml"
  [[ -s "$CA_BUNDLE" ]] && secret=(--secret "id=ca,src=$CA_BUNDLE")
  log "$name: building $ref (log: $logf)"
  # shellcheck disable=SC2086 # $args holds several --build-arg words on purpose
  if ! engine build --network host -f "$REPO_ROOT/images/Containerfile" --target "$target" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$TAG" --build-arg "REVISION=$REVISION" \
      --build-arg "TITLE=modelpilot-$name" --build-arg "REQUIREMENTS=$reqs" $args "${secret[@]}" -t "$ref" "$REPO_ROOT" >"$logf" 2>&1; then
    local step; step="$(grep -E '^(\[[0-9/]+\] )?STEP [0-9]+/[0-9]+' "$logf" | tail -n1 || true)"
    tail -n 20 "$logf" | sed 's/^/    /' >&2
    die "image $name did not build; failing step: ${step:-unknown} (full log: $logf)"
  fi
  echo "$name $ref $((SECONDS - t))" >>"$CACHE/.times"
}

# sbom NAME DEST: copy the image's SBOM out.
sbom() {
  engine run --rm $(engine_run_flags) --entrypoint cat "$REGISTRY/$1:$TAG" /opt/modelpilot/sbom.cdx.json >"$2"
}

archive() { # NAME: oci-archive + SBOM next to it, skipped when the archive holds this image already
  local name="$1" ref="$REGISTRY/$1:$TAG" id
  id="$(engine image inspect --format '{{.Id}}' "$ref")"
  mkdir -p "$ARCHIVE_DIR"
  if [[ -s "$ARCHIVE_DIR/$name.oci.tar" && "$(cat "$ARCHIVE_DIR/$name.id" 2>/dev/null)" == "$id $ref" ]]; then
    log "$name: $ARCHIVE_DIR/$name.oci.tar is current"; return
  fi
  log "$name: writing $ARCHIVE_DIR/$name.oci.tar"
  rm -f "$ARCHIVE_DIR/$name.oci.tar"
  engine save --format oci-archive -o "$ARCHIVE_DIR/$name.oci.tar" "$ref" >/dev/null
  sbom "$name" "$ARCHIVE_DIR/$name.cdx.json"
  echo "$id $ref" >"$ARCHIVE_DIR/$name.id"
}

[[ -n "$BASE_IMAGE" ]] || BASE_IMAGE="$(local_base)"
log "engine $ENGINE, base $BASE_IMAGE, tag $TAG"
: >"$CACHE/.times"
for name in "${IMAGES[@]}"; do build "$name"; done
for name in "${IMAGES[@]}"; do sbom "$name" "$CACHE/$name.cdx.json"; done
[[ -z "$ARCHIVE_DIR" ]] || for name in "${IMAGES[@]}"; do archive "$name"; done

# Report: size, build time and package count per image.
engine images --format '{{.Repository}}:{{.Tag}} {{.Size}}' >"$CACHE/.sizes"
python3 - "$CACHE" "$ENGINE" "${IMAGES[@]}" <<'PY'
import json, subprocess, sys
cache, engine, names = sys.argv[1], sys.argv[2], sys.argv[3:]
times = {l.split()[0]: (l.split()[1], int(l.split()[2])) for l in open(f"{cache}/.times") if l.strip()}
report = {}
print(f"{'image':<22}{'size (MB)':>10}{'build (s)':>11}{'packages':>10}  reference")
for n in names:
    ref, secs = times[n]
    size = int(subprocess.check_output([engine, "image", "inspect", "--format", "{{.Size}}", ref], text=True))
    pkgs = len(json.load(open(f"{cache}/{n}.cdx.json")).get("components", []))
    report[n] = {"image": ref, "sizeBytes": size, "buildSeconds": secs, "packages": pkgs}
    print(f"{n:<22}{size / 1e6:>10.0f}{secs:>11}{pkgs:>10}  {ref}")
json.dump(report, open(f"{cache}/report.json", "w"), indent=1)
PY
