#!/usr/bin/env bash
# Starts a local Redis master (6379) and two replicas (6381, 6382), then the ambassador on 6380 with
# Config/ambassador.yaml. Ctrl-C stops everything. In another terminal:  redis-cli -p 6380
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs redis-server, redis-tools, libevent-dev and libyaml-dev when missing (as root), or says what to run.
Scripts/setup.sh --run-only

data=$(mktemp -d -t redis-ambassador-local.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT INT TERM

start_redis() {  # port [extra args…]
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$data" \
    --logfile "$data/redis-$port.log" "$@" &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server on $port did not start (is the port taken?)" >&2; exit 1
}

start_redis 6379
start_redis 6381 --replicaof 127.0.0.1 6379
start_redis 6382 --replicaof 127.0.0.1 6379
echo "master 127.0.0.1:6379, replicas 127.0.0.1:6381 127.0.0.1:6382 (logs in $data)"

swift build -c release --product redis-ambassador >&2
echo "ambassador on 127.0.0.1:6380 — try: redis-cli -p 6380"
.build/release/redis-ambassador --config Config/ambassador.yaml &
pids+=($!)
wait "${pids[-1]}"
