#!/usr/bin/env bash
# Heap allocations per request in steady state: runs the ambassador under valgrind's DHAT twice,
# for N and 2N pipelined GET/SET requests, and divides the difference in allocated blocks by N
# (start-up and connection set-up cancel out). Not a test: valgrind is slow.
#   Scripts/alloc-per-request.sh [N]     (default 20000)
#   CLUSTER=1: a Redis Cluster of three masters with a replica each instead (discovery: cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
swift build -c release --product redis-ambassador >&2
work=$(mktemp -d)
# valgrind 3.19 cannot read Swift 6's DWARF ("possibly corrupted debuginfo"): count on a copy
# without debug info; allocation counts do not need symbols.
objcopy --strip-debug .build/release/redis-ambassador "$work/redis-ambassador"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MP=$(port); R1=$(port); R2=$(port)
redis-server --port "$MP" --save '' --dir "$work" --daemonize no >/dev/null &
redis-server --port "$R1" --save '' --dir "$work" --dbfilename r1.rdb --replicaof 127.0.0.1 "$MP" >/dev/null &
redis-server --port "$R2" --save '' --dir "$work" --dbfilename r2.rdb --replicaof 127.0.0.1 "$MP" >/dev/null &
# shellcheck source=Scripts/cluster-nodes.sh
. Scripts/cluster-nodes.sh
if [ "${CLUSTER:-}" = 1 ]; then start_cluster_nodes; fi
sleep 1
blocks_for() {  # requests → total heap blocks allocated over the whole run
  local n=$1 ap; ap=$(port)
  local arguments; ambassador_arguments "$ap"
  valgrind --tool=dhat --dhat-out-file=/dev/null "$work/redis-ambassador" "${arguments[@]}" \
    2> "$work/dhat.$n.log" &
  local pid=$!
  for _ in $(seq 300); do redis-cli -p "$ap" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -p "$ap" -t set,get -n "$n" -P 16 -c 10 -r 1000 -d 100 -q >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" || true
  grep -E 'Total:' "$work/dhat.$n.log" | head -1 | sed -E 's/.* in ([0-9,]+) blocks.*/\1/' | tr -d ,
}
b1=$(blocks_for "$N"); b2=$(blocks_for $((2 * N)))
# redis-benchmark -t set,get sends N SETs and N GETs: 2N requests per run.
python3 -c "import sys; b1,b2,n=$b1,$b2,$N; print(f'heap blocks: {b1} for {2*n} requests, {b2} for {4*n} requests; '
             f'{(b2-b1)/(2*n):.3f} allocations per request in steady state')"
