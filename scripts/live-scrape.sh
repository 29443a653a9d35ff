#!/usr/bin/env bash
# Starts the simulator and the daemon (on the example policies) on loopback, prints one
# /metrics scrape of the running daemon on stdout, and stops both. CI pipes it into
# `promtool check metrics`. Usage: scripts/live-scrape.sh [path/to/kalshi-riskd]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/debug/kalshi-riskd}
[ -x "$bin" ] || { echo "no binary at $bin: run 'cargo build' first" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { # file pattern
  for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

"$bin" sim --listen 127.0.0.1:0 --tier unlimited --key-dir "$work/key" >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
wait_for "$work/sim.out" '^kalshi-riskd sim listening on '
addr=$(sed -n 's/^kalshi-riskd sim listening on //p' "$work/sim.out")
mkdir -p "$work/policies"
cp "$here/../config/policies/"*.toml "$work/policies/"
cat >"$work/k.toml" <<CFG
[exchange]
environment = "sim"
rest_url = "http://$addr/trade-api/v2"
ws_url = "ws://$addr/trade-api/ws/v2"
api_key_id = "$(cat "$work/key/key.id")"
private_key_path = "key/key.pem"
write_budget_per_s = 100
[policies]
dir = "policies"
[state]
dir = "state"
[http]
listen = "127.0.0.1:0"
admin_socket = "admin.sock"
[log]
format = "json"
CFG
"$bin" --config "$work/k.toml" run >/dev/null 2>"$work/daemon.log" &
pids+=($!)
wait_for "$work/daemon.log" 'kalshi-riskd running'
found=$(grep -o '"addr":"[^"]*","message":"metrics listening\|"message":"metrics listening[^}]*' "$work/daemon.log" | grep -o '127\.0\.0\.1:[0-9]*')
metrics=${found%%$'\n'*}
curl -fsS "http://$metrics/metrics"
