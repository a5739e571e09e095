#!/usr/bin/env bash
# Local demo of sonde on the embedded defaults: builds the workspace, starts a
# responder on loopback, and probes it every minute until Ctrl-C, which stops
# everything. Run from anywhere: bash deploy/local-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HTTP_PORT="${SONDE_DEMO_HTTP_PORT:-8080}"
UDP_PORT="${SONDE_DEMO_UDP_PORT:-8081}"
INTERVAL="${SONDE_DEMO_INTERVAL:-60}"
STATE="${SONDE_DEMO_DIR:-$PWD/demo-state}"

echo "building sonde (release)…"
cargo build --release --locked --workspace --quiet
mkdir -p "$STATE"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping sonde demo…"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. Results are in $STATE/results.jsonl"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

./target/release/sonde-responder --listen "127.0.0.1:$HTTP_PORT" --udp "127.0.0.1:$UDP_PORT" \
  >"$STATE/responder.log" 2>&1 &
pids+=($!)
sleep 0.5
if ! kill -0 "${pids[0]}" 2>/dev/null; then
  echo "the responder did not start; see $STATE/responder.log" >&2
  cat "$STATE/responder.log" >&2
  exit 1
fi

cat <<TXT
sonde demo running
  responder  http://127.0.0.1:$HTTP_PORT  (info: http://127.0.0.1:$HTTP_PORT/api/v1/info, UDP echo on $UDP_PORT)
  probes     every ${INTERVAL}s, results appended to $STATE/results.jsonl
  logs       $STATE/responder.log
Ctrl-C stops everything.
TXT

while true; do
  echo
  date -u +"probe at %Y-%m-%dT%H:%M:%SZ"
  if record=$(./target/release/sonde-agent probe --responder "http://127.0.0.1:$HTTP_PORT" \
        --max-duration 5 --json); then
    echo "$record" >>"$STATE/results.jsonl"
    RECORD="$record" python3 - <<'PY' || echo "  (recorded)"
import json, os
r = json.loads(os.environ["RECORD"])
for d in ("download", "upload"):
    t = r.get(d)
    if t:
        print(f"  {d:<8} {t['goodput_bps'] / 1e9:7.2f} Gb/s goodput  ({t['stop_reason']}, {t['duration_s']:.1f} s)")
l = r.get("idle_latency") or {}
if l.get("median_s") is not None:
    print(f"  idle latency {l['median_s'] * 1e3:.2f} ms, loss {l['loss_ratio'] * 100:.1f} %")
PY
  else
    echo "  probe failed (see above)"
  fi
  sleep "$INTERVAL" &
  pids+=($!)
  wait $! || true
done
