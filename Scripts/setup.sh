#!/usr/bin/env bash
# What the ambassador and its tests need from Debian/Ubuntu, installed when missing: libevent-dev,
# libyaml-dev and libssl-dev (the build), redis-server, redis-tools and redis-sentinel (local runs
# and tests), openssl (the TLS tests' certificates) and Python's prometheus_client (the /metrics test). As root with apt-get it installs them;
# otherwise it prints the one command to run and fails.
#   Scripts/setup.sh [--run-only]   (--run-only: only what Scripts/run-local.sh needs)
set -euo pipefail

packages=()
[ -e /usr/include/event2/event.h ] || packages+=(libevent-dev)
[ -e /usr/include/yaml.h ] || packages+=(libyaml-dev)
[ -e /usr/include/openssl/ssl.h ] || packages+=(libssl-dev)
command -v redis-server >/dev/null || packages+=(redis-server)
command -v redis-cli >/dev/null || packages+=(redis-tools)
if [ "${1:-}" != "--run-only" ]; then
  command -v redis-sentinel >/dev/null || packages+=(redis-sentinel)
  command -v openssl >/dev/null || packages+=(openssl)
fi

if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  else
    echo "needs: sudo apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi

if [ "${1:-}" != "--run-only" ] && ! python3 -c 'import prometheus_client' 2>/dev/null; then
  # For whichever python3 is first on PATH, the one the tests run.
  python3 -m pip install --quiet --disable-pip-version-check prometheus_client 2>&1 | grep -v "as the 'root' user" || true
  python3 -c 'import prometheus_client' || { echo "needs: python3 -m pip install prometheus_client" >&2; exit 1; }
fi
