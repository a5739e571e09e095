#!/usr/bin/env bash
# A complete local sonde deployment on the embedded defaults:
#   - a collector (SQLite store and CA in demo-state/collector/), QUIC ingest + HTTP API;
#   - a responder on loopback;
#   - a plan (demo-state/plan.toml), applied with `sonde-collector plan apply`: the
#     building's access, probing the responder over loopback every minute;
#   - an agent that enrols itself with a one-time token, receives that plan from its
#     collector over QUIC, runs it, spools results and uploads them. Its agent.toml
#     holds only a bootstrap access (hourly), what it would run without a plan.
# Ctrl-C stops everything cleanly; state is kept for the next start.
#
# Run from anywhere: bash deploy/local-demo.sh
# Overrides (environment): SONDE_DEMO_DIR, SONDE_DEMO_HTTP_PORT (9090),
# SONDE_DEMO_QUIC_PORT (4433), SONDE_DEMO_RESPONDER_PORT (8080), SONDE_DEMO_UDP_PORT
# (8081), SONDE_DEMO_EVERY (1m), SONDE_DEMO_BUILD (release | debug | none: use the
# binaries already in SONDE_DEMO_BIN, as the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${SONDE_DEMO_DIR:-$PWD/demo-state}"
HTTP_PORT="${SONDE_DEMO_HTTP_PORT:-9090}"
QUIC_PORT="${SONDE_DEMO_QUIC_PORT:-4433}"
RESP_PORT="${SONDE_DEMO_RESPONDER_PORT:-8080}"
UDP_PORT="${SONDE_DEMO_UDP_PORT:-8081}"
EVERY="${SONDE_DEMO_EVERY:-1m}"
BUILD="${SONDE_DEMO_BUILD:-release}"

case "$BUILD" in
  release) echo "building sonde (release; the first build takes a few minutes)…"
           cargo build --release --locked --workspace --bins --quiet ;;
  debug)   echo "building sonde (debug)…"
           cargo build --locked --workspace --bins --quiet ;;
  none)    : ;;
  *)       echo "error: SONDE_DEMO_BUILD must be release, debug or none" >&2; exit 64 ;;
esac
BIN="${SONDE_DEMO_BIN:-$PWD/target/$BUILD}"
for b in sonde-collector sonde-responder sonde-agent; do
  if [ ! -x "$BIN/$b" ]; then echo "error: $BIN/$b is missing" >&2; exit 1; fi
done
# Every port is checked before anything starts: the one in use is named, with the
# variable that moves it.
port_taken() { # proto port
  if command -v ss >/dev/null 2>&1; then
    local flag=-Hltn; [ "$1" = udp ] && flag=-Hlun
    [ -n "$(ss "$flag" "sport = :$2" 2>/dev/null)" ] && return 0
    return 1
  fi
  [ "$1" = tcp ] && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null
}
for spec in "tcp HTTP_PORT the collector's HTTP API" "udp QUIC_PORT the collector's QUIC ingest" \
            "tcp RESP_PORT the responder's HTTP" "udp UDP_PORT the responder's UDP echo"; do
  read -r proto var what <<<"$spec"
  port="${!var}"
  if port_taken "$proto" "$port"; then
    echo "error: port $port/$proto ($what) is already in use; choose another with SONDE_DEMO_${var/RESP_PORT/RESPONDER_PORT}=PORT" >&2
    exit 1
  fi
done

mkdir -p "$STATE/collector" "$STATE/agent"

cat >"$STATE/collector.toml" <<TOML
# written by deploy/local-demo.sh
data_dir = "collector"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[quic]
listen = "127.0.0.1:$QUIC_PORT"
TOML

cat >"$STATE/agent.toml" <<TOML
# written by deploy/local-demo.sh
[site]
quartier = "demo"
building = "local"
latitude = 48.8566
longitude = 2.3522

[collector]
address = "localhost:$QUIC_PORT"
state_dir = "$STATE/agent"
retry_max = "30s"

