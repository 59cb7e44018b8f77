#!/usr/bin/env bash
# Benchmark (not a test; CI does not run it): redis-benchmark against a direct Redis, twemproxy and
# the ambassador in one interleaved run, with ratios to direct and each proxy's CPU per request.
#   Scripts/bench.sh [--rounds N] [--quick] [--redis-cpus LIST --proxy-cpus LIST] [--workers N] [--loop-pause 20us]
# With more cores than this 2-core box, pin Redis + redis-benchmark and the proxies apart (e.g.
# --redis-cpus 2-7 --proxy-cpus 0-1 --workers 2) so a proxy's CPU is not taken from Redis.
#   Scripts/bench.sh --tls [--rounds N]: the TLS rows instead: direct TLS (redis-benchmark --tls),
#   HAProxy originating TLS to the master, and the ambassador originating TLS (backend_tls).
#   Scripts/bench.sh --cluster [--rounds N]: a Redis Cluster (3 masters x 1 replica): redis-benchmark
#   --cluster direct against the ambassador (discovery: cluster), CPU per request against the
#   standalone ambassador of the same run.
# Needs: redis-server, redis-tools (redis-benchmark), nutcracker (twemproxy), python3; with --tls,
# haproxy and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="redis-server redis-benchmark nutcracker python3"
case " $* " in *" --tls "*) tools="redis-server redis-benchmark haproxy openssl python3" ;; esac
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server redis-tools nutcracker haproxy openssl python3)" >&2; exit 1; }
done
# The binary that ships (the Dockerfile's): its RSS is what a Pod pays. AMBASSADOR=path overrides.
ambassador=${AMBASSADOR:-$(Scripts/build-sidecar.sh)}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 Scripts/bench.py --ambassador "$ambassador" "$@"
