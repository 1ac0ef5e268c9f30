#!/usr/bin/env bash
# Run a real Prometheus (the Debian package) on loopback, for analysis tests and the demo.
#
#   hack/prometheus.sh start [--port N] [--listen ADDR] [--target JOB=HOST:PORT]... [--file-sd JOB=FILE]...
#                            [--scrape-interval 1s] [--backfill FILE]
#   hack/prometheus.sh stop | status | url | --help
#
# start installs the package with apt-get if `prometheus` is missing, writes a fresh config and data
# dir under $LOCAL_DIR/prometheus (default .local/prometheus), imports --backfill (an OpenMetrics
# file, via `promtool tsdb create-blocks-from openmetrics`) before the server starts, scrapes each
# --target, and the targets listed in each --file-sd JSON file (re-read whenever it changes), every
# --scrape-interval (job label JOB), waits until /-/ready answers and prints the URL last. --port 0
# picks a free port (default: MODELPILOT_PROMETHEUS_PORT or 19090); --listen (default 127.0.0.1) is
# the address it serves on. The pid is kept in $LOCAL_DIR/pids/prometheus.pid; stop ends exactly
# that process. A second start while one runs is an error: stop it first (its config and data are
# thrown away on start).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
PIDS="$LOCAL_DIR/pids"; PID_FILE="$PIDS/prometheus.pid"; STATE="$LOCAL_DIR/prometheus"
LOGS="$LOCAL_DIR/logs"

alive() { # the recorded pid is still a prometheus server (its argv[0], not any mention of the word)
  [[ -f "$PID_FILE" ]] || return 1
  local pid argv0; pid="$(cat "$PID_FILE")"
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1)"
  [[ "$(basename -- "$argv0")" == prometheus ]]
}

ensure_installed() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return
  [[ $EUID -eq 0 ]] || die "prometheus is not installed, and installing it needs root: apt-get install prometheus"
  log "installing the Debian package prometheus"
  # The package's postinst may start a system service on :9090 where an init system runs; ours
  # uses its own port, config and data dir and does not care.
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v prometheus >/dev/null || die "apt-get install prometheus did not provide a prometheus binary"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cmd_start() {
  local port="${MODELPILOT_PROMETHEUS_PORT:-19090}" listen=127.0.0.1 interval=1s backfill="" targets=() file_sd=()
  while (($#)); do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --listen) listen="$2"; shift 2 ;;
      --file-sd) [[ "$2" == *=* ]] || die "--file-sd wants JOB=FILE, got '$2'"; file_sd+=("$2"); shift 2 ;;
      --target) [[ "$2" == *=*:* ]] || die "--target wants JOB=HOST:PORT, got '$2'"; targets+=("$2"); shift 2 ;;
      --scrape-interval) interval="$2"; shift 2 ;;
      --backfill) backfill="$2"; [[ -f "$backfill" ]] || die "--backfill: no file '$backfill'"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) die "start: unknown argument '$1' (try --help)" ;;
    esac
  done
  alive && die "prometheus already running (pid $(cat "$PID_FILE"), $(cat "$STATE/url" 2>/dev/null)): run '$0 stop' first"
  ensure_installed
  [[ "$port" == 0 ]] && port="$(free_port)"
  rm -rf "$STATE"; mkdir -p "$STATE/data" "$PIDS" "$LOGS"
  {
    echo "global:"
    echo "  scrape_interval: $interval"
    echo "  evaluation_interval: $interval"
    echo "scrape_configs:"
    local t job addr
    for t in ${targets[@]+"${targets[@]}"}; do
      job="${t%%=*}"; addr="${t#*=}"
      echo "  - job_name: '$job'"
      echo "    static_configs: [{targets: ['$addr']}]"
    done
    for t in ${file_sd[@]+"${file_sd[@]}"}; do
      echo "  - job_name: '${t%%=*}'"
      echo "    file_sd_configs: [{files: ['${t#*=}']}]"
    done
    ((${#targets[@]} + ${#file_sd[@]})) || echo "  []"
  } >"$STATE/prometheus.yml"
  if [[ -n "$backfill" ]]; then
    # Blocks written before the server starts are simply loaded at start-up: no restart, no
    # overlap with the (empty) head block.
    promtool tsdb create-blocks-from openmetrics "$backfill" "$STATE/data" >"$LOGS/prometheus-backfill.log" 2>&1 \
      || die "backfill failed: $(tail -5 "$LOGS/prometheus-backfill.log")"
  fi
  setsid nohup prometheus \
    --config.file="$STATE/prometheus.yml" \
    --storage.tsdb.path="$STATE/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="$listen:$port" \
    --web.console.templates=/dev/null --web.console.libraries=/dev/null \
    >"$LOGS/prometheus.log" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  local url="http://$listen:$port"
  echo "$url" >"$STATE/url"
  for _ in $(seq 1 150); do
    if curl -fsS "$url/-/ready" >/dev/null 2>&1; then
      log "prometheus ready at $url (pid $(cat "$PID_FILE"), log $LOGS/prometheus.log)"
      echo "$url"
      return 0
    fi
    alive || die "prometheus exited: $(tail -5 "$LOGS/prometheus.log")"
    sleep 0.1
  done
  die "prometheus not ready after 15s: $(tail -5 "$LOGS/prometheus.log")"
}

cmd_stop() {
  if ! alive; then
    [[ -f "$PID_FILE" ]] && log "pid $(cat "$PID_FILE") is not running prometheus any more; leaving it alone"
    rm -f "$PID_FILE"; return 0
  fi
  stop_pid_file prometheus "$PID_FILE"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) if alive; then echo "running (pid $(cat "$PID_FILE")) at $(cat "$STATE/url")"; else echo "not running"; exit 1; fi ;;
  url) alive || die "prometheus is not running"; cat "$STATE/url" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
