#!/usr/bin/env bash
# Builds the binary that ships (Config/kubernetes/Dockerfile, Scripts/bench.sh): the release build
# made small for a process that runs in every app Pod. Prints the binary's path.
#   - the Swift runtime linked in (--static-swift-stdlib), and libstdc++, libevent and libyaml
#     too (linker scripts below send -lstdc++/-levent/-lyaml to their .a): only the parts used
#     are mapped, and the image needs nothing but libc;
#   - not position-independent (--no-pie): no relocations to apply at start, so the binary's
#     data pages stay clean and shared;
#   - no dynamic symbol table (--no-export-dynamic): nothing loads plugins into it.
# Measured (idle, 1 worker, Scripts/bench.sh): 26.1 MB RSS for `swift build -c release` with
# Foundation and Yams, 8.4 MB for this one without them. Stripped, it is about 6 MB on disk.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=.build-sidecar
libs="$PWD/$scratch/static-libs"
mkdir -p "$libs"
for lib in stdc++ event yaml ssl crypto; do echo "INPUT(lib$lib.a)" > "$libs/lib$lib.so"; done
swift build -c release --product redis-ambassador --scratch-path "$scratch" --static-swift-stdlib \
  -Xlinker --no-pie -Xlinker --no-export-dynamic -Xlinker -L"$libs" >&2
bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/redis-ambassador"
if ldd "$bin" | grep -qE 'libevent|libyaml|libstdc\+\+|libssl|libcrypto'; then
  echo "build-sidecar: $bin still links a library it should carry:" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "$bin"