# Over loopback no household shares the line, and a laptop's CPU is rarely idle:
# measure on schedule rather than wait for a quiet box.
[busy]
threshold = "off"
cpu_percent = 100

# The bootstrap: what the box runs until its collector pushes a plan, and without one.
[[access]]
name = "bootstrap"
kind = "ftth"
interface = "lo"
responders = ["http://127.0.0.1:$RESP_PORT"]
every = "1h"
jitter = "1m"
max_duration = 5
TOML

cat >"$STATE/plan.toml" <<TOML
# written by deploy/local-demo.sh; change it and run
#   sonde-collector plan apply --file $STATE/plan.toml --config $STATE/collector.toml
# the agent runs the new version within seconds, without a restart.
[[group]]
quartier = "demo"
buildings = ["local"]

[[group.access]]
name = "loopback"
kind = "ftth"
interface = "lo"
responders = ["http://127.0.0.1:$RESP_PORT"]
every = "$EVERY"
jitter = "1s"
max_duration = 5
TOML

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping sonde (agent, responder, collector)…"
  # Agent first, so its last results are spooled; the collector last.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. State (store, CA, agent identity and spool) kept in $STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # proto port name pid
  for _ in $(seq 1 100); do
    if ! kill -0 "$4" 2>/dev/null; then
      echo "error: the $3 did not start; its log:" >&2
      cat "$STATE/$3.log" >&2
      exit 1
    fi
    if [ "$1" = tcp ] && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    if [ "$1" = udp ] && grep -q "listening" "$STATE/$3.log" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: the $3 is not listening on port $2 after 10 s; see $STATE/$3.log" >&2
  exit 1
}

"$BIN/sonde-collector" serve --config "$STATE/collector.toml" >"$STATE/collector.log" 2>&1 &
pids+=($!)
wait_port tcp "$HTTP_PORT" collector "${pids[-1]}"

"$BIN/sonde-collector" plan apply --file "$STATE/plan.toml" --config "$STATE/collector.toml"

"$BIN/sonde-responder" --listen "127.0.0.1:$RESP_PORT" --udp "127.0.0.1:$UDP_PORT" \
  >"$STATE/responder.log" 2>&1 &
pids+=($!)
wait_port tcp "$RESP_PORT" responder "${pids[-1]}"

if [ ! -f "$STATE/agent/identity.json" ]; then
  token=$("$BIN/sonde-collector" token create --config "$STATE/collector.toml" \
            --building local --quartier demo --ttl 10m 2>/dev/null)
  "$BIN/sonde-agent" enroll --collector "localhost:$QUIC_PORT" --token "$token" \
    --state-dir "$STATE/agent"
fi

"$BIN/sonde-agent" run --config "$STATE/agent.toml" >"$STATE/agent.log" 2>&1 &
pids+=($!)

cat <<TXT

sonde is running
  results   http://127.0.0.1:$HTTP_PORT/api/v1/results   (the first within about a minute)
  agents    http://127.0.0.1:$HTTP_PORT/api/v1/agents   (health.plan: the plan version it runs)
  plan      $BIN/sonde-collector plan show --config $STATE/collector.toml
  health    http://127.0.0.1:$HTTP_PORT/healthz
  agent     $BIN/sonde-agent status --state-dir $STATE/agent
  responder http://127.0.0.1:$RESP_PORT/api/v1/info
  logs      $STATE/{collector,responder,agent}.log
The agent runs the plan its collector pushed: it probes the responder over loopback
every $EVERY. Ctrl-C stops everything.

TXT

# Show each measurement as the agent logs it, until Ctrl-C or a part stops.
tail -n 0 -F "$STATE/agent.log" 2>/dev/null | grep --line-buffered -E "measured|upload failed|ERROR" &
pids+=($!)
while true; do
  for p in "${pids[@]:0:3}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "error: a sonde process stopped unexpectedly; see the logs in $STATE" >&2
      exit 1
    fi
  done
  # `wait` returns at once on a signal, so Ctrl-C is handled without delay.
  sleep 1 &
  wait $! || true
done
