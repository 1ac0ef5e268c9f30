#!/usr/bin/env bash
# Make sure Debian's chromium and chromium-driver are installed (the dashboard's browser tests drive
# them through Selenium; no browser is ever downloaded), installing them with apt-get if missing.
#
#   hack/chromium.sh [--help]
#
# Prints the browser's path, then the driver's. Installing needs root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == "--help" || "${1:-}" == "-h" ]] && { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  [[ $EUID -eq 0 ]] || die "chromium is not installed, and installing it needs root: apt-get install chromium chromium-driver"
  log "installing the Debian packages chromium and chromium-driver"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
command -v chromium && command -v chromedriver
