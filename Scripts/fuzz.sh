#!/usr/bin/env bash
# Fuzzing (libFuzzer, `swiftc -sanitize=fuzzer,address`): builds each target in Tests/Fuzz with
# the RESP module's sources, runs it for SECONDS from its seed corpus (Tests/Fuzz/corpus/…; new
# inputs go to a scratch copy, not into the repository), and prints executions, coverage and
# any crash. Exits non-zero when a target crashes, leaks or times out.
#   Scripts/fuzz.sh [SECONDS] [TARGET …]     (default 60 s; targets: requests replies split)
#   FUZZ_RUNS=10000000 Scripts/fuzz.sh 7200  stops each target after that many executions instead
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(requests replies split)
out=.build-fuzz
mkdir -p "$out"
status=0
for target in "${targets[@]}"; do
  case "$target" in
    requests) source=Tests/Fuzz/RequestParserFuzz.swift; corpus=requests ;;
    replies) source=Tests/Fuzz/ReplyScannerFuzz.swift; corpus=replies ;;
    split) source=Tests/Fuzz/RequestSplitFuzz.swift; corpus=requests ;;
    *) echo "unknown target $target (requests, replies, split)" >&2; exit 2 ;;
  esac
  binary="$out/fuzz-$target"
  if [ ! -x "$binary" ] || [ -n "$(find Sources/RESP "$source" -newer "$binary" -print -quit)" ]; then
    echo "building $target" >&2
    swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name RESPFuzz \
      Sources/RESP/*.swift "$source" -o "$binary" 2>&1 | grep -v "Cannot export local symbol" >&2 || true
  fi
  work=$(mktemp -d)
  cp Tests/Fuzz/corpus/"$corpus"/* "$work"/
  log="$out/fuzz-$target.log"
  runs_limit=()
  [ -z "${FUZZ_RUNS:-}" ] || runs_limit=(-runs="$FUZZ_RUNS")
  start=$(date +%s)
  if "$binary" -max_total_time="$seconds" "${runs_limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$out/$target-" "$work" > "$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || echo "?")
  echo "$target: $result, $runs executions in $(( $(date +%s) - start ))s, $cov, corpus $(ls "$work" | wc -l) inputs"
  rm -rf "$work"
done
exit $status
