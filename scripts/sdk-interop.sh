#!/usr/bin/env bash
# Runs Kalshi's official TypeScript SDK (kalshi-typescript, pinned in sdk-interop/package.json)
# against the simulator: every order-group operation, V2 order entry and order reads.
# Needs node and npm. Usage: scripts/sdk-interop.sh [path/to/kalshi-riskd]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/debug/kalshi-riskd}
[ -x "$bin" ] || { echo "no binary at $bin: run 'cargo build' first" >&2; exit 2; }
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

(cd "$here/sdk-interop" && npm install --no-audit --no-fund --silent >/dev/null)
"$bin" sim --listen 127.0.0.1:0 --tier unlimited --key-dir "$work/key" >"$work/out" 2>"$work/err" &
sim_pid=$!
for _ in $(seq 100); do
  grep -q '^kalshi-riskd sim listening on ' "$work/out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^kalshi-riskd sim listening on //p' "$work/out")
[ -n "$addr" ] || { echo "simulator did not start:" >&2; cat "$work/err" >&2; exit 1; }
node "$here/sdk-interop/check.cjs" "http://$addr/trade-api/v2" "$(cat "$work/key/key.id")" "$work/key/key.pem"
