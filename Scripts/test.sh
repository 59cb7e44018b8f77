#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing (Scripts/setup.sh), then runs
# `swift test`. The tests start real redis-server processes on free loopback ports and stop them
# by PID (listed in RA_TEST_PIDFILE, so even a crashed run leaves none behind).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d /opt/swift/usr/bin ]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
Scripts/setup.sh

pidfile="${RA_TEST_PIDFILE:-$(mktemp /tmp/redis-ambassador-pids.XXXXXX)}"
export RA_TEST_PIDFILE="$pidfile"
status=0
# The timeout turns a hung test into a failure instead of a stuck run.
timeout --kill-after=30 1500 swift test "$@" || status=$?
# Stop only what the tests started, by PID (never by name: other Redis processes here stay).
while read -r pid; do
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
done < "$pidfile"
rm -f "$pidfile"
exit "$status"
