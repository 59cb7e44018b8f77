#!/usr/bin/env bash
# Instructions per request in steady state (callgrind): runs the ambassador under callgrind twice,
# for N and 2N pipelined SET+GET requests (-P 16, 10 clients, master + 2 replicas), and divides
# the difference in total instructions by the extra requests, so start-up cancels out. The count
# is repeatable for the same binary and inputs whatever else the machine does. Not a test.
#   Scripts/instructions-per-request.sh [N] [BINARY]   (default 20000, this checkout's release build)
#   Extra ambassador flags (e.g. --read-policy master) go in AMBASSADOR_FLAGS.
#   CLUSTER=1: a Redis Cluster of three masters with a replica each instead (discovery: cluster).
#   TESTS=get (or set): one command instead of SET+GET (each run then sends N requests, not 2N).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
TESTS=${TESTS:-set,get}
# Requests per run, per N: redis-benchmark -t set,get sends N SETs and N GETs.
PER=$(awk -F, '{print NF}' <<< "$TESTS")
BINARY=${2:-}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
if [ -z "$BINARY" ]; then
  swift build -c release --product redis-ambassador >&2
  BINARY=.build/release/redis-ambassador
fi
work=$(mktemp -d)
# valgrind 3.19 cannot read Swift 6's DWARF: count on a copy without debug info.
objcopy --strip-debug "$BINARY" "$work/redis-ambassador"
pids=()
# KEEP=dir: the callgrind outputs are copied there (for callgrind_annotate).
trap 'kill "${pids[@]}" 2>/dev/null || true; if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$work"/cg.*.out "$KEEP"/ 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MP=$(port); R1=$(port); R2=$(port)
redis-server --port "$MP" --bind 127.0.0.1 --save '' --dir "$work" --daemonize no >/dev/null & pids+=($!)
redis-server --port "$R1" --bind 127.0.0.1 --save '' --dir "$work" --dbfilename r1.rdb --replicaof 127.0.0.1 "$MP" >/dev/null & pids+=($!)
redis-server --port "$R2" --bind 127.0.0.1 --save '' --dir "$work" --dbfilename r2.rdb --replicaof 127.0.0.1 "$MP" >/dev/null & pids+=($!)
# shellcheck source=Scripts/cluster-nodes.sh
. Scripts/cluster-nodes.sh
if [ "${CLUSTER:-}" = 1 ]; then start_cluster_nodes; fi
sleep 1
instructions_for() {  # requests → total instructions over the whole run
  local n=$1 ap; ap=$(port)
  local arguments; ambassador_arguments "$ap"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n.out" "$work/redis-ambassador" \
    "${arguments[@]}" \
    ${AMBASSADOR_FLAGS:-} 2> "$work/cg.$n.log" &
  local pid=$!
  for _ in $(seq 300); do redis-cli -p "$ap" ping >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
  redis-benchmark -p "$ap" -t "$TESTS" -n "$n" -P 16 -c 10 -r 1000 -d 100 -q >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" || true
  grep -E '^(summary|totals):' "$work/cg.$n.out" | head -1 | awk '{print $2}'
}
i1=$(instructions_for "$N"); i2=$(instructions_for $((2 * N)))
python3 -c "i1,i2,n=$i1,$i2,$N*$PER; print(f'instructions: {i1:,} for {n} requests, {i2:,} for {2*n}; '
            f'{(i2-i1)/n:,.0f} per request in steady state')"
# The same for the worker thread alone (inclusive cost of its loop): the data path without the
# main loop's health checks, whose work follows the wall clock (valgrind's slowness), not the
# requests, and adds tens of instructions of noise per request to the whole-process figure.
worker_for() {
  callgrind_annotate --inclusive=yes --threshold=99.9 "$work/cg.$1.out" 2>/dev/null |
    awk '!found && /EventLoopThread|ThreadC5Start/ && /C3runyyF|\.run\(\)/ {found = 1; gsub(",", "", $1); print $1}' || true
}
w1=$(worker_for "$N"); w2=$(worker_for $((2 * N)))
if [ -n "$w1" ] && [ -n "$w2" ]; then
  python3 -c "w1,w2,n=$w1,$w2,$N*$PER; print(f'worker thread: {(w2-w1)/n:,.0f} per request in steady state')"
fi
