#!/usr/bin/env bash
# Network soak (not a unit test): hostile clients (random and truncated RESP, huge lengths, abrupt
# RST closes, half-open and stalled connections, abandoned pub/sub and transactions) against the
# ambassador in front of a real master and replica, while well-behaved clients check every
# reply. Fails on a wrong reply, a crash, connections that do not go away, or RSS that does not
# come back to within 5 % (+512 KiB) of its baseline, both measured on a quiet ambassador.
#   Scripts/soak.sh [SECONDS] [--hostile N] [--good N]     (default 60 s, 8 hostile, 2 good)
# AMBASSADOR=path runs that binary (default: the shipped build, Scripts/build-sidecar.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
for tool in redis-server python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
ambassador=${AMBASSADOR:-$(Scripts/build-sidecar.sh)}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 Scripts/soak.py --ambassador "$ambassador" --seconds "$seconds" "$@"
