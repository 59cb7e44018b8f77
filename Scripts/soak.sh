#!/usr/bin/env bash
# Network soak (not a unit test): hostile clients (random and truncated RESP, huge lengths, abrupt
# RST closes, half-open and stalled connections, abandoned pub/sub and transactions) against the
# ambassador in front of a real master and replica, while well-behaved clients check every
# reply. The traffic comes in rounds, each followed by a quiet spell in which the ambassador
# gives back what the burst left, and RSS is measured then. Fails on a wrong reply, a crash,
# connections that do not go away, or the process's own (anonymous) memory growing from round to
# round or ending a round more than 4 MiB over the baseline (code pages a burst touched stay
# mapped; they are reported apart).
#   Scripts/soak.sh [SECONDS] [--rounds N] [--hostile N] [--good N] [--cluster]   (60 s, 3 rounds, 8, 2)
# --cluster: in front of a Redis Cluster (three masters with a replica each) instead.
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
